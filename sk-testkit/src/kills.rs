//! Killing worker processes from outside, as fault trials do: find this
//! process's workers by name in `/proc`, SIGKILL them, wait for them to be
//! gone, or kill them at random moments from a thread ([`KillStorm`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The live (not yet exited) children of this process that were started
/// as workers whose name (`SK_WORKER_NAME`) starts with `prefix`.
pub fn worker_children(prefix: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|(state, ppid)| ppid == me && state != 'Z'))
        .filter(|&pid| worker_name(pid).is_some_and(|name| name.starts_with(prefix)))
        .collect()
}

/// The state letter and parent of `pid`, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn worker_name(pid: u32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0).find_map(|var| {
        let var = std::str::from_utf8(var).ok()?;
        var.strip_prefix("SK_WORKER_NAME=").map(str::to_owned)
    })
}

/// Sends SIGKILL to `pid`.
pub fn kill(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Whether `pid` has exited (a zombie, or gone).
pub fn is_dead(pid: u32) -> bool {
    stat(pid).is_none_or(|(state, _)| state == 'Z' || state == 'X')
}

/// Waits until `pid` has exited, at most `limit`; whether it has.
pub fn wait_dead(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !is_dead(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

/// A thread that SIGKILLs a random live worker of this process (whose
/// name starts with a prefix) at random moments, until stopped.
#[derive(Debug)]
pub struct KillStorm {
    stop: Arc<AtomicBool>,
    /// Every process it killed.
    killed: Arc<Mutex<BTreeSet<u32>>>,
    thread: Option<JoinHandle<()>>,
}

impl KillStorm {
    /// Kills a worker named `prefix…` every `min_gap..=max_gap` (random).
    ///
    /// # Panics
    ///
    /// When the thread cannot start.
    pub fn start(prefix: &str, min_gap: Duration, max_gap: Duration) -> KillStorm {
        let stop = Arc::new(AtomicBool::new(false));
        let killed = Arc::new(Mutex::new(BTreeSet::new()));
        let prefix = prefix.to_owned();
        let thread = {
            let (stop, killed) = (Arc::clone(&stop), Arc::clone(&killed));
            thread::Builder::new()
                .name("kill-storm".to_owned())
                .spawn(move || {
                    let mut rng = fastrand::Rng::new();
                    let (lo, hi) = (min_gap.as_micros() as u64, max_gap.as_micros() as u64);
                    while !stop.load(Ordering::Acquire) {
                        thread::sleep(Duration::from_micros(rng.u64(lo..=hi.max(lo))));
                        let pids = worker_children(&prefix);
                        if let Some(&pid) = pids.get(rng.usize(..pids.len().max(1))) {
                            kill(pid);
                            killed
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .insert(pid);
                        }
                    }
                })
        };
        match thread {
            Ok(thread) => KillStorm {
                stop,
                killed,
                thread: Some(thread),
            },
            Err(e) => panic!("cannot start the kill storm: {e}"),
        }
    }

    /// How many processes it has killed so far.
    pub fn kills(&self) -> usize {
        self.killed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Stops it; how many processes it killed.
    pub fn stop(self) -> usize {
        self.stop_killed().len()
    }

    /// Stops it; the processes it killed.
    pub fn stop_killed(mut self) -> BTreeSet<u32> {
        self.halt();
        std::mem::take(&mut *self.killed.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for KillStorm {
    fn drop(&mut self) {
        self.halt();
    }
}
