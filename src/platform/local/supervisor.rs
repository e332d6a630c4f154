//! Runs replicas as child processes on free loopback ports.
//!
//! Each replica is its own process group (so stopping it also stops anything it forked),
//! gets `PR_SET_PDEATHSIG(SIGKILL)` (so it dies with cutover, even after a SIGKILL), and is
//! recorded in a pid file that the next [`Supervisor::new`] on the same state directory
//! reaps. Output goes line by line to `tracing` with target `service`.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Placeholders allowed in a command, its args and env values.
pub const PLACEHOLDERS: [&str; 4] = ["{port}", "{revision}", "{replica}", "{service}"];

/// A replica that exits this soon after start saying its address is in use is started
/// again on another port (the free-port probe and the child's bind can race).
const PORT_RACE_WINDOW: Duration = Duration::from_secs(5);
const PORT_RACE_RETRIES: u32 = 3;
/// Lines of output kept per replica for exit reasons.
const TAIL_LINES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot use state directory {path}: {source}; pick a writable `state_dir`")]
    StateDir { path: PathBuf, source: io::Error },
    #[error("no free loopback port: {0}")]
    Port(io::Error),
    #[error("could not start `{program}` for {id}: {source}; check the service's `command`")]
    Spawn {
        program: String,
        id: String,
        source: io::Error,
    },
    #[error("empty command for {0}; `command` needs at least the program")]
    EmptyCommand(String),
}

/// What to run for one replica.
#[derive(Debug, Clone)]
pub struct ReplicaSpec {
    pub service: String,
    pub revision: String,
    pub replica: u32,
    /// Program and arguments, with placeholders.
    pub command: Vec<String>,
    /// Appended to `command` (placeholders allowed).
    pub args: Vec<String>,
    /// Added to the inherited environment (placeholders allowed in values).
    pub env: BTreeMap<String, String>,
    /// What its output is scrubbed of besides its `env` values: the release's other
    /// secrets, which it may have inherited through cutover's environment.
    pub scrub: crate::secrets::Secrets,
}

impl ReplicaSpec {
    /// `service-revision-replica`, e.g. `payments-v2-0`.
    pub fn id(&self) -> String {
        format!("{}-{}-{}", self.service, self.revision, self.replica)
    }

    fn fill(&self, s: &str, port: u16) -> String {
        s.replace("{port}", &port.to_string())
            .replace("{revision}", &self.revision)
            .replace("{replica}", &self.replica.to_string())
            .replace("{service}", &self.service)
    }

    /// The argv for a start on `port`: `command` then `args`, placeholders filled in.
    pub fn argv(&self, port: u16) -> Vec<String> {
        self.command
            .iter()
            .chain(self.args.iter())
            .map(|a| self.fill(a, port))
            .collect()
    }
}

/// Names the first `{...}` in `s` that is not a known placeholder.
pub fn unknown_placeholder(s: &str) -> Option<String> {
    let mut rest = s;
    while let Some(start) = rest.find('{') {
        let after = &rest[start..];
        let end = after.find('}')?;
        let candidate = &after[..=end];
        if !PLACEHOLDERS.contains(&candidate) {
            return Some(candidate.to_string());
        }
        rest = &after[end + 1..];
    }
    None
}

/// The process side of a replica, as last observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStatus {
    /// Bumped when the replica was started again on a new port after a port clash.
    pub generation: u32,
    pub addr: SocketAddr,
    pub pid: u32,
    /// `None` while running; why it ended otherwise.
    pub exit: Option<String>,
}

struct Control {
    stopping: AtomicBool,
    /// Process group of the running child, 0 when none runs.
    pgid: AtomicI32,
}

/// A running (or ended) replica. Dropping it kills its process group.
pub struct Replica {
    id: String,
    status: watch::Receiver<ProcessStatus>,
    ctl: Arc<Control>,
}

impl Replica {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn status(&self) -> ProcessStatus {
        self.status.borrow().clone()
    }

    /// Follow status changes (exit, restart on a new port).
    pub fn subscribe(&self) -> watch::Receiver<ProcessStatus> {
        self.status.clone()
    }

