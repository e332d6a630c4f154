//! The local platform's settings from a release: each `[[service]]`'s `[service.local]`
//! and `[service.health]` become a [`LocalServiceConfig`]. The word `cutover` as the
//! program of a command means this very binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{HealthCheck, LocalConfig, LocalServiceConfig, RevisionRun};
use crate::release::{Release, Service};

/// Why a release cannot run on the local platform; names the service and field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("service `{service}`: {message}")]
pub struct FromReleaseError {
    pub service: String,
    pub message: String,
}

/// How one service runs locally. `self_exe` replaces a program named `cutover`; relative
/// program paths (`./server`) are resolved against `base_dir` (the release's directory).
pub fn service_config(
    s: &Service,
    self_exe: &Path,
    base_dir: &Path,
) -> Result<LocalServiceConfig, FromReleaseError> {
    let err = |message: String| FromReleaseError {
        service: s.name.clone(),
        message,
    };
    let Some(local) = &s.local else {
        return Err(err(
            "has no [service.local] table; add listen, command, current and target".into(),
        ));
    };
    let listen: SocketAddr = local.listen.parse().map_err(|e| {
        err(format!(
            "local.listen `{}` is not an address ({e}); write e.g. \"127.0.0.1:18081\"",
            local.listen
        ))
    })?;
    let mut command = local.command.clone();
    if let Some(program) = command.first_mut() {
        if program == "cutover" {
            *program = self_exe.to_string_lossy().into_owned();
        } else if program.starts_with("./") || program.starts_with("../") {
            *program = base_dir.join(&*program).to_string_lossy().into_owned();
        }
    }
    let h = &s.health;
    let mut cfg = LocalServiceConfig::new(&s.name, listen, command);
    cfg.health = HealthCheck {
        path: h.path.clone(),
        interval: h.interval.0,
        timeout: h.timeout.0,
        healthy_after: h.healthy_after,
        unhealthy_after: h.unhealthy_after,
    };
    cfg.drain_timeout = local.drain_timeout.0;
    cfg.stop_timeout = Duration::from_secs(5);
    for r in [&local.current, &local.target] {
        cfg = cfg.with_revision(
            &r.revision,
            RevisionRun {
                args: r.args.clone(),
                env: r.env.clone(),
            },
        );
    }
    Ok(cfg)
}

/// The whole local platform of a release. `state_dir` holds its pid file (one platform
/// per directory; a new platform there reaps what an earlier one left running).
pub fn local_config(
    release: &Release,
    state_dir: &Path,
    self_exe: &Path,
    base_dir: &Path,
    admin: Option<SocketAddr>,
) -> Result<LocalConfig, FromReleaseError> {
    let services = release
        .services
        .iter()
        .map(|s| service_config(s, self_exe, base_dir))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LocalConfig {
        state_dir: PathBuf::from(state_dir),
        admin,
        services,
        secrets: crate::secrets::Secrets::from_release(release),
        pin_secret: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_local_and_health_and_resolves_this_binary() {
        let text = r#"
[release]
name = "r"
[[service]]
name = "api"
strategy = "blue_green"
[service.health]
path = "/ready"
interval = "200ms"
timeout = "100ms"
healthy_after = 1
unhealthy_after = 2
[service.local]
listen = "127.0.0.1:18555"
replicas = 2
command = ["cutover", "demo-service", "--port", "{port}", "--revision", "{revision}"]
current = { revision = "v1" }
target = { revision = "v2", args = ["--error-rate", "0.5"], env = { A = "b" } }
"#;
        let r = crate::release::load_str(Path::new("t.toml"), text, Path::new(".")).unwrap();
        let c = local_config(
            &r,
            Path::new("/tmp/x"),
            Path::new("/bin/cutover"),
            Path::new("."),
            None,
        )
        .unwrap();
        c.validate().unwrap();
        let s = &c.services[0];
        assert_eq!(s.command[0], "/bin/cutover");
        assert_eq!(s.health.path, "/ready");
        assert_eq!(s.health.interval, Duration::from_millis(200));
        assert_eq!(s.health.unhealthy_after, 2);
        assert_eq!(s.revisions["v2"].args, vec!["--error-rate", "0.5"]);
        assert_eq!(s.revisions["v2"].env["A"], "b");
        assert!(s.revisions.contains_key("v1"));
    }
}
