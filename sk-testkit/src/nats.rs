//! [`NatsServer`]: a `nats-server` with JetStream of a test's own — a free
//! port, a temporary store — that the test can kill and start again, so
//! that broker trouble is tested against the real broker, never a mock.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming the `nats-server` binary to use
/// (default: `nats-server` on `PATH`).
pub const NATS_SERVER_ENV: &str = "SK_NATS_SERVER";

/// How long a started server has to accept a client.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// A `nats-server -js` of the test's own; killed when dropped (its store
/// directory goes with it).
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    /// The address it listens on (`-a`).
    addr: IpAddr,
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port of 127.0.0.1, its
    /// store in a new temporary directory, and waits until it accepts a
    /// client.
    ///
    /// # Errors
    ///
    /// A message naming what failed: the binary missing (and how to
    /// install it), the server not starting or not answering in 15 s.
    pub fn start() -> Result<NatsServer, String> {
        NatsServer::start_at(default_binary(), IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// [`NatsServer::start`] listening on `addr` instead of 127.0.0.1:
    /// `"0.0.0.0"` for clients in simulated hosts (reached at their
    /// [`Host::gateway`](crate::Host::gateway), see
    /// [`NatsServer::url_via`]) as well as on 127.0.0.1.
    ///
    /// # Errors
    ///
    /// As [`NatsServer::start`], and `addr` not being an IP address.
    pub fn start_on(addr: &str) -> Result<NatsServer, String> {
        let addr = addr
            .parse()
            .map_err(|e| format!("nats-server bind address {addr:?}: {e}"))?;
        NatsServer::start_at(default_binary(), addr)
    }

    /// [`NatsServer::start`] with the `nats-server` binary at `binary`.
    ///
    /// # Errors
    ///
    /// As [`NatsServer::start`].
    pub fn start_binary(binary: impl Into<PathBuf>) -> Result<NatsServer, String> {
        NatsServer::start_at(binary.into(), IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    fn start_at(binary: PathBuf, addr: IpAddr) -> Result<NatsServer, String> {
        let port = free_port(addr).map_err(|e| format!("no free port for nats-server: {e}"))?;
        let store = tempfile::tempdir()
            .map_err(|e| format!("no temporary directory for nats-server's store: {e}"))?;
        let mut server = NatsServer {
            binary,
            addr,
            port,
            store,
            child: None,
        };
        server.launch()?;
        Ok(server)
    }

    /// The client URL, `nats://127.0.0.1:<port>` (the server answers there
    /// when it listens on 127.0.0.1 or 0.0.0.0).
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client URL at `ip`, `nats://<ip>:<port>`: for a client in a
    /// simulated host, `ip` is the host's
    /// [`gateway`](crate::Host::gateway) (with the server started
    /// [`on`](NatsServer::start_on) `"0.0.0.0"`).
    pub fn url_via(&self, ip: Ipv4Addr) -> String {
        format!("nats://{ip}:{}", self.port)
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its JetStream store directory (kept across restarts).
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL (no clean shutdown) and waits for it
    /// to be gone. Nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same address and port with the same
    /// store, as a broker restarted after a crash; waits until it accepts
    /// a client.
    ///
    /// # Errors
    ///
    /// As [`NatsServer::start`].
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.launch()
    }

    fn launch(&mut self) -> Result<(), String> {
        let (addr, port) = (self.addr.to_string(), self.port.to_string());
        let child = Command::new(&self.binary)
            .args(["-js", "-a", &addr, "-p", &port, "-sd"])
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "`{}` not found: these tests start their own NATS server with JetStream \
                         (>= 2.9). Install it (Debian: `apt-get install nats-server`; or a \
                         release from https://github.com/nats-io/nats-server/releases) or set \
                         {NATS_SERVER_ENV} to its path",
                        self.binary.display()
                    )
                } else {
                    format!("cannot start `{}`: {e}", self.binary.display())
                }
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if answers(self.addr, self.port) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "nats-server on port {} exited at start ({status})",
                        self.port
                    ));
                }
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "nats-server on port {} did not accept a client within {READY_WITHIN:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `nats-server` binary [`NATS_SERVER_ENV`] names, or the one on `PATH`.
fn default_binary() -> PathBuf {
    std::env::var_os(NATS_SERVER_ENV).map_or_else(|| PathBuf::from("nats-server"), PathBuf::from)
}

/// A port of `addr` nobody listens on now.
fn free_port(addr: IpAddr) -> std::io::Result<u16> {
    Ok(TcpListener::bind((addr, 0))?.local_addr()?.port())
}

/// Whether a NATS server listening on `addr` and `port` greets a client
/// with its `INFO` line (asked at the loopback address when `addr` is
/// `0.0.0.0` or `::`).
fn answers(addr: IpAddr, port: u16) -> bool {
    let addr = match addr {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        a => a,
    };
    let Ok(stream) =
        TcpStream::connect_timeout(&SocketAddr::from((addr, port)), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}
