//! [`NatsServer`]: a `nats-server` with JetStream of a test's own — a free
//! port, a temporary store — that the test can kill and start again, so
//! that broker trouble is tested against the real broker, never a mock.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
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
        let binary = std::env::var_os(NATS_SERVER_ENV)
            .map_or_else(|| PathBuf::from("nats-server"), PathBuf::from);
        NatsServer::start_binary(binary)
    }

    /// [`NatsServer::start`] with the `nats-server` binary at `binary`.
    ///
    /// # Errors
    ///
    /// As [`NatsServer::start`].
    pub fn start_binary(binary: impl Into<PathBuf>) -> Result<NatsServer, String> {
        let binary = binary.into();
        let port = free_port().map_err(|e| format!("no free port for nats-server: {e}"))?;
        let store = tempfile::tempdir()
            .map_err(|e| format!("no temporary directory for nats-server's store: {e}"))?;
        let mut server = NatsServer {
            binary,
            port,
            store,
            child: None,
        };
        server.launch()?;
        Ok(server)
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
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

    /// Starts the server again on the same port with the same store, as
    /// a broker restarted after a crash; waits until it accepts a client.
    ///
    /// # Errors
    ///
    /// As [`NatsServer::start`].
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.launch()
    }

    fn launch(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd"])
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
            if answers(self.port) {
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

/// A port of 127.0.0.1 nobody listens on now.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether a NATS server on `port` greets a client with its `INFO` line.
fn answers(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}
