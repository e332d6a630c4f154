//! A throwaway PostgreSQL server for tests and benchmarks: initdb into a temp dir, start on
//! a free loopback port, stop on drop. Needs Debian's `postgresql` package (server binaries
//! in /usr/lib/postgresql/*/bin); panics with the install command when they are missing.
//! initdb refuses to run as root, so as root the data dir is chowned to the `postgres` user
//! and initdb/pg_ctl run through `runuser -u postgres`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgServer {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    pub port: u16,
}

fn server_bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin; \
             install them with: apt-get update && apt-get install -y postgresql"
        ),
    }
}

impl PgServer {
    pub fn start() -> PgServer {
        PgServer::start_with(None)
    }

    /// A server that takes TCP connections only over TLS (`hostssl`; plain TCP is
    /// rejected), with this server certificate and key (PEM; valid for 127.0.0.1).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> PgServer {
        PgServer::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> PgServer {
        let bin = server_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("cutover-pg-")
            .tempdir()
            .unwrap();
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(
                ok,
                "chown of {} to postgres failed (does the postgres user exist?)",
                dir.path().display()
            );
        }
        let data = dir.path().join("data");
        let port = super::net::free_port();
        let server = PgServer {
            _dir: dir,
            bin,
            data,
            as_postgres,
            port,
        };
        server.run(
            "initdb",
            &[
                "-D",
                server.data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let sock = server.data.parent().unwrap().to_str().unwrap().to_string();
        let mut opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c full_page_writes=off"
        );
        if let Some((cert_pem, key_pem)) = tls {
            use std::os::unix::fs::PermissionsExt;
            let dir = server.data.parent().unwrap();
            let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
            std::fs::write(&cert, cert_pem).unwrap();
            std::fs::write(&key, key_pem).unwrap();
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            if as_postgres {
                let ok = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&cert)
                    .arg(&key)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "chown of the server's certificate to postgres failed");
            }
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            ));
            std::fs::write(
                server.data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
            )
            .unwrap();
        }
        let log = server.data.parent().unwrap().join("log");
        server.run(
            "pg_ctl",
            &[
                "-D",
                server.data.to_str().unwrap(),
                "-w",
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "start",
            ],
        );
        server
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A superuser session on `db` for the test's own set-up, over the server's Unix socket
    /// (so it works on a TLS-only server too).
    pub fn client(&self, db: &str) -> postgres::Client {
        let conninfo = format!(
            "host={} port={} user=postgres dbname={db}",
            self.data.parent().unwrap().display(),
            self.port
        );
        postgres::Client::connect(&conninfo, postgres::NoTls).unwrap()
    }

    /// Create a database and return its URL.
    pub fn create_db(&self, name: &str) -> String {
        self.client("postgres")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        self.url(name)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                self.data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}
