//! Optional TLS (rustls, ring provider) with certificates reloaded on SIGHUP.
//!
//! The certificate and key are read from the paths in `[tls]`; a reload reads
//! them again and swaps them in for the next handshake (connections already
//! open keep theirs). A reload that fails keeps the certificate in force.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// `[tls]`: both paths are required when the section is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks a certificate chain and its key.
pub fn load(cfg: &TlsConfig) -> Result<Arc<CertifiedKey>, String> {
    let read_err = |what: &str, p: &Path, e: rustls::pki_types::pem::Error| {
        format!("tls.{what}: cannot read {}: {e}", p.display())
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| read_err("cert", &cfg.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err("cert", &cfg.cert, e))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.cert: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            cfg.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| read_err("key", &cfg.key, e))?;
    CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| {
            format!(
                "tls: the key {} does not fit the certificate {}: {e}",
                cfg.key.display(),
                cfg.cert.display()
            )
        })
        .map(Arc::new)
}

/// The certificate in force; swapped by [`CertResolver::reload`].
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

impl CertResolver {
    /// Loads the certificate, or says why not.
    pub fn new(cfg: &TlsConfig) -> Result<Arc<CertResolver>, String> {
        Ok(Arc::new(CertResolver {
            current: RwLock::new(load(cfg)?),
        }))
    }

    /// Reads the files again; on error the old certificate stays.
    pub fn reload(&self, cfg: &TlsConfig) -> Result<(), String> {
        let fresh = load(cfg)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// A server configuration answering with this resolver's certificate.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}
