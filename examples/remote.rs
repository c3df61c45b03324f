//! Remote parts: a cycle whose heavy parts run on worker processes that
//! may be on other machines, through NATS JetStream.
//!
//! `cargo run --example remote` starts a local `nats-server -js` on a free
//! port (a temporary store) and two workers — this binary started again
//! with `--sk-remote-worker` — runs the cycle, and stops them all.
//!
//! `cargo run --example remote -- nats://10.0.0.5:4222` uses that server
//! and starts no worker: run workers on any machines with
//! `cargo run --example remote -- --sk-remote-worker nats://10.0.0.5:4222 --group tiles`.

use std::error::Error;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use suitkaise::prelude::*;
use suitkaise::remote::{Broker, Coordinator, GroupConfig};

/// A "heavy" part: renders tile `tile` (here: a checksum worked out
/// slowly) and says where it ran.
#[suitkaise::function]
fn render_tile(tile: u64) -> (u64, String) {
    std::thread::sleep(Duration::from_millis(150));
    let checksum = (0..200_000u64).fold(tile, |h, i| h.rotate_left(5) ^ i.wrapping_mul(0x9e37));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let at = format!("{}:{}", host.trim(), std::os::unix::process::parent_id());
    (checksum, at)
}

fn main() -> Result<(), Box<dyn Error>> {
    // Local worker processes, then remote workers, are this binary
    // started again: these two calls turn such launches into workers.
    suitkaise::init();
    suitkaise::remote::worker_main();

    let given = std::env::args().nth(1);
    let mut started: Vec<Child> = Vec::new();
    let _store = tempdir_for_server();
    let url = match given {
        Some(url) => url,
        None => {
            let (server, url) = start_server(&_store)?;
            started.push(server);
            for i in 0..2 {
                started.push(start_worker(&url, &format!("worker-{i}"))?);
            }
            url
        }
    };
    let outcome = run_cycle(&url);
    for mut child in started.into_iter().rev() {
        // Workers drain on SIGTERM; the server just stops.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
    outcome
}

fn run_cycle(url: &str) -> Result<(), Box<dyn Error>> {
    let coordinator = Coordinator::connect(&Broker::new(url))?;
    // At most 4 tiles at once across every worker of the group.
    coordinator.group("tiles", GroupConfig::new().max_in_flight(4))?;

    let mut b = CycleBuilder::new("render");
    b.add(CyclePart::new("plan", |_| 8u64), 1)?;
    let tiles: Vec<CyclePart> = (0..8u64)
        .map(|t| {
            let f = SkFunction::builder("render_tile").arg("tile", t).build()?;
            Ok(CyclePart::function(format!("tile{t}"), f)
                .remote("tiles")
                .timeout(Duration::from_secs(30)))
        })
        .collect::<Result<_, suitkaise::FunctionError>>()?;
    b.split(tiles, 2)?;
    let cycle = b.build()?;

    let started = Instant::now();
    let report = cycle.run(Run::once().remote(Arc::new(coordinator)))?;
    let last = report.last().ok_or("the run did no iteration")?;
    for t in 0..8 {
        let name = format!("tile{t}");
        match last.output::<(u64, String)>(&name) {
            Ok((checksum, at)) => println!("{name}: {checksum:016x} on {at}"),
            Err(e) => println!("{name}: {e} ({:?})", last.error_of(&name)),
        }
    }
    println!(
        "8 tiles of 150 ms on the remote group in {:.2?} (at most 4 at once)",
        started.elapsed()
    );
    Ok(())
}

/// A temporary directory for the local server's store (removed on drop).
fn tempdir_for_server() -> TempDir {
    TempDir(std::env::temp_dir().join(format!("sk-remote-example-{}", std::process::id())))
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `nats-server -js` on a free port of 127.0.0.1.
fn start_server(store: &TempDir) -> Result<(Child, String), Box<dyn Error>> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let binary = std::env::var("SK_NATS_SERVER").unwrap_or_else(|_| "nats-server".to_owned());
    let server = Command::new(&binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {binary} ({e}); install NATS (apt-get install nats-server) \
                 or give a server's URL: cargo run --example remote -- nats://host:4222"
            )
        })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("the local nats-server did not start listening".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("started nats-server on port {port}");
    Ok((server, format!("nats://127.0.0.1:{port}")))
}

/// Starts this binary as a remote worker of group `tiles`, and waits
/// until it is ready.
fn start_worker(url: &str, name: &str) -> Result<Child, Box<dyn Error>> {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--sk-remote-worker", url, "--group", "tiles"])
        .args(["--concurrency", "2", "--name", name])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    if !line.contains("ready") {
        return Err(format!("worker {name} did not start: {line}").into());
    }
    println!("{}", line.trim());
    Ok(child)
}
