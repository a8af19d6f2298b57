//! `stele keygen` (a digest signing key, or an API key printed once with
//! its configuration lines) and `stele sign-days` (daily digests signed
//! offline). Key formats and signing are `stele::seal` and `stele::auth`'s.

use super::open_log;
use std::path::PathBuf;
use std::process::ExitCode;
use stele::log::LogConfig;

pub(crate) fn keygen(
    out: &std::path::Path,
    public_out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let public = stele::seal::digest::generate_signing_key(out, public_out)?;
    let hex = stele::seal::digest::public_key_hex(&public);
    println!("wrote a new digest signing key to {}", out.display());
    println!("public key: {hex}");
    if let Some(p) = public_out {
        println!("wrote the public key to {}", p.display());
    }
    println!(
        "stele serve signs daily digests with the key in $STELE_SIGNING_KEY_FILE, \
         $CREDENTIALS_DIRECTORY/signing.key (systemd LoadCredential=) or DATA_DIR/signing.key \
         (restart it to take a new key). Keep the private key out of backups; give auditors \
         the public key: stele verify --public-key {hex} BACKUP_DIR"
    );
    Ok(())
}

/// `stele keygen --id … --role …`: a new API key, printed once.
pub(crate) fn api_keygen(
    id: String,
    roles: &[String],
    tenants: Vec<String>,
    rate_per_sec: Option<u32>,
    rate: Option<stele::auth::Rate>,
) -> ExitCode {
    use stele::auth::{AuthConfig, KeyConfig, Role};
    let mut parsed = Vec::new();
    for r in roles {
        match Role::ALL.iter().find(|x| x.as_str() == r) {
            Some(x) => parsed.push(*x),
            None => {
                eprintln!(
                    "stele keygen: unknown role {r:?}: roles are ingest, read, export and admin"
                );
                return ExitCode::from(2);
            }
        }
    }
    let token = match stele::auth::generate_token() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("stele keygen: cannot read random bytes from /dev/urandom: {e}");
            return ExitCode::from(1);
        }
    };
    let key = KeyConfig {
        id,
        hash: stele::auth::hash_line(&token),
        roles: parsed,
        tenants: if tenants.is_empty() {
            vec!["*".into()]
        } else {
            tenants
        },
        rate_per_sec,
        rate,
        burst: None,
        streams_max: None,
    };
    // The same checks `stele serve` makes.
    let check = AuthConfig {
        keys: vec![key.clone()],
        ..AuthConfig::default()
    };
    if let Err((_, e)) = check.validate() {
        eprintln!("stele keygen: {}", e.replace("auth.keys[0]", "the key"));
        return ExitCode::from(2);
    }
    #[derive(serde::Serialize)]
    struct Snippet {
        auth: SnippetAuth,
    }
    #[derive(serde::Serialize)]
    struct SnippetAuth {
        keys: Vec<KeyConfig>,
    }
    let snippet = match toml::to_string(&Snippet {
        auth: SnippetAuth { keys: vec![key] },
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stele keygen: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "API key (shown only now: Stele stores only its hash; give it to the client, who sends \
         `Authorization: Bearer <key>`):"
    );
    println!("{token}");
    println!();
    println!(
        "Add these lines to the configuration file, then reload (systemctl reload stele, or \
         SIGHUP):"
    );
    println!();
    print!("{snippet}");
    ExitCode::SUCCESS
}

pub(crate) fn sign_days(
    data_dir: &std::path::Path,
    files: &[PathBuf],
    through: Option<&str>,
    head: bool,
) -> ExitCode {
    let how = match through {
        _ if head => stele::seal::Vouch::Head,
        Some(day) => match stele::seal::digest::parse_day(day) {
            Some(d) => stele::seal::Vouch::Operator { through: d },
            None => {
                eprintln!("stele sign-days: --vouch-through {day:?} is not a YYYY-MM-DD day");
                return ExitCode::from(2);
            }
        },
        None => {
            let mut all = Vec::new();
            for f in files {
                match stele::seal::checkpoint::read_file(f) {
                    Ok(cps) => all.extend(cps),
                    Err(e) => {
                        eprintln!("stele sign-days: --checkpoint: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            stele::seal::Vouch::Checkpoints(all)
        }
    };
    let key = match stele::seal::digest::load_signing_key(data_dir) {
        Ok(Some(k)) => k,
        Ok(None) => {
            eprintln!(
                "stele sign-days: no signing key ($STELE_SIGNING_KEY_FILE, \
                 $CREDENTIALS_DIRECTORY/signing.key or DATA_DIR/signing.key)"
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("stele sign-days: {e}");
            return ExitCode::from(2);
        }
    };
    let log = match open_log(data_dir, LogConfig::default()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("stele sign-days: {e:#} (stop the daemon first)");
            return ExitCode::from(2);
        }
    };
    let now = chrono::Utc::now().timestamp_micros();
    match stele::seal::sign_days(data_dir, &log, &key, now, how) {
        Ok(run) => {
            for p in &run.written {
                println!("signed {}", p.display());
            }
            for (day, why) in &run.unsigned {
                println!("still unsigned: {day}: {why}");
            }
            if run.unsigned.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("stele sign-days: {e}");
            ExitCode::from(1)
        }
    }
}
