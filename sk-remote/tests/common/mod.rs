//! What the remote suites share: a broker and simulated hosts with
//! workers on them (each a network namespace, see `sk_testkit::Host`),
//! the parts' functions, the log they write, and a small test runner
//! (these test binaries have `main` of their own, so that they can be
//! remote workers: `sk_remote::worker_main`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sk_core::SkFunction;
use sk_cycle::{Cycle, CycleBuilder, CyclePart, PartState, Run, RunReport};
use sk_remote::{Broker, Coordinator};
use sk_testkit::{Host, NatsServer};

/// How long a worker may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Nanoseconds since the epoch (comparable across processes).
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Appends `line` to the log at `path` in one write (a kill cannot leave
/// half a line).
pub fn append(path: &str, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("the test's log");
    file.write_all(line.as_bytes()).expect("the test's log");
}

/// A part's work: notes its start (`S id pid ppid t`), sleeps `ms`, notes
/// its end (`E …`), returns `id * 2`.
#[sk_core::function(crate = ::sk_core)]
pub fn work(id: u64, ms: u64, log: String) -> u64 {
    let me = format!(
        "{id} {} {} {}\n",
        std::process::id(),
        std::os::unix::process::parent_id(),
        now_ns()
    );
    append(&log, &format!("S {me}"));
    std::thread::sleep(Duration::from_millis(ms));
    append(
        &log,
        &format!(
            "E {id} {} {} {}\n",
            std::process::id(),
            std::os::unix::process::parent_id(),
            now_ns()
        ),
    );
    id * 2
}

/// As [`work`], taking the id as the part's input.
#[sk_core::function(crate = ::sk_core)]
pub fn work_on(input: u64, ms: u64, log: String) -> u64 {
    work(input, ms, log)
}

/// Kills the process it runs in.
#[sk_core::function(crate = ::sk_core)]
pub fn crash(log: String) -> u64 {
    append(&log, &format!("C {}\n", now_ns()));
    std::process::abort()
}

/// Fails while the file `counter` counts fewer than `fails` calls.
#[sk_core::function(crate = ::sk_core)]
pub fn flaky(counter: String, fails: u64) -> Result<u64, String> {
    append(&counter, "x");
    let calls = std::fs::read_to_string(&counter).unwrap_or_default().len() as u64;
    if calls <= fails {
        Err(format!("call {calls} fails"))
    } else {
        Ok(calls)
    }
}

/// Adds 1 to `key` in the KV bucket `bucket` at `url`, `times` times.
#[sk_core::function(crate = ::sk_core)]
pub fn count_up(url: String, bucket: String, key: String, times: u64) -> Result<u64, String> {
    // The whole chain: what JetStream said too.
    let kv = sk_remote::KvStorage::open(&Broker::new(url), &bucket)
        .map_err(|e| sk_core::error_chain(&e))?;
    let storage = sk_reg::GlobalStorage::with_backend(Arc::new(kv));
    let mut last = 0;
    for _ in 0..times {
        last = storage
            .update(&key, |n: Option<u64>| n.unwrap_or(0) + 1)
            .map_err(|e| sk_core::error_chain(&e))?;
    }
    Ok(last)
}

/// One line of a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub start: bool,
    pub id: u64,
    pub pid: u32,
    pub ppid: u32,
    pub at_ns: u128,
}

impl Note {
    /// Whether the note was made by worker `pid` (itself, with a thread
    /// backend, or its local worker process).
    pub fn by(&self, pid: u32) -> bool {
        self.pid == pid || self.ppid == pid
    }
}

/// The `S`/`E` notes of the log at `path`.
pub fn notes(path: &Path) -> Vec<Note> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() != 5 || !(f[0] == "S" || f[0] == "E") {
                return None;
            }
            Some(Note {
                start: f[0] == "S",
                id: f[1].parse().ok()?,
                pid: f[2].parse().ok()?,
                ppid: f[3].parse().ok()?,
                at_ns: f[4].parse().ok()?,
            })
        })
        .collect()
}

/// How many times each id started.
pub fn starts(notes: &[Note]) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    for n in notes.iter().filter(|n| n.start) {
        *out.entry(n.id).or_insert(0) += 1;
    }
    out
}

/// A remote worker process on a host.
pub struct WorkerProc {
    pub child: Child,
    pub pid: u32,
    pub host: usize,
    pub lines: Receiver<String>,
}

