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
    raise_open_files_limit();
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

/// Raises the soft limit of open files to the hard one. The daemon keeps a file open
/// per segment and per packed run of the key index (65,536 events each) besides its
/// connections, and never calls `select()`, so the soft limit of 1,024 that shells and
/// systemd give by default would only stop it around 60M events; systemd's advice for
/// such programs is to raise it themselves (the unit also sets `LimitNOFILE=65536`).
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!("Open files: the limit could not be read ({e}); left as it is.");
        return;
    }
    if lim.rlim_cur >= lim.rlim_max {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads only the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        tracing::info!(
            "Open files: soft limit raised from {} to the hard limit, {}.",
            lim.rlim_cur,
            lim.rlim_max
        );
    } else {
        let e = std::io::Error::last_os_error();
        tracing::warn!("Open files: the soft limit stays {} ({e}).", lim.rlim_cur);
    }
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
