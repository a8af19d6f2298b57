//! Keys: the Ed25519 signing key (generating it, reading it with its mode
//! checked, finding the one `stele serve` uses) and public keys in hex.

use super::*;
use crate::datadir::SIGNING_KEY_FILE;

/// Lower-case hex of a public key.
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.to_bytes())
}

pub(crate) fn parse_public_key_hex(s: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("expected 64 hex digits (a 32-byte Ed25519 public key)")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid Ed25519 public key".to_string())
}

/// A public key given on the command line: 64 hex digits, or the path of a
/// file holding them (as `stele keygen --public-out` writes).
pub fn parse_public_key(arg: &str) -> Result<VerifyingKey, String> {
    if arg.len() == 64 && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        return parse_public_key_hex(&arg.to_ascii_lowercase());
    }
    let text = std::fs::read_to_string(arg).map_err(|e| {
        format!("{arg:?} is neither 64 hex digits nor a readable public key file: {e}")
    })?;
    parse_public_key_hex(&text.trim().to_ascii_lowercase()).map_err(|e| format!("{arg}: {e}"))
}

/// Reads a signing key file: 64 hex digits (the 32-byte Ed25519 seed) on one
/// line, readable by its owner only.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, DigestError> {
    let meta = std::fs::metadata(path).map_err(io("read", path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(invalid(
            path,
            format!(
                "other users have access to the signing key (mode {mode:04o}): \
                 `chmod 600` it, and consider it compromised if they could read it"
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(io("read", path))?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            invalid(
                path,
                "not a signing key: expected 64 hex digits on one line \
                 (make one with `stele keygen --signing --out PATH`)",
            )
        })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The signing key `stele serve` uses, from the first of: the file named by
/// `$STELE_SIGNING_KEY_FILE`, `$CREDENTIALS_DIRECTORY/signing.key` (systemd
/// `LoadCredential=`), `DATA_DIR/signing.key`. `None` when there is none
/// (digests are off); an error when the chosen file is unusable.
pub fn load_signing_key(data_dir: &Path) -> Result<Option<SigningKey>, DigestError> {
    let named = std::env::var_os(SIGNING_KEY_ENV).filter(|v| !v.is_empty());
    let path = match named {
        Some(p) => PathBuf::from(p),
        None => {
            let cred = std::env::var_os("CREDENTIALS_DIRECTORY")
                .map(|d| PathBuf::from(d).join(SIGNING_KEY_FILE))
                .filter(|p| p.exists());
            match cred {
                Some(p) => p,
                None if DataDir::new(data_dir).signing_key().exists() => {
                    DataDir::new(data_dir).signing_key()
                }
                None => return Ok(None),
            }
        }
    };
    let key = read_signing_key(&path)?;
    tracing::info!(
        "Daily digests are on: signing with public key {} from {}.",
        public_key_hex(&key.verifying_key()),
        path.display()
    );
    Ok(Some(key))
}

/// `stele keygen --signing`: writes a new signing key to `out` (mode 0600)
/// and, if asked, its public key to `public_out`. Refuses to overwrite
/// either file. Returns the public key.
pub fn generate_signing_key(
    out: &Path,
    public_out: Option<&Path>,
) -> Result<VerifyingKey, DigestError> {
    if public_out == Some(out) {
        return Err(invalid(out, "the public key needs a file of its own"));
    }
    for p in std::iter::once(out).chain(public_out) {
        if p.symlink_metadata().is_ok() {
            return Err(invalid(p, "already exists: refusing to overwrite it"));
        }
    }
    let mut seed = crate::datadir::random_bytes::<32>()?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let public = key.verifying_key();
    write_new(out, hex::encode(key.to_bytes()).as_bytes(), 0o600)?;
    if let Some(p) = public_out {
        write_new(p, public_key_hex(&public).as_bytes(), 0o644)?;
    }
    Ok(public)
}

/// Creates `path` (never replacing a file) with `line` and a newline, fsyncs
/// it and its directory.
fn write_new(path: &Path, line: &[u8], mode: u32) -> Result<(), DigestError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io("create", path))?;
    f.write_all(line)
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(io("write", path))?;
    Ok(crate::datadir::fsync_dir(crate::datadir::parent_dir(path))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_parse_from_hex_or_a_file_and_signing_keys_must_be_private() {
        let tmp = tempfile::tempdir().unwrap();
        let key_path = tmp.path().join("k");
        let pub_path = tmp.path().join("k.pub");
        let public = generate_signing_key(&key_path, Some(&pub_path)).unwrap();
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = read_signing_key(&key_path).unwrap();
        assert_eq!(key.verifying_key(), public);
        let hex = public_key_hex(&public);
        assert_eq!(parse_public_key(&hex).unwrap(), public);
        assert_eq!(parse_public_key(&hex.to_uppercase()).unwrap(), public);
        assert_eq!(
            parse_public_key(pub_path.to_str().unwrap()).unwrap(),
            public
        );
        assert!(parse_public_key("nope").is_err());
        let err = generate_signing_key(&key_path, None).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_signing_key(&key_path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