    pub fn is_running(&self) -> bool {
        self.status.borrow().exit.is_none()
    }

    /// SIGTERM the process group, wait up to `grace` for the replica to exit, then SIGKILL
    /// the group. Returns once the replica has exited.
    pub async fn stop(&self, grace: Duration) {
        self.ctl.stopping.store(true, Ordering::SeqCst);
        let mut rx = self.status.clone();
        if rx.borrow().exit.is_some() {
            return;
        }
        signal_group(self.ctl.pgid.load(Ordering::SeqCst), libc::SIGTERM);
        if tokio::time::timeout(grace, rx.wait_for(|s| s.exit.is_some()))
            .await
            .is_err()
        {
            tracing::warn!(replica = %self.id, ?grace, "no exit after SIGTERM; sending SIGKILL");
            signal_group(self.ctl.pgid.load(Ordering::SeqCst), libc::SIGKILL);
            let _ =
                tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.exit.is_some()))
                    .await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.ctl.stopping.store(true, Ordering::SeqCst);
        // The monitor task still reaps the child and clears its pid file entry while the
        // runtime runs; `stopping` keeps it from starting anything new.
        signal_group(self.ctl.pgid.load(Ordering::SeqCst), libc::SIGKILL);
    }
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: plain syscall; ESRCH (group already gone) is fine.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Starts and tracks replicas for one state directory.
pub struct Supervisor {
    pids: Arc<PidFile>,
}

impl Supervisor {
    /// Prepare `<state_dir>/local`, reaping process groups a previous run left behind.
    pub fn new(state_dir: &Path) -> Result<Supervisor, SupervisorError> {
        let dir = state_dir.join("local");
        fs::create_dir_all(&dir).map_err(|source| SupervisorError::StateDir {
            path: dir.clone(),
            source,
        })?;
        let pids = PidFile {
            path: dir.join("pids"),
            entries: Mutex::new(BTreeMap::new()),
        };
        let reaped = pids
            .reap_stale()
            .map_err(|source| SupervisorError::StateDir {
                path: pids.path.clone(),
                source,
            })?;
        if reaped > 0 {
            tracing::warn!(
                groups = reaped,
                "killed process groups left by a previous run"
            );
        }
        Ok(Supervisor {
            pids: Arc::new(pids),
        })
    }

    /// Path of the pid file (`<state_dir>/local/pids`).
    pub fn pid_file(&self) -> &Path {
        &self.pids.path
    }

    /// Start one replica on a free loopback port. Returns once the process exists.
    pub async fn start(&self, spec: ReplicaSpec) -> Result<Replica, SupervisorError> {
        if spec.command.is_empty() {
            return Err(SupervisorError::EmptyCommand(spec.id()));
        }
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let started = spawn_once(&spec, &self.pids, &tail).await?;
        let ctl = Arc::new(Control {
            stopping: AtomicBool::new(false),
            pgid: AtomicI32::new(started.pid as i32),
        });
        let (tx, rx) = watch::channel(ProcessStatus {
            generation: 0,
            addr: started.addr,
            pid: started.pid,
            exit: None,
        });
        let id = spec.id();
        tokio::spawn(monitor(
            spec,
            started,
            ctl.clone(),
            tx,
            self.pids.clone(),
            tail,
        ));
        Ok(Replica {
            id,
            status: rx,
            ctl,
        })
    }
}

struct Started {
    child: Child,
    addr: SocketAddr,
    pid: u32,
    at: Instant,
    readers: Vec<JoinHandle<()>>,
}

type Tail = Arc<Mutex<VecDeque<String>>>;

