//! A moto server for the tests of one test binary: `MOTO_ENDPOINT` when set (scripts/test
//! starts one), else `moto_server` from the venv `${XDG_CACHE_HOME:-$HOME/.cache}/moto-5.2.5`
//! started here on a free loopback port. Neither available is a test FAILURE, not a skip.
//!
//! The server started here watches its parent: when the test process ends (even killed),
//! it exits, so no moto outlives the tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const MOTO_VERSION: &str = "5.2.5";

pub struct Moto {
    pub endpoint: String,
    child: Mutex<Option<Child>>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock()
            && let Some(child) = c.as_mut()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn venv() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
        });
    cache.join(format!("moto-{MOTO_VERSION}"))
}

/// A bare HTTP/1.0 request to moto; returns (status, body).
pub fn http(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(hostport).expect("connect to moto");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {hostport}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn ready(endpoint: &str) -> bool {
    let hostport = endpoint.trim_start_matches("http://");
    if TcpStream::connect_timeout(
        &hostport.parse().expect("endpoint is host:port"),
        Duration::from_millis(200),
    )
    .is_err()
    {
        return false;
    }
    http(endpoint, "GET", "/moto-api/", &[], "").0 == 200
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The moto of this test binary, started on first use.
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| {
        if let Some(ep) = std::env::var("MOTO_ENDPOINT").ok().filter(|e| !e.is_empty()) {
            assert!(
                ready(&ep),
                "MOTO_ENDPOINT={ep} does not answer GET /moto-api/: start moto there or unset it"
            );
            return Moto {
                endpoint: ep.trim_end_matches('/').to_string(),
                child: Mutex::new(None),
            };
        }
        let venv = venv();
        let server = venv.join("bin").join("moto_server");
        let python = venv.join("bin").join("python");
        assert!(
            server.exists() && python.exists(),
            "moto is not installed: set MOTO_ENDPOINT to a running moto, or install it with\n  python3 -m venv {v} && {v}/bin/pip install moto=={MOTO_VERSION} flask flask-cors",
            v = venv.display()
        );
        let port = super::net::free_port();
        // moto_server's own entry point, plus a thread that exits when our process (its
        // parent) is gone, so a killed test run leaves no server behind.
        let script = format!(
            "import os, sys, threading, time\n\
             ppid = os.getppid()\n\
             def watch():\n\
             \x20   while os.getppid() == ppid:\n\
             \x20       time.sleep(0.5)\n\
             \x20   os._exit(0)\n\
             threading.Thread(target=watch, daemon=True).start()\n\
             from moto.server import main\n\
             sys.argv = ['moto_server', '-H', '127.0.0.1', '-p', '{port}']\n\
             main()\n"
        );
        let log = std::env::temp_dir().join(format!("cutover-moto-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("moto log file");
        let child = Command::new(&python)
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
        let endpoint = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while !ready(&endpoint) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto did not answer on {endpoint} within 30 s; log: {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            endpoint,
            child: Mutex::new(Some(child)),
        }
    })
}

/// The default VPC, its subnets and its default security group, from moto's EC2 query API
/// (aws-sdk-ec2 is a large crate, not worth it for three lookups).
pub struct Network {
    pub vpc: String,
    pub subnets: Vec<String>,
    pub security_group: String,
}

fn ec2(endpoint: &str, action: &str) -> String {
    let body = format!("Action={action}&Version=2016-11-15");
    let (status, out) = http(
        endpoint,
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
            ),
        ],
        &body,
    );
    assert_eq!(status, 200, "EC2 {action}: {out}");
    out
}

fn tag_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split(&close).next())
        .map(str::to_string)
        .collect()
}

pub fn network(endpoint: &str) -> Network {
    let vpcs = ec2(endpoint, "DescribeVpcs");
    let vpc = tag_values(&vpcs, "vpcId")
        .into_iter()
        .next()
        .expect("moto has a default VPC");
    let subnets_xml = ec2(endpoint, "DescribeSubnets");
    let subnets: Vec<String> = subnets_xml
        .split("<item>")
        .filter(|item| item.contains(&format!("<vpcId>{vpc}</vpcId>")))
        .flat_map(|item| tag_values(item, "subnetId"))
        .collect();
    assert!(subnets.len() >= 2, "default VPC has subnets: {subnets_xml}");
    let sgs = ec2(endpoint, "DescribeSecurityGroups");
    let security_group = tag_values(&sgs, "groupId")
        .into_iter()
        .next()
        .expect("a security group");
    Network {
        vpc,
        subnets,
        security_group,
    }
}
