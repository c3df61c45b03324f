//! Starting a worker process: spawn (never fork-and-continue) the current
//! binary with the channel on fd 3 and a parent-death signal.
//!
//! Linux sends the parent-death signal when the *thread* that forked the
//! child ends, so every worker is started from one long-lived spawner
//! thread. A worker whose parent is already gone by the time it sets the
//! signal exits at once; a worker whose channel reaches end-of-file exits
//! too. Together: workers never outlive their parent, even one killed by
//! SIGKILL.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;

use crossbeam::channel::{self, Sender};
use parking_lot::Mutex;

use crate::worker::{ENV_FD, ENV_NAME, ENV_PARENT, WORKER_FD, worker_args};

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

/// Starts this binary as the worker `name`.
pub(crate) fn spawn_worker(name: &str) -> io::Result<Spawned> {
    let (parent_end, child_end) = UnixStream::pair()?;
    let child_fd: OwnedFd = child_end.into();
    let raw = child_fd.as_raw_fd();
    let parent_pid = std::process::id();
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(worker_args())
        .env(ENV_FD, WORKER_FD.to_string())
        .env(ENV_NAME, name)
        .env(ENV_PARENT, parent_pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe calls (dup2, fcntl, prctl, signal, getppid,
    // _exit); it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(move || {
            if raw == WORKER_FD {
                // Already in place: just let it survive exec.
                let flags = libc::fcntl(raw, libc::F_GETFD);
                if flags < 0 || libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(raw, WORKER_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(io::Error::last_os_error());
            }
            // Ctrl-C in a terminal reaches the whole process group; the
            // parent stops its workers in order, so they ignore it.
            if libc::signal(libc::SIGINT, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
            // The parent died before the signal was set: leave now.
            if libc::getppid() as u32 != parent_pid {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (tx, rx) = channel::bounded(1);
    spawner()?
        .send((command, tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    let child = rx
        .recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))??;
    // The child has its copy; the parent's copy of its end must close so
    // that the parent sees end-of-file when the child dies.
    drop(child_fd);
    Ok(Spawned {
        child,
        channel: parent_end,
    })
}