async fn spawn_once(
    spec: &ReplicaSpec,
    pids: &PidFile,
    tail: &Tail,
) -> Result<Started, SupervisorError> {
    let port = free_port().map_err(SupervisorError::Port)?;
    let argv = spec.argv(port);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(spec.env.iter().map(|(k, v)| (k, spec.fill(v, port))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: getpid is async-signal-safe; the closure below only makes raw syscalls.
    let parent = unsafe { libc::getpid() };
    // SAFETY: prctl/getppid are async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // cutover died between fork and prctl: the signal was never sent, so go now.
            if libc::getppid() != parent {
                return Err(io::Error::other(
                    "cutover exited before the replica started",
                ));
            }
            Ok(())
        });
    }
    let mut child = spawn_on_keeper_thread(cmd)
        .await
        .map_err(|source| SupervisorError::Spawn {
            program: argv[0].clone(),
            id: spec.id(),
            source,
        })?;
    let pid = child.id().unwrap_or(0);
    if let Some(start) = proc_start_time(pid as i32) {
        pids.add(pid as i32, start, &spec.id());
    }
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(forward_lines(
            out,
            spec.clone(),
            "stdout",
            tail.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(forward_lines(
            err,
            spec.clone(),
            "stderr",
            tail.clone(),
        )));
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    tracing::info!(replica = %spec.id(), pid, %addr, "replica started");
    Ok(Started {
        child,
        addr,
        pid,
        at: Instant::now(),
        readers,
    })
}

struct SpawnJob {
    cmd: Command,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends, and tokio's
/// worker and blocking threads come and go. All children are therefore forked from one
/// thread that lives as long as the process.
async fn spawn_on_keeper_thread(cmd: Command) -> io::Result<Child> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        let spawned = std::thread::Builder::new()
            .name("cutover-spawner".into())
            .spawn(move || {
                for mut job in rx {
                    let _guard = job.runtime.enter();
                    let _ = job.reply.send(job.cmd.spawn());
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the spawner thread");
        }
        Mutex::new(tx)
    });
    let (reply, answer) = oneshot::channel();
    let job = SpawnJob {
        cmd,
        runtime: tokio::runtime::Handle::current(),
        reply,
    };
    let sent = keeper
        .lock()
        .map_err(|_| io::Error::other("spawner lock poisoned"))?
        .send(job);
    if sent.is_err() {
        return Err(io::Error::other("spawner thread is not running"));
    }
    answer
        .await
        .map_err(|_| io::Error::other("spawner thread dropped the request"))?
}

async fn forward_lines(
    stream: impl AsyncRead + Unpin,
    spec: ReplicaSpec,
    name: &'static str,
    tail: Tail,
) {
    // A replica that prints its own environment must not put the values the release gave
    // it (or that it inherited: an `env:` webhook or database) into the log, the console
    // or a crash reason.
    let mut secrets = spec.scrub.clone();
    // Every env value but the W3C trace context cutover adds (`crate::trace`): a
    // service logging its trace id is what tracing is for.
    secrets.extend(
        (spec.env.iter())
            .filter(|(k, _)| k.as_str() != crate::trace::TRACEPARENT)
            .map(|(_, v)| v.clone()),
    );
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = secrets.scrub(line.trim_end_matches(['\n', '\r']));
                let line = line.as_str();
                tracing::info!(
                    target: "service",
                    service = %spec.service,
                    revision = %spec.revision,
                    replica = spec.replica,
                    stream = name,
                    "{line}"
                );
                if let Ok(mut t) = tail.lock() {
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line.to_string());
                }
            }
        }
    }
}

