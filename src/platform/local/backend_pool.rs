//! One replica as the proxy's data path sees it: its address, its in-flight gauge (for
//! per-replica draining) and its pool of idle keep-alive connections, each a plain
//! `TcpStream` with its read buffer. The proxy's connection task takes a connection,
//! writes the request and reads the response itself (`proxy_h1.rs`): no task and no
//! channel per backend connection. A connection goes back only after a clean exchange.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpStream;

use super::stats::InFlight;

/// Connect timeout to a backend; a refused connection fails at once anyway.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Idle keep-alive connections kept per backend; more are closed when they free up.
const MAX_IDLE_PER_BACKEND: usize = 512;
/// A connection's read buffer starts at this size (a head may grow it to `MAX_HEAD`).
pub const BUF_SIZE: usize = 16 * 1024;

/// A byte buffer with a read position: `data[pos..end]` is what was read and not yet used.
pub struct IoBuf {
    pub data: Vec<u8>,
    pub pos: usize,
    pub end: usize,
}

impl IoBuf {
    pub fn new() -> Self {
        IoBuf {
            data: vec![0; BUF_SIZE],
            pos: 0,
            end: 0,
        }
    }

    /// The bytes read and not used yet.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.pos..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// Mark `n` bytes as used.
    pub fn consume(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.end);
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
    }

    /// Room to read into: moves unused bytes to the front when the tail is full, and grows
    /// the buffer up to `limit` when it is full of unused bytes. Empty when `limit` is
    /// reached.
    pub fn spare(&mut self, limit: usize) -> &mut [u8] {
        if self.end == self.data.len() && self.pos > 0 {
            self.data.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.data.len() && self.data.len() < limit {
            let grown = (self.data.len() * 2).min(limit);
            self.data.resize(grown, 0);
        }
        &mut self.data[self.end..]
    }

    pub fn advance_end(&mut self, n: usize) {
        self.end = self.end.saturating_add(n).min(self.data.len());
    }
}

impl Default for IoBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// A keep-alive connection to a backend and the bytes read from it.
pub struct BackendConn {
    pub stream: TcpStream,
    pub buf: IoBuf,
    /// Taken from the pool (it served an earlier request) rather than just opened.
    pub reused: bool,
}

/// One replica address.
pub struct Backend {
    pub addr: SocketAddr,
    /// `Host` for requests that came without one (the replica's address).
    pub host: String,
    pub in_flight: InFlight,
    idle: Mutex<Vec<BackendConn>>,
}

impl Backend {
    pub fn new(addr: SocketAddr) -> Self {
        Backend {
            addr,
            host: addr.to_string(),
            in_flight: InFlight::default(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle connection that is still open: one the backend closed (or that has bytes
    /// nobody asked for) reads as ready, and is dropped.
    pub fn take_idle(&self) -> Option<BackendConn> {
        loop {
            let mut conn = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.pop()?
            };
            let mut probe = [0u8; 1];
            match conn.stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    conn.reused = true;
                    return Some(conn);
                }
                // Closed (0), reset, or unsolicited bytes: not usable.
                _ => continue,
            }
        }
    }

    /// Give back a connection after a clean exchange (nothing left unread in it).
    pub fn put_idle(&self, conn: BackendConn) {
        if !conn.buf.is_empty() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_PER_BACKEND {
            idle.push(conn);
        }
    }

    /// A new connection (no delay, so small heads leave at once).
    pub async fn connect(&self) -> Result<BackendConn, ConnectError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .map_err(|_| ConnectError::Timeout(CONNECT_TIMEOUT))?
            .map_err(ConnectError::Io)?;
        let _ = stream.set_nodelay(true);
        Ok(BackendConn {
            stream,
            buf: IoBuf::new(),
            reused: false,
        })
    }
}

/// Why a backend could not be connected to.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect: {0}")]
    Io(std::io::Error),
    #[error("connect: no connection within {0:?}")]
    Timeout(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_buf_compacts_then_grows_up_to_its_limit() {
        let mut b = IoBuf::new();
        let n = b.spare(BUF_SIZE).len();
        assert_eq!(n, BUF_SIZE);
        b.advance_end(BUF_SIZE);
        b.consume(10);
        assert_eq!(b.spare(BUF_SIZE).len(), 10);
        assert_eq!(b.filled().len(), BUF_SIZE - 10);
        b.advance_end(10);
        assert!(b.spare(BUF_SIZE).is_empty());
        assert_eq!(b.spare(2 * BUF_SIZE).len(), BUF_SIZE);
        b.consume(usize::MAX);
        assert!(b.is_empty());
        assert_eq!(b.spare(BUF_SIZE).len(), 2 * BUF_SIZE);
    }
}
