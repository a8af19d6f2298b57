//! The web console's files: everything under `console/` in the repository,
//! embedded in the binary at build time (every profile), served at `/` (the
//! page) and `/console/{path}` (its scripts, styles and images).
//!
//! Owns the file table, their content types, validators and compressed
//! forms, and the security headers of every console response. Never reads
//! the disk at run time and never touches the data directory: the console is
//! a client of the HTTP API like any other, and its pages carry no data.
//!
//! Invariants:
//! 1. Every console response carries [`CSP`] (scripts, styles, images and
//!    connections from this origin only; no inline script or style, no
//!    frames, no plugins), `nosniff`, `no-referrer` and `DENY` framing, so
//!    nothing the console shows can load or send anything elsewhere.
//! 2. The body is the embedded file byte for byte, or its gzip form when the
//!    client accepts gzip (compressed once, on first use); the `ETag` is the
//!    file's SHA-256 either way, and a matching `If-None-Match` is a `304`.
//! 3. Only files of a known type are served; any other path is a `404`.

use rust_embed::Embed;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

#[derive(Embed)]
#[folder = "console/"]
struct Files;

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The other security headers of every console response.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

/// The content types served, by file extension.
const TYPES: [(&str, &str); 9] = [
    ("html", "text/html; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("ico", "image/x-icon"),
    ("json", "application/json"),
    ("txt", "text/plain; charset=utf-8"),
    ("woff2", "font/woff2"),
];

/// The page served at `/`.
pub const INDEX: &str = "index.html";

/// One file, ready to send.
#[derive(Debug, Clone)]
pub struct Asset {
    /// Its content type.
    pub content_type: &'static str,
    /// Its validator: the SHA-256 of its bytes, quoted.
    pub etag: String,
    /// The body: the file, or its gzip form.
    pub body: bytes::Bytes,
    /// Whether `body` is gzip.
    pub gzip: bool,
}

/// The file at `path` (relative to `console/`), compressed when `gzip` is
/// accepted and it pays; `None` for an unknown file or type.
pub fn asset(path: &str, gzip: bool) -> Option<Asset> {
    let ext = path.rsplit_once('.').map(|(_, e)| e)?;
    let content_type = TYPES.iter().find(|(e, _)| *e == ext)?.1;
    let file = Files::get(path)?;
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let compressed = match gzip {
        true => gzipped(path, &file.data),
        false => None,
    };
    Some(match compressed {
        Some(body) => Asset {
            content_type,
            etag,
            body,
            gzip: true,
        },
        None => Asset {
            content_type,
            etag,
            body: bytes::Bytes::copy_from_slice(&file.data),
            gzip: false,
        },
    })
}

/// Every embedded file's path, sorted.
pub fn paths() -> Vec<String> {
    let mut v: Vec<String> = Files::iter().map(|p| p.into_owned()).collect();
    v.sort();
    v
}

/// The gzip form of `data`, made once per path; `None` when it would not be
/// smaller (images already compressed).
fn gzipped(path: &str, data: &[u8]) -> Option<bytes::Bytes> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<bytes::Bytes>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(hit) = cache.lock().ok()?.get(path) {
        return hit.clone();
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let made = enc
        .write_all(data)
        .and_then(|()| enc.finish())
        .ok()
        .filter(|z| z.len() < data.len())
        .map(bytes::Bytes::from);
    cache.lock().ok()?.insert(path.to_owned(), made.clone());
    made
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn every_file_is_served_as_embedded_and_gzip_round_trips() {
        let paths = paths();
        assert!(paths.iter().any(|p| p == INDEX), "{paths:?}");
        for p in &paths {
            let plain = asset(p, false).unwrap_or_else(|| panic!("{p} has no known type"));
            let original = Files::get(p).unwrap().data;
            assert_eq!(&plain.body[..], &original[..], "{p}");
            let zipped = asset(p, true).unwrap();
            assert_eq!(zipped.etag, plain.etag);
            if zipped.gzip {
                let mut back = Vec::new();
                GzDecoder::new(&zipped.body[..])
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(back, &original[..], "{p}");
                assert!(zipped.body.len() < original.len());
            }
        }
        assert!(asset("no-such-file.js", false).is_none());
        assert!(asset("../Cargo.toml", false).is_none());
    }
}
