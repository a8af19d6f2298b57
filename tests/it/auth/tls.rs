//! TLS: a handshake against a fresh self-signed certificate, and the
//! certificate swapped by a reload without a restart.

use super::*;

/// A fresh self-signed certificate for localhost/127.0.0.1, written to
/// `dir/cert.pem` and `dir/key.pem`; returns its DER.
fn write_cert(dir: &Path) -> Vec<u8> {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    std::fs::write(dir.join("key.pem"), key_pair.serialize_pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    cert.der().to_vec()
}

/// A TLS handshake (trusting only `root`) and `GET /healthz`; returns the
/// response text and the server certificate's DER.
async fn tls_healthz(addr: &str, root: &[u8]) -> Result<(String, Vec<u8>), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(root.to_vec()))
        .map_err(|e| e.to_string())?;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))?;
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or("no peer certificate")?;
    write_all_async(
        &mut tls,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        read_to_end_async(&mut tls, &mut buf),
    )
    .await;
    match read {
        Ok(Ok(_)) => {}
        // Closed without close_notify: what arrived is the answer.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Ok(Err(e)) => return Err(format!("reading: {e}")),
        Err(_) if !buf.is_empty() => {}
        Err(_) => return Err("no answer over TLS".into()),
    }
    Ok((String::from_utf8_lossy(&buf).into_owned(), peer))
}

/// `write_all` and `flush` (without tokio's io-util feature).
async fn write_all_async<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    mut data: &[u8],
) -> std::io::Result<()> {
    use std::pin::Pin;
    while !data.is_empty() {
        let n = std::future::poll_fn(|cx| Pin::new(&mut *w).poll_write(cx, data)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    std::future::poll_fn(|cx| Pin::new(&mut *w).poll_flush(cx)).await
}

/// `read_to_end` (without tokio's io-util feature).
async fn read_to_end_async<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    use std::pin::Pin;
    let mut chunk = [0u8; 8192];
    loop {
        let mut rb = tokio::io::ReadBuf::new(&mut chunk);
        std::future::poll_fn(|cx| Pin::new(&mut *r).poll_read(cx, &mut rb)).await?;
        if rb.filled().is_empty() {
            return Ok(());
        }
        out.extend_from_slice(rb.filled());
    }
}

#[test]
fn tls_handshake_and_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let first = write_cert(tmp.path());
    let conf = write_file(
        &tmp.path().join("stele.toml"),
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            tmp.path().join("cert.pem").display(),
            tmp.path().join("key.pem").display()
        ),
    );
    let d = serve(tmp.path(), &conf);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (resp, peer) = rt.block_on(tls_healthz(&d.addr, &first)).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(peer == first, "the server presented another certificate");

    // Plain HTTP on the TLS port gets no 200.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&raw);
    assert!(
        !text.starts_with("HTTP/1.1 200"),
        "plain HTTP served: {text}"
    );

    // A new certificate at the same paths, then a reload (what SIGHUP does,
    // through the same `Handle::reload`).
    let second = write_cert(tmp.path());
    assert!(second != first);
    d.reload(&conf);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = match rt.block_on(tls_healthz(&d.addr, &second)) {
            Ok((resp, peer)) if peer == second => {
                assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
                break;
            }
            Ok(_) => "the old certificate".to_string(),
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served after the reload ({last})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
