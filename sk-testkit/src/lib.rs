//! Test helpers shared by the Suitkaise crates.
//!
//! Every test that starts a thread or a process runs its body under
//! [`hang_guard`]: if the body has not finished by the deadline the test
//! fails with a message naming the deadline, instead of hanging the run.
//!
//! ```
//! use std::time::Duration;
//! let answer = sk_testkit::hang_guard(Duration::from_secs(5), || 6 * 7);
//! assert_eq!(answer, 42);
//! ```

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_debug_implementations)]

use std::panic;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

mod kills;
mod nats;
mod netns;

pub use kills::{KillStorm, is_dead, kill, wait_dead, worker_children};
pub use nats::{NATS_SERVER_ENV, NatsServer};
pub use netns::Host;

/// Starts `command` with its stdout piped; each line it writes arrives on
/// the returned channel (which closes when the child's stdout does: when
/// it and everything it started that holds its stdout are gone).
///
/// # Errors
///
/// The error of [`Command::spawn`](std::process::Command::spawn).
pub fn spawn_lines(
    command: &mut std::process::Command,
) -> std::io::Result<(std::process::Child, mpsc::Receiver<String>)> {
    use std::io::BufRead;
    let mut child = command.stdout(std::process::Stdio::piped()).spawn()?;
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    Ok((child, rx))
}

/// Asserts the workspace's rule for errors: an error's `Display` is its
/// own message, and never repeats the text of the error its `source()`
/// returns (a reporter walking the chain would print it twice).
///
/// # Panics
///
/// When a link of `err`'s chain shows its source's text, or the chain is
/// suspiciously long (a cycle).
pub fn assert_chain_says_each_thing_once(err: &(dyn std::error::Error + 'static)) {
    let mut link = err;
    let mut depth = 0;
    while let Some(source) = link.source() {
        let (outer, inner) = (link.to_string(), source.to_string());
        assert!(
            inner.is_empty() || !outer.contains(&inner),
            "{outer:?} repeats the text of its source {inner:?}"
        );
        link = source;
        depth += 1;
        assert!(depth < 64, "an error chain 64 deep: {err}");
    }
}

/// The deadline most tests use: generous for a loaded 2-core CI machine,
/// short enough that a hang is reported long before the CI time limit.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `body` on its own thread and returns its result, failing the test if
/// it takes longer than `deadline`.
///
/// A panic inside `body` is resumed on the calling thread, so assertion
/// messages reach the test harness unchanged.
///
/// # Panics
///
/// Panics when the deadline passes before `body` returns (the body's thread
/// is left behind; the test process exits when the harness is done), and
/// re-raises any panic of `body`.
pub fn hang_guard<T, F>(deadline: Duration, body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let name = thread::current().name().unwrap_or("test").to_owned();
    let spawned = thread::Builder::new()
        .name(format!("{name} (guarded)"))
        .spawn(move || {
            let outcome = panic::catch_unwind(panic::AssertUnwindSafe(body));
            // The receiver is gone only when the deadline already fired.
            let _ = tx.send(outcome);
        });
    if let Err(err) = spawned {
        panic!("hang guard could not start the test thread: {err}");
    }
    match rx.recv_timeout(deadline) {
        Ok(Ok(value)) => value,
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("test `{name}` exceeded its hang-guard deadline of {deadline:?}")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("test `{name}` lost its guarded thread without a result")
        }
    }
}

/// [`hang_guard`] with [`DEFAULT_DEADLINE`].
///
/// # Panics
///
/// As [`hang_guard`].
pub fn guarded<T, F>(body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    hang_guard(DEFAULT_DEADLINE, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_body_result() {
        assert_eq!(hang_guard(Duration::from_secs(5), || 2 + 2), 4);
    }

    #[test]
    #[should_panic(expected = "exceeded its hang-guard deadline")]
    fn fails_a_body_that_overruns() {
        hang_guard(Duration::from_millis(20), || {
            thread::park_timeout(Duration::from_secs(5));
        });
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn resumes_the_body_panic() {
        hang_guard(Duration::from_secs(5), || panic!("boom"));
    }
}
