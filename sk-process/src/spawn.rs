//! Starting a worker process: spawn (never fork-and-continue) the current
//! binary with the channel as its standard input.
//!
//! Nothing runs between fork and exec (no `pre_exec`), so the standard
//! library starts workers with `posix_spawn`, as cheap as any spawn. The
//! worker then, first thing, asks for a parent-death signal, ignores SIGINT
//! (the parent stops its workers in order), and exits at once if its parent
//! is already gone. Linux sends the parent-death signal when the *thread*
//! that started the child ends, so every worker is started from one
//! long-lived spawner thread (or from the main thread, which lives as long
//! as the process). A worker whose channel reaches end-of-file
//! exits too. Together: workers never outlive their parent, even one killed
//! by SIGKILL.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;

use crossbeam::channel::{self, Sender};
use parking_lot::Mutex;

/// The channel's file descriptor in a worker process, as started: its
/// standard input (which the worker side reads as [`stdin`]).
///
/// [`stdin`]: rustix::stdio::stdin
pub(crate) const WORKER_FD: i32 = rustix::stdio::raw_stdin();
pub(crate) const ENV_FD: &str = "SK_WORKER_FD";
pub(crate) const ENV_NAME: &str = "SK_WORKER_NAME";
pub(crate) const ENV_PARENT: &str = "SK_PARENT_PID";
/// The parent's project root ([`SkRoot`](sk_reg::SkRoot)), when it has one.
pub(crate) const ENV_ROOT: &str = "SK_ROOT";

/// How the test harness must be started to reach the worker entry test
/// made by [`worker_test!`](crate::worker_test).
#[doc(hidden)]
#[derive(Debug)]
pub struct WorkerEntry {
    pub(crate) test_name: &'static str,
}

impl WorkerEntry {
    #[doc(hidden)]
    pub const fn test(test_name: &'static str) -> Self {
        WorkerEntry { test_name }
    }
}

inventory::collect!(WorkerEntry);

/// The arguments that start this binary as a worker.
pub(crate) fn worker_args() -> Vec<String> {
    match inventory::iter::<WorkerEntry>.into_iter().next() {
        Some(entry) => vec![
            entry.test_name.to_owned(),
            "--exact".to_owned(),
            "--include-ignored".to_owned(),
            "--nocapture".to_owned(),
            "--test-threads=1".to_owned(),
            "--quiet".to_owned(),
        ],
        None => Vec::new(),
    }
}

type Request = (Command, Sender<io::Result<Child>>);

/// The spawner thread's queue.
fn spawner() -> io::Result<Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<Option<Sender<Request>>>> = OnceLock::new();
    let cell = SPAWNER.get_or_init(|| Mutex::new(None));
    let mut slot = cell.lock();
    if let Some(tx) = slot.as_ref() {
        return Ok(tx.clone());
    }
    let (tx, rx) = channel::unbounded::<Request>();
    thread::Builder::new()
        .name("sk-spawner".to_owned())
        .spawn(move || {
            for (mut command, reply) in rx {
                let _ = reply.send(command.spawn());
            }
        })?;
    *slot = Some(tx.clone());
    Ok(tx)
}

/// A started worker process and the parent's end of its channel.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) channel: UnixStream,
}

/// Starts this binary as the worker `name`; with `mark`, the worker
/// expects a [`StartedMark`](crate::mark::StartedMark) as its channel's
/// first byte.
pub(crate) fn spawn_worker(name: &str, mark: bool) -> io::Result<Spawned> {
    let (parent_end, child_end) = UnixStream::pair()?;
    let child_fd: OwnedFd = child_end.into();
    let parent_pid = std::process::id();
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(worker_args())
        .env(ENV_FD, WORKER_FD.to_string())
        .env(ENV_NAME, name)
        .env(ENV_PARENT, parent_pid.to_string())
        // The channel: the worker's standard input is its socket.
        .stdin(Stdio::from(child_fd))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if mark {
        command.env(crate::mark::ENV_MARK, "1");
    }
    // A root this process has fixed is the worker's too.
    if let Some(root) = sk_reg::SkRoot::current_if_set() {
        command.env(ENV_ROOT, root.path());
    }
    // The main thread lives as long as the process: it may start workers
    // itself, saving the spawner thread's round trip.
    let main_thread = rustix::thread::gettid() == rustix::process::getpid();
    if main_thread {
        return Ok(Spawned {
            child: command.spawn()?,
            channel: parent_end,
        });
    }
    let (tx, rx) = channel::bounded(1);
    spawner()?
        .send((command, tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    let child = rx
        .recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))??;
    // The parent's copy of the child's end was moved into the command and
    // closed with it, so the parent sees end-of-file when the child dies.
    Ok(Spawned {
        child,
        channel: parent_end,
    })
}
