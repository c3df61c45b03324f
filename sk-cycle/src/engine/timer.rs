//! The watchdog: one thread per run that fires part timeouts.
//!
//! A timed part runs off the pool; the watchdog and the part race to claim
//! its completion, so a part that ignores its stop token is still reported
//! timed out on time, and its late result is dropped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender};

/// What the watchdog does when a deadline passes.
pub(crate) type Fire = Box<dyn FnOnce() + Send>;

struct Entry {
    deadline: Instant,
    seq: u64,
    fire: Fire,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

pub(crate) struct Watchdog {
    tx: Option<Sender<(Instant, Fire)>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub(crate) fn start(cycle: &str) -> std::io::Result<Watchdog> {
        let (tx, rx) = channel::unbounded();
        let thread = thread::Builder::new()
            .name(format!("sk-watchdog:{cycle}"))
            .spawn(move || watch(rx))?;
        Ok(Watchdog {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `fire` at `deadline` (unless the watchdog is shut down first,
    /// in which case it runs at once).
    pub(crate) fn schedule(&self, deadline: Instant, fire: Fire) {
        if let Some(tx) = &self.tx {
            if let Err(err) = tx.send((deadline, fire)) {
                // The watchdog thread is gone: fire now rather than never.
                (err.0.1)();
            }
        }
    }

    /// Stops the watchdog, firing what is still pending.
    pub(crate) fn shutdown(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            // The thread only ends by the channel closing; a panic in a
            // fire closure was already contained there.
            let _ = thread.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn watch(rx: Receiver<(Instant, Fire)>) {
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(e)| e.deadline <= now) {
            if let Some(Reverse(entry)) = heap.pop() {
                (entry.fire)();
            }
        }
        let received = match heap.peek() {
            Some(Reverse(next)) => rx.recv_deadline(next.deadline),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok((deadline, fire)) => {
                seq += 1;
                heap.push(Reverse(Entry {
                    deadline,
                    seq,
                    fire,
                }));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // Shutting down: whatever is pending fires now, so no
                // timed part is left without a completion.
                while let Some(Reverse(entry)) = heap.pop() {
                    (entry.fire)();
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn fires_in_deadline_order_and_flushes_on_shutdown() {
        sk_testkit::guarded(|| {
            let mut dog = Watchdog::start("test").unwrap();
            let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
            let now = Instant::now();
            for (i, ms) in [(1u32, 20u64), (2, 5), (3, 10)] {
                let order = Arc::clone(&order);
                dog.schedule(
                    now + Duration::from_millis(ms),
                    Box::new(move || order.lock().push(i)),
                );
            }
            let fired = Arc::new(AtomicU32::new(0));
            let late = Arc::clone(&fired);
            dog.schedule(
                now + Duration::from_secs(3600),
                Box::new(move || {
                    late.fetch_add(1, Ordering::SeqCst);
                }),
            );
            while order.lock().len() < 3 {
                thread::yield_now();
            }
            assert_eq!(*order.lock(), [2, 3, 1]);
            dog.shutdown();
            assert_eq!(
                fired.load(Ordering::SeqCst),
                1,
                "pending entries fire on shutdown"
            );
        });
    }
}
