//! The two proxies the efficiency benches compare, each doing the same 90/10 split of
//! two backends: cutover's proxy (this bench binary re-executed in proxy role) and nginx
//! (a config written into a temp dir).

use std::net::SocketAddr;
use std::path::Path;

use cutover::platform::local::proxy::ServiceProxy;
use cutover::platform::local::stats::ProxyStats;

use super::fail;

/// Set to `proxy` to run a bench binary as the proxy process ([`proxy_role`]).
pub const ROLE_ENV: &str = "CUTOVER_BENCH_ROLE";

fn env_addr(name: &str) -> SocketAddr {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fail(&format!("{name} missing")))
}

/// The proxy in its own process (so its CPU time or instructions can be counted alone):
/// listens on `CUTOVER_BENCH_LISTEN`, splits 90/10 between `CUTOVER_BENCH_BLUE` and
/// `CUTOVER_BENCH_GREEN`, stops gracefully on SIGTERM.
pub fn proxy_role() {
    let listen = env_addr("CUTOVER_BENCH_LISTEN");
    let blue = env_addr("CUTOVER_BENCH_BLUE");
    let green = env_addr("CUTOVER_BENCH_GREEN");
    let threads = std::env::var("CUTOVER_BENCH_PROXY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        });
    let rt = if std::env::var("CUTOVER_BENCH_PROXY_RUNTIME").as_deref() == Ok("current") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    rt.block_on(async move {
        let proxy = ServiceProxy::bind("bench", listen, ProxyStats::new())
            .await
            .unwrap_or_else(|e| fail(&e.to_string()));
        proxy.set_backends("blue", vec![blue]);
        proxy.set_backends("green", vec![green]);
        proxy
            .set_weights(&vec![("blue".to_string(), 90), ("green".to_string(), 10)])
            .unwrap_or_else(|e| fail(&e.to_string()));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .unwrap_or_else(|e| fail(&e.to_string()));
        term.recv().await;
        proxy.shutdown().await;
    });
}

/// nginx's config for the same split: 2 workers, upstream keep-alive, no access log.
/// Returns the config file's path (inside `dir`).
pub fn write_nginx_conf(
    dir: &Path,
    listen: SocketAddr,
    blue: SocketAddr,
    green: SocketAddr,
) -> std::path::PathBuf {
    let conf = format!(
        "worker_processes 2;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
         upstream app {{ server {blue} weight=90; server {green} weight=10; keepalive 64; }}\n\
         server {{ listen {listen}; location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n}}\n",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap_or_else(|e| fail(&format!("write nginx.conf: {e}")));
    path
}

/// nginx's argv for `conf` (prefix `dir`, in the foreground).
pub fn nginx_args(dir: &Path, conf: &Path) -> Vec<std::ffi::OsString> {
    vec![
        "-p".into(),
        dir.into(),
        "-c".into(),
        conf.into(),
        "-e".into(),
        dir.join("error.log").into(),
        "-g".into(),
        "daemon off;".into(),
    ]
}

/// `NGINX_BIN` or /usr/sbin/nginx; fails the bench when missing.
pub fn nginx_bin(script: &str) -> String {
    let bin = std::env::var("NGINX_BIN").unwrap_or_else(|_| "/usr/sbin/nginx".to_string());
    if !Path::new(&bin).exists() {
        fail(&format!(
            "nginx not found at {bin}; run {script} (installs it with apt-get) or set NGINX_BIN"
        ));
    }
    bin
}
