//! Cursors: where the previous page stopped, bound to its query by a fingerprint
//! and authenticated with a per-data-directory key.

use super::{Filter, Order, Position, QueryError, Sort};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;

/// Which listing a cursor belongs to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Route<'a> {
    /// A filtered listing or search.
    List,
    /// The history of one entity: type and id.
    Entity(&'a str, &'a str),
    /// The timeline of one user.
    User(&'a str),
}

/// Tags the fingerprint input, so that another encoding can never collide with it.
const FINGERPRINT_DOMAIN: &[u8] = b"stele cursor fingerprint v5\0";

/// The 8-byte fingerprint binding a cursor to its query: the first 8 bytes of
/// SHA-256 over [`FINGERPRINT_DOMAIN`], the route (`list`, `entity` with type and id,
/// or `user` with the user id; each string as u32 big-endian length ++ UTF-8), the
/// filter ([`Filter::fingerprint_into`]), the sort (`time` / `seq`) and the order
/// (`desc` / `asc`), each length-prefixed.
pub(super) fn fingerprint(route: Route<'_>, filter: &Filter, sort: Sort, order: Order) -> [u8; 8] {
    fn str_(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(FINGERPRINT_DOMAIN);
    match route {
        Route::List => str_(&mut b, "list"),
        Route::Entity(t, i) => {
            str_(&mut b, "entity");
            str_(&mut b, t);
            str_(&mut b, i);
        }
        Route::User(u) => {
            str_(&mut b, "user");
            str_(&mut b, u);
        }
    }
    filter.fingerprint_into(&mut b);
    str_(&mut b, sort.as_str());
    str_(&mut b, order.as_str());
    Sha256::digest(&b)[..8].try_into().expect("8 bytes")
}

/// Encodes and authenticates cursors: version byte 2, the query's 8-byte
/// fingerprint, the position of the page's last event (seq u64 and time i64,
/// big endian), then the first 16 bytes of SHA-256(key ‖ those 25 bytes);
/// base64url without padding (55 characters). Version 1 cursors (seq only,
/// before event-time order) are refused with a plain explanation.
#[derive(Clone)]
pub struct CursorCodec {
    key: [u8; 32],
}

impl fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CursorCodec { key: <secret> }")
    }
}

impl CursorCodec {
    /// A codec whose cursors are authenticated with `key`.
    pub fn new(key: [u8; 32]) -> CursorCodec {
        CursorCodec { key }
    }

    fn mac(&self, payload: &[u8]) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(payload);
        h.finalize()[..16].try_into().expect("16 bytes")
    }

    /// The cursor continuing the query with fingerprint `fp` after `at`.
    pub fn encode(&self, fp: [u8; 8], at: Position) -> String {
        let mut b = Vec::with_capacity(PAYLOAD + 16);
        b.push(VERSION);
        b.extend_from_slice(&fp);
        b.extend_from_slice(&at.seq.to_be_bytes());
        b.extend_from_slice(&at.time.to_be_bytes());
        let mac = self.mac(&b);
        b.extend_from_slice(&mac);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// The position a cursor continues after, if this codec made it for the
    /// query with fingerprint `fp`.
    pub fn decode(&self, cursor: &str, fp: [u8; 8]) -> Result<Position, QueryError> {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| QueryError::BadCursor("not a cursor returned by Stele".into()))?;
        if b.len() == 33 && b[0] == 1 {
            return Err(QueryError::BadCursor(
                "it comes from an older Stele, which listed in arrival order: start the listing \
                 again (add sort=seq for arrival order)"
                    .into(),
            ));
        }
        if b.len() != PAYLOAD + 16 || b[0] != VERSION {
            return Err(QueryError::BadCursor(
                "not a cursor returned by Stele".into(),
            ));
        }
        if self.mac(&b[..PAYLOAD]) != b[PAYLOAD..] {
            return Err(QueryError::BadCursor(
                "it was altered, or comes from another Stele installation".into(),
            ));
        }
        if b[1..9] != fp {
            return Err(QueryError::BadCursor(
                "it belongs to a different query: repeat the query that returned it, with the \
                 same filters, sort and order"
                    .into(),
            ));
        }
        Ok(Position {
            seq: u64::from_be_bytes(b[9..17].try_into().expect("8 bytes")),
            time: i64::from_be_bytes(b[17..25].try_into().expect("8 bytes")),
        })
    }
}

/// The cursor format's version byte.
const VERSION: u8 = 2;
/// Version, fingerprint, seq, time: the authenticated bytes.
const PAYLOAD: usize = 1 + 8 + 8 + 8;

/// Loads the cursor key of a data directory, creating it on first use
/// (readable by the daemon's user only: whoever holds it can forge cursors).
pub fn cursor_key(data_dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = crate::datadir::DataDir::new(data_dir).cursor_key();
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => {
            // Keys made before 0600 was the rule are tightened.
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(bytes.try_into().expect("32 bytes"))
        }
        Ok(_) => Err(std::io::Error::other(format!(
            "{} must hold exactly 32 bytes; delete it to make a new one (open cursors become invalid)",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let as_io = |e: crate::datadir::IoError| std::io::Error::new(e.source.kind(), e.to_string());
            let key = crate::datadir::random_bytes::<32>().map_err(as_io)?;
            crate::datadir::write_durably(&path, &key, 0o600).map_err(as_io)?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_cursor_key_is_made_once_and_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = cursor_key(dir.path()).unwrap();
        assert_eq!(cursor_key(dir.path()).unwrap(), key);
        let path = crate::datadir::DataDir::new(dir.path()).cursor_key();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        // A key made world-readable (as before 0600) is tightened on load.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(cursor_key(dir.path()).unwrap(), key);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
}
