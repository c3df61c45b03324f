//! The reaper: ends the processes of dropped workers without holding up
//! whoever dropped them.
//!
//! A dropped worker is asked to stop; its process gets `grace` to exit by
//! itself and is then killed. One thread (started on first use) keeps
//! them and sleeps until the next deadline or the next arrival — it
//! checks a process only then, never on a timer.

use std::process::Child;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, RecvTimeoutError, Sender};

/// Reaps `child` once it has exited, killing it if it has not within
/// `grace`.
pub(crate) fn reap(mut child: Child, grace: Duration) {
    static REAPER: OnceLock<Option<Sender<(Child, Instant)>>> = OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = channel::unbounded::<(Child, Instant)>();
        std::thread::Builder::new()
            .name("sk-reaper".to_owned())
            .stack_size(128 << 10)
            .spawn(move || {
                let mut waiting: Vec<(Child, Instant)> = Vec::new();
                loop {
                    let next = waiting.iter().map(|(_, deadline)| *deadline).min();
                    let got = match next {
                        Some(deadline) => rx.recv_deadline(deadline),
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    match got {
                        Ok(item) => waiting.push(item),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    let now = Instant::now();
                    waiting.retain_mut(|(child, deadline)| !settle(child, *deadline, now));
                }
            })
            .ok()
            .map(|_| tx)
    });
    let deadline = Instant::now() + grace;
    match reaper {
        // Even without grace: the wait for a killed process is the
        // reaper's, never the caller's (it may be the I/O thread).
        Some(tx) => {
            if let Err(e) = tx.send((child, deadline)) {
                let (mut child, _) = e.into_inner();
                settle(&mut child, deadline, deadline);
            }
        }
        // No reaper thread: kill and reap here.
        None => {
            settle(&mut child, deadline, deadline);
        }
    }
}

/// Reaps `child` if it has exited, kills and reaps it if `deadline` has
/// passed at `now`; whether it is done with.
fn settle(child: &mut Child, deadline: Instant, now: Instant) -> bool {
    match child.try_wait() {
        Ok(Some(_)) | Err(_) => true,
        Ok(None) if now >= deadline => {
            let _ = child.kill();
            let _ = child.wait();
            true
        }
        Ok(None) => false,
    }
}
