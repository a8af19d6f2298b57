//! `stele serve` and `stele check-config`: the configuration read from the
//! file, the environment and the flags, then the daemon started or the
//! configuration reported. Never touches the data directory itself: the
//! daemon (`stele::daemon`) does.

use super::process_env;
use std::process::ExitCode;

pub(crate) fn serve(
    config: Option<&std::path::Path>,
    flags: &stele::config::Flags,
) -> anyhow::Result<()> {
    use stele::config::Config;
    let path = stele::config::config_path(config, process_env);
    let mut cfg = Config::load(path.as_deref(), process_env)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    cfg.apply_flags(flags);
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let overrides: Vec<String> = cfg
        .env_overrides()
        .iter()
        .map(|(key, var)| format!("{key} from {var}"))
        .collect();
    match &path {
        Some(p) => tracing::info!("Configuration: {}.", p.display()),
        None => tracing::info!("Configuration: no file, embedded defaults."),
    }
    if !overrides.is_empty() {
        tracing::info!("Environment overrides: {}.", overrides.join(", "));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stele-http")
        .build()?;
    // SIGHUP: the same file, environment and flags, read again.
    let reload: stele::config::Reloader = {
        let (path, flags) = (path.clone(), flags.clone());
        std::sync::Arc::new(move || {
            let mut cfg = Config::load(path.as_deref(), process_env).map_err(|e| e.to_string())?;
            cfg.apply_flags(&flags);
            cfg.validate().map_err(|e| e.to_string())?;
            let field_map = cfg.ingest.field_map().map_err(|(_, why)| why)?;
            let alerts = cfg.alert_set().map_err(|(_, why)| why)?;
            Ok(stele::config::Reloaded {
                alerts,
                detect: cfg.detect,
                processes: cfg.processes,
                field_map,
                limits: cfg.limits,
                retention: cfg.retention,
                auth: cfg.auth,
                tls: cfg.tls,
            })
        })
    };
    rt.block_on(stele::daemon::run(cfg.serve_config(Some(reload))))
}

pub(crate) fn check_config(path: &std::path::Path, print: bool) -> ExitCode {
    let cfg = match stele::config::Config::load(Some(path), process_env) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("stele check-config: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    for (key, var) in cfg.env_overrides() {
        eprintln!("note: {key} is set by the environment ({var})");
    }
    // The certificate and key must load as `stele serve` loads them.
    if let Some(tls) = &cfg.tls {
        if let Err(e) = stele::tls::load(tls) {
            eprintln!("stele check-config: {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    if !print {
        println!("{}: valid", path.display());
        return ExitCode::SUCCESS;
    }
    match cfg.to_toml() {
        Ok(text) => {
            eprintln!("{}: valid", path.display());
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stele check-config: cannot print the configuration: {e}");
            ExitCode::from(1)
        }
    }
}