async fn monitor(
    spec: ReplicaSpec,
    mut run: Started,
    ctl: Arc<Control>,
    tx: watch::Sender<ProcessStatus>,
    pids: Arc<PidFile>,
    tail: Tail,
) {
    let mut retries = 0;
    loop {
        let status = run.child.wait().await;
        ctl.pgid.store(0, Ordering::SeqCst);
        // Anything the replica forked goes with it.
        signal_group(run.pid as i32, libc::SIGKILL);
        pids.remove(run.pid as i32);
        for r in run.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
        }
        let stopping = ctl.stopping.load(Ordering::SeqCst);
        let last = tail.lock().ok().and_then(|t| t.back().cloned());
        let clash = tail.lock().is_ok_and(|t| {
            t.iter().any(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("address already in use") || l.contains("addrinuse")
            })
        });
        let mut reason = describe_exit(&status, stopping, last.as_deref());
        if !stopping && clash && run.at.elapsed() < PORT_RACE_WINDOW && retries < PORT_RACE_RETRIES
        {
            retries += 1;
            tracing::warn!(replica = %spec.id(), retries, "port taken before the replica bound it; retrying on another port");
            if let Ok(mut t) = tail.lock() {
                t.clear();
            }
            match spawn_once(&spec, &pids, &tail).await {
                Ok(next) => {
                    ctl.pgid.store(next.pid as i32, Ordering::SeqCst);
                    // stop() may have come in while we were spawning.
                    if ctl.stopping.load(Ordering::SeqCst) {
                        signal_group(next.pid as i32, libc::SIGTERM);
                    }
                    tx.send_modify(|s| {
                        s.generation += 1;
                        s.addr = next.addr;
                        s.pid = next.pid;
                    });
                    run = next;
                    continue;
                }
                Err(e) => reason = format!("{reason}; restart on another port failed: {e}"),
            }
        }
        if stopping {
            tracing::info!(replica = %spec.id(), "{reason}");
        } else {
            tracing::warn!(replica = %spec.id(), "replica ended: {reason}");
        }
        tx.send_modify(|s| s.exit = Some(reason));
        return;
    }
}

fn describe_exit(status: &io::Result<ExitStatus>, stopping: bool, last: Option<&str>) -> String {
    let how = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig} ({})", signal_name(sig)),
            _ => format!("ended ({s})"),
        },
        Err(e) => format!("could not be waited for: {e}"),
    };
    let mut reason = if stopping {
        format!("stopped by cutover, {how}")
    } else {
        how
    };
    if let Some(line) = last.filter(|_| !stopping) {
        let short: String = line.chars().take(200).collect();
        reason.push_str(&format!("; last output: {short}"));
    }
    reason
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

/// A loopback port nobody listens on right now. Ports handed out in the last few seconds
/// are skipped so two replicas started together never get the same one.
fn free_port() -> io::Result<u16> {
    static RECENT: Mutex<VecDeque<(u16, Instant)>> = Mutex::new(VecDeque::new());
    for _ in 0..32 {
        let port = TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
        let mut recent = RECENT
            .lock()
            .map_err(|_| io::Error::other("port list poisoned"))?;
        while recent
            .front()
            .is_some_and(|(_, at)| at.elapsed() > Duration::from_secs(10))
        {
            recent.pop_front();
        }
        if recent.iter().all(|(p, _)| *p != port) {
            recent.push_back((port, Instant::now()));
            return Ok(port);
        }
    }
    Err(io::Error::other(
        "the kernel kept handing out recently used ports",
    ))
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks since boot).
pub fn proc_start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Fields after the `(comm)` of `/proc/PID/stat`; index 0 is field 3 (state).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether any live (non-zombie) process belongs to process group `pgid`.
pub fn group_alive(pgid: i32) -> bool {
    let Ok(dir) = fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .any(|pid| {
            stat_fields(pid).is_some_and(|f| {
                f.first().is_some_and(|s| s != "Z")
                    && f.get(2).and_then(|g| g.parse().ok()) == Some(pgid)
            })
        })
}

/// `<state_dir>/local/pids`: one line per live process group, `PGID STARTTIME ID`.
struct PidFile {
    path: PathBuf,
    entries: Mutex<BTreeMap<i32, (u64, String)>>,
}

