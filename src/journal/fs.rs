//! File-system plumbing: directory fsync, atomic small-file replacement, and the per-run
//! writer lock (`flock`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::JournalError;

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io {
        action,
        path,
        source,
    }
}

/// Make a directory's entries (files created, renamed or removed in it) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    let f = File::open(dir).map_err(io_err("open directory", dir))?;
    f.sync_all().map_err(io_err("fsync directory", dir))
}

/// Create `dir` and any missing parents with mode 0700, then fsync the parent of every
/// directory created so the new entries survive a power cut.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<(), JournalError> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    for d in missing.iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => continue,
            Err(e) => return Err(io_err("create directory", d)(e)),
        }
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => sync_dir(p)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// Replace `path` with `bytes` atomically and durably: write a temporary sibling, fsync
/// it, rename it over `path`, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
    sync_dir(dir)
}

/// An exclusive `flock` on a run's `lock` file, held for as long as this value lives
/// (the kernel drops it when the process dies, so a SIGKILLed engine never leaves a
/// stale lock). The file holds the holder's pid for the error message of the next one.
#[derive(Debug)]
pub(crate) struct RunLock {
    _file: File,
}

pub(crate) enum LockOutcome {
    Acquired(RunLock),
    /// Someone else holds it; their pid if the file says so.
    Held(Option<u32>),
}

fn try_flock(file: &File, op: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a valid open descriptor owned by `file`; no memory involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(err),
        }
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

impl RunLock {
    /// Take the writer lock of the run whose lock file is `path`. Retries briefly, because
    /// `history` probes the lock with a momentary shared lock.
    pub(crate) fn acquire(path: &Path) -> Result<LockOutcome, JournalError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io_err("open lock file", path))?;
        let mut attempts = 0;
        loop {
            if try_flock(&file, libc::LOCK_EX).map_err(io_err("lock", path))? {
                break;
            }
            attempts += 1;
            if attempts >= 10 {
                return Ok(LockOutcome::Held(read_pid(&mut file)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        file.set_len(0).map_err(io_err("write lock file", path))?;
        file.seek(SeekFrom::Start(0))
            .map_err(io_err("write lock file", path))?;
        writeln!(file, "{}", std::process::id()).map_err(io_err("write lock file", path))?;
        Ok(LockOutcome::Acquired(RunLock { _file: file }))
    }

    /// Whether some process holds the writer lock of `path` now, and its pid.
    /// `None` if nobody does (or there is no lock file).
    pub(crate) fn holder(path: &Path) -> Result<Option<Option<u32>>, JournalError> {
        let mut file = match OpenOptions::new().read(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open lock file", path)(e)),
        };
        if try_flock(&file, libc::LOCK_SH).map_err(io_err("probe lock", path))? {
            // Free: our shared lock goes away with `file`.
            Ok(None)
        } else {
            Ok(Some(read_pid(&mut file)))
        }
    }
}