/// A broker, hosts, and workers on them.
pub struct Cluster {
    pub server: NatsServer,
    pub hosts: Vec<Host>,
    pub workers: Vec<Option<WorkerProc>>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// A broker listening on every address, and `hosts` hosts.
    pub fn start(hosts: usize) -> Cluster {
        if let Err(why) = Host::available() {
            panic!("the remote suites simulate hosts with network namespaces: {why}");
        }
        let server = NatsServer::start_on("0.0.0.0").unwrap_or_else(|e| panic!("{e}"));
        let hosts = (1..=hosts)
            .map(|i| Host::create(u8::try_from(i).unwrap()).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        Cluster {
            server,
            hosts,
            workers: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A broker, `hosts` hosts, and a worker on each serving with `args`
    /// on the local backend `backend` (see [`Cluster::worker`]).
    pub fn serving(hosts: usize, args: &[&str], backend: &str) -> Cluster {
        let mut cluster = Cluster::start(hosts);
        for host in 0..hosts {
            cluster.worker(host, args, backend);
        }
        cluster
    }

    /// A path in the cluster's temporary directory.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The broker's URL from this machine.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// A coordinator on this machine.
    pub fn coordinator(&self) -> Coordinator {
        Coordinator::connect(&Broker::new(self.url())).unwrap()
    }

    /// Starts a worker on host `host` (from 0) serving with `args` (after
    /// the URL), with the local backend `backend` ("thread" or
    /// "process"); waits until it is ready; its index.
    pub fn worker(&mut self, host: usize, args: &[&str], backend: &str) -> usize {
        let h = &self.hosts[host];
        let url = self.server.url_via(h.gateway());
        // The worker dies with this test process (setpriv: util-linux),
        // even one that a hang guard ends.
        let mut command = h.command("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--"])
            .arg(std::env::current_exe().unwrap())
            .arg("--sk-remote-worker")
            .arg(&url)
            .args(args)
            .env("SK_SPAWN_BACKEND", backend)
            .stderr(Stdio::inherit());
        let (child, lines) = sk_testkit::spawn_lines(&mut command).unwrap();
        let pid = child.id();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains("ready") => break,
                Ok(_) => {}
                Err(e) => panic!("worker on host {host} not ready: {e}"),
            }
        }
        self.workers.push(Some(WorkerProc {
            child,
            pid,
            host,
            lines,
        }));
        self.workers.len() - 1
    }

    /// The process id of worker `index`.
    pub fn pid(&self, index: usize) -> u32 {
        self.workers[index].as_ref().expect("a live worker").pid
    }

    /// SIGKILLs worker `index` and reaps it.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut w) = self.workers[index].take() {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }

    /// SIGTERMs worker `index` and waits for its exit status.
    pub fn terminate(&mut self, index: usize) -> std::process::ExitStatus {
        let mut w = self.workers[index].take().expect("a live worker");
        let sent = Command::new("kill")
            .args(["-TERM", &w.pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        w.child.wait().unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.workers.len() {
            self.kill(index);
        }
    }
}

/// Re-runs this binary with `env` set, capturing its output.
pub fn child(env: &[(&str, String)]) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    for (k, v) in env {
        command.env(k, v);
    }
    command.stdin(Stdio::null());
    command
}

/// The tests of a binary: runs those whose name contains the first
/// argument that is not a flag (all without one), each under a hang
/// guard; exits 1 if any failed.
pub fn run_tests(tests: &[(&str, fn())], limit: Duration) {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, test) in tests {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        println!("test {name} ...");
        let started = Instant::now();
        let test = *test;
        let outcome = std::panic::catch_unwind(|| sk_testkit::hang_guard(limit, test));
        match outcome {
            Ok(()) => println!("test {name} ... ok ({:.1?})", started.elapsed()),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    println!("{ran} run, {} failed: {failed:?}", failed.len());
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

// ----- cycles of remote parts, and a peer on the broker -----------------

/// `n` remote parts `p0…` on `group`, part `i` running [`common::work`]
/// with id `i`.
pub fn parts(n: u64, ms: u64, log: &str, group: &str) -> Vec<CyclePart> {
    (0..n)
        .map(|i| {
            let f = SkFunction::builder("work")
                .arg("id", i)
                .arg("ms", ms)
                .arg("log", log.to_owned())
                .build()
                .unwrap();
            CyclePart::function(format!("p{i}"), f).remote(group)
        })
        .collect()
}

/// A root part and `n` remote parts (see [`parts`]) after it, with
/// `extra` parts beside them.
pub fn fan_with(
    name: &str,
    n: u64,
    ms: u64,
    log: &str,
    group: &str,
    extra: Vec<CyclePart>,
) -> Cycle {
    let mut b = CycleBuilder::new(name);
    b.add(CyclePart::new("go", |_| ()), 1).unwrap();
    let mut all = parts(n, ms, log, group);
    all.extend(extra);
    b.split(all, 2).unwrap();
    b.build().unwrap()
}

pub fn fan(name: &str, n: u64, ms: u64, log: &str, group: &str) -> Cycle {
    fan_with(name, n, ms, log, group, Vec::new())
}

pub fn run(cycle: &Cycle, coordinator: &Coordinator) -> RunReport {
    cycle
        .run(Run::once().threads(2).remote(Arc::new(coordinator.clone())))
        .unwrap()
}

/// Every part `p{i}` of `report` succeeded with `2 i`.
pub fn assert_all_answered(report: &RunReport, n: u64) {
    let last = report.last().unwrap();
    for i in 0..n {
        let name = format!("p{i}");
        assert_eq!(
            last.state_of(&name),
            Some(PartState::Succeeded),
            "{name}: {:?}",
            last.error_of(&name)
        );
        assert_eq!(*last.output::<u64>(&name).unwrap(), 2 * i, "{name}");
    }
}

/// Runs `body` on a thread of its own (with a runtime of its own) with a
/// broker client at `url` and its JetStream context: a misbehaving peer
/// beside the workers.
pub fn on_broker<F, Fut>(url: String, body: F) -> std::thread::JoinHandle<()>
where
    F: FnOnce(async_nats::Client, async_nats::jetstream::Context) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client = async_nats::connect(url).await.unwrap();
            let js = async_nats::jetstream::new(client.clone());
            body(client, js).await;
        });
    })
}