impl PidFile {
    /// Kill the groups listed by a previous run that still exist, then start a new list.
    fn reap_stale(&self) -> io::Result<usize> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut reaped = Vec::new();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let (Some(Ok(pgid)), Some(Ok(start))) = (
                parts.next().map(str::parse::<i32>),
                parts.next().map(str::parse::<u64>),
            ) else {
                continue;
            };
            if pgid <= 1 {
                continue;
            }
            let ours = match proc_start_time(pgid) {
                // Same leader as recorded.
                Some(now) => now == start,
                // Leader gone: a pid is never reused while it names a live group, so any
                // member of group `pgid` is one of ours.
                None => group_alive(pgid),
            };
            if ours {
                tracing::warn!(
                    pgid,
                    id = parts.next().unwrap_or("?"),
                    "reaping leftover process group"
                );
                signal_group(pgid, libc::SIGKILL);
                reaped.push(pgid);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while reaped.iter().any(|g| group_alive(*g)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.write(&BTreeMap::new())?;
        Ok(reaped.len())
    }

    fn add(&self, pgid: i32, start: u64, id: &str) {
        if let Ok(mut e) = self.entries.lock() {
            e.insert(pgid, (start, id.to_string()));
            if let Err(err) = self.write(&e) {
                tracing::warn!(path = %self.path.display(), error = %err, "cannot update pid file");
            }
        }
    }

    fn remove(&self, pgid: i32) {
        if let Ok(mut e) = self.entries.lock()
            && e.remove(&pgid).is_some()
            && let Err(err) = self.write(&e)
        {
            tracing::warn!(path = %self.path.display(), error = %err, "cannot update pid file");
        }
    }

    fn write(&self, entries: &BTreeMap<i32, (u64, String)>) -> io::Result<()> {
        let text: String = entries
            .iter()
            .map(|(pgid, (start, id))| format!("{pgid} {start} {id}\n"))
            .collect();
        let tmp = self.path.with_extension("tmp");
        fs::write(&tmp, text)?;
        fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_lines_are_scrubbed_of_the_replicas_environment_values() {
        let mut spec = spec(&["true"]);
        spec.env.insert("API_TOKEN".into(), "tok-5e3c1a77".into());
        // The trace context cutover adds is not a secret: a service may log it.
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        spec.env.insert(crate::trace::TRACEPARENT.into(), tp.into());
        let tail: Tail = Arc::new(Mutex::new(VecDeque::new()));
        let printed = format!("booting\nAPI_TOKEN=tok-5e3c1a77\ntrace {tp}\n");
        forward_lines(printed.as_bytes(), spec, "stdout", tail.clone()).await;
        let lines: Vec<String> = tail.lock().unwrap().iter().cloned().collect();
        assert_eq!(lines, ["booting", "API_TOKEN=***", &format!("trace {tp}")]);
    }

    #[tokio::test]
    async fn output_lines_are_scrubbed_of_the_releases_other_secrets() {
        let mut spec = spec(&["true"]);
        spec.scrub
            .add_url("https://hooks.example.com/services/T0/HOOK-5e3c1a77");
        let tail: Tail = Arc::new(Mutex::new(VecDeque::new()));
        let printed: &[u8] = b"SLACK_URL=https://hooks.example.com/services/T0/HOOK-5e3c1a77\n";
        forward_lines(printed, spec, "stdout", tail.clone()).await;
        let lines: Vec<String> = tail.lock().unwrap().iter().cloned().collect();
        assert_eq!(lines, ["SLACK_URL=***"]);
    }

    fn spec(cmd: &[&str]) -> ReplicaSpec {
        ReplicaSpec {
            service: "svc".into(),
            revision: "v1".into(),
            replica: 0,
            command: cmd.iter().map(|s| s.to_string()).collect(),
            args: vec![],
            env: BTreeMap::new(),
            scrub: Default::default(),
        }
    }

    fn alive(pid: u32) -> bool {
        // Zombies count as gone.
        stat_fields(pid as i32).is_some_and(|f| f.first().is_some_and(|s| s != "Z"))
    }

    #[test]
    fn placeholders_are_filled_in_command_and_args() {
        let mut s = spec(&[
            "srv",
            "--port",
            "{port}",
            "--name={service}-{revision}-{replica}",
        ]);
        s.args = vec!["--rev".into(), "{revision}".into()];
        s.replica = 2;
        assert_eq!(
            s.argv(4100),
            vec!["srv", "--port", "4100", "--name=svc-v1-2", "--rev", "v1"]
        );
        assert_eq!(unknown_placeholder("--port={port}"), None);
        assert_eq!(unknown_placeholder("{port} {prot}"), Some("{prot}".into()));
        assert_eq!(unknown_placeholder("json {\"a\":1"), None);
    }

    #[tokio::test]
    async fn exit_status_and_last_output_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(dir.path()).unwrap();
        let r = sup
            .start(spec(&["sh", "-c", "echo boom >&2; exit 3"]))
            .await
            .unwrap();
        let mut rx = r.subscribe();
        let s = rx.wait_for(|s| s.exit.is_some()).await.unwrap().clone();
        let reason = s.exit.unwrap();
        assert!(reason.contains("exited with status 3"), "{reason}");
        assert!(reason.contains("boom"), "{reason}");
        // The pid file forgets ended replicas.
        assert_eq!(fs::read_to_string(sup.pid_file()).unwrap(), "");
    }

    #[tokio::test]
    async fn env_and_port_reach_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(dir.path()).unwrap();
        let mut s = spec(&["sh", "-c", "echo \"$GREETING\" >&2; exit 1"]);
        s.env
            .insert("GREETING".into(), "hello {service} on {port}".into());
        let r = sup.start(s).await.unwrap();
        let port = r.status().addr.port();
        let reason = r
            .subscribe()
            .wait_for(|s| s.exit.is_some())
            .await
            .unwrap()
            .exit
            .clone();
        assert!(reason.unwrap().contains(&format!("hello svc on {port}")));
    }

    #[tokio::test]
    async fn stop_kills_the_whole_group_and_escalates_to_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(dir.path()).unwrap();
        // The leader ignores SIGTERM and has a child that does too.
        let r = sup
            .start(spec(&[
                "sh",
                "-c",
                "trap '' TERM; sleep 30 & echo $! >&2; wait",
            ]))
            .await
            .unwrap();
        let leader = r.status().pid;
        let pids = fs::read_to_string(sup.pid_file()).unwrap();
        assert!(pids.starts_with(&format!("{leader} ")), "{pids}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(group_alive(leader as i32));
        r.stop(Duration::from_millis(300)).await;
        let reason = r.status().exit.unwrap();
        assert!(
            reason.contains("stopped by cutover") && reason.contains("SIGKILL"),
            "{reason}"
        );
        assert!(!alive(leader));
        assert!(!group_alive(leader as i32));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(dir.path()).unwrap();
        let err = match sup.start(spec(&["/nonexistent/prog"])).await {
            Err(e) => e,
            Ok(_) => panic!("started a missing program"),
        };
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/prog") && msg.contains("svc-v1-0"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_port_clash_is_retried_on_another_port() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(dir.path()).unwrap();
        let marker = dir.path().join("clashed");
        // First start reports a clash and exits; the retry finds the marker and stays up.
        let script = format!(
            "if [ -e {m} ]; then sleep 30; else touch {m}; echo 'bind: Address already in use' >&2; exit 1; fi",
            m = marker.display()
        );
        let r = sup.start(spec(&["sh", "-c", &script])).await.unwrap();
        let first = r.status();
        let mut rx = r.subscribe();
        let next = rx.wait_for(|s| s.generation == 1).await.unwrap().clone();
        assert!(next.exit.is_none());
        assert_ne!(next.addr, first.addr);
        assert_ne!(next.pid, first.pid);
        r.stop(Duration::from_secs(2)).await;
        assert!(!alive(next.pid));
    }

    #[tokio::test]
    async fn stale_groups_in_the_pid_file_are_reaped_only_if_still_ours() {
        let dir = tempfile::tempdir().unwrap();
        // A process group nobody supervises, as a killed cutover would leave it.
        let mut orphan = std::process::Command::new("sleep");
        orphan.arg("30");
        std::os::unix::process::CommandExt::process_group(&mut orphan, 0);
        let mut orphan = orphan.spawn().unwrap();
        let pid = orphan.id() as i32;
        let start = proc_start_time(pid).unwrap();
        fs::create_dir_all(dir.path().join("local")).unwrap();
        // A second entry names our own pid with a wrong start time: it must be left alone.
        let me = std::process::id();
        fs::write(
            dir.path().join("local/pids"),
            format!("{pid} {start} svc-v1-0\n{me} 1 svc-v1-1\n"),
        )
        .unwrap();
        let sup = Supervisor::new(dir.path()).unwrap();
        let status = orphan.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(fs::read_to_string(sup.pid_file()).unwrap(), "");
    }
}
