//! How a reader that must wait for input tries the socket before it
//! sleeps in the kernel: for how long ([`SPIN_BEFORE_SLEEP`], or
//! [`SPIN_ENV`]), and while its peer answers within that ([`Spin`]).

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::LazyLock;
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;

use super::frame::poll_fd;

/// How long a reader that must wait for input first keeps trying the
/// socket, giving up its CPU between tries, before it sleeps in the
/// kernel. A peer that answers within it is read at once wherever it
/// runs: a reader asleep on another CPU is woken by an interrupt to
/// that CPU, which a virtual machine takes tens of microseconds to
/// deliver (a round trip across two CPUs cost 45-60 µs here, against
/// 6 µs with this). A reader tries only while its peer answers within
/// this (see [`Spin`]): a slow call or an idle peer costs it once, in
/// CPU time shared with whatever else wants its CPU. [`SPIN_ENV`] sets
/// another.
pub(crate) const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// The environment variable that sets how long readers try before they
/// sleep, in microseconds: [`SPIN_BEFORE_SLEEP`] where unset or empty,
/// or not a whole number (a warning on stderr says so), at most
/// [`MAX_SPIN`]; `0` sleeps after one try (where CPU time matters more
/// than a call's latency). Read once per process; worker processes
/// inherit it.
pub(crate) const SPIN_ENV: &str = "SK_WORKER_SPIN_US";

/// The longest [`SPIN_ENV`] may ask for.
const MAX_SPIN: Duration = Duration::from_millis(10);

/// Whether a reader tries the socket before it sleeps the next time it
/// must wait: while what it waits for comes within [`spin_budget`] of
/// the start of its wait. A wait that takes longer (a slow call, an idle
/// peer, a poll that runs out) stops it, and the next quick one, timed
/// from the start of its sleep, starts it again: a reader that polls
/// with a short deadline while nothing comes does not spin each time.
#[derive(Debug)]
pub(crate) struct Spin {
    pub(super) on: bool,
}

impl Spin {
    /// On: a reader starts out trying.
    pub(crate) fn new() -> Self {
        Spin { on: true }
    }

    /// How long the wait that starts now tries before it sleeps (at most
    /// `left`).
    pub(crate) fn budget(&self, left: Duration) -> Duration {
        if self.on {
            left.min(spin_budget())
        } else {
            Duration::ZERO
        }
    }

    /// The wait that started at `started` ended: its input came (`came`)
    /// or not.
    pub(crate) fn ended(&mut self, started: Instant, came: bool) {
        self.on = came && started.elapsed() < spin_budget();
    }
}

/// How long a reader tries before it sleeps (see [`SPIN_ENV`]).
pub(crate) fn spin_budget() -> Duration {
    static BUDGET: LazyLock<Duration> = LazyLock::new(|| {
        let value = std::env::var_os(SPIN_ENV);
        let (budget, warning) = spin_from(value.as_deref());
        if let Some(warning) = warning {
            eprintln!("{warning}");
        }
        budget
    });
    *BUDGET
}

/// The spin [`SPIN_ENV`] set to `value` asks for, and the warning to
/// give for a value it cannot use.
fn spin_from(value: Option<&std::ffi::OsStr>) -> (Duration, Option<String>) {
    let Some(value) = value else {
        return (SPIN_BEFORE_SLEEP, None);
    };
    let text = value.to_str().map(str::trim);
    match text {
        Some("") => (SPIN_BEFORE_SLEEP, None),
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
            // Too many digits for a u64 is more than the most anyway.
            let micros = digits.parse::<u64>().unwrap_or(u64::MAX);
            (Duration::from_micros(micros).min(MAX_SPIN), None)
        }
        _ => (
            SPIN_BEFORE_SLEEP,
            Some(format!(
                "{SPIN_ENV}={value:?} is not a whole number of microseconds; using {SPIN_BEFORE_SLEEP:?}"
            )),
        ),
    }
}

/// Waits at most `budget` for `fd` to have input (or end) without
/// sleeping: tries it, yielding the CPU between tries (to the peer, if
/// they share one). Whether it has.
///
/// # Errors
///
/// The poll's error.
pub(crate) fn spin_readable(fd: BorrowedFd<'_>, budget: Duration) -> io::Result<bool> {
    let started = Instant::now();
    loop {
        if poll_fd(fd, PollFlags::IN, Some(Duration::ZERO))? {
            return Ok(true);
        }
        if started.elapsed() >= budget {
            return Ok(false);
        }
        thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn spin_readable_says_whether_input_came_within_its_budget() {
        sk_testkit::guarded(|| {
            let (ours, mut theirs) = UnixStream::pair().unwrap();
            let budget = Duration::from_millis(2);
            assert!(!spin_readable(ours.as_fd(), budget).unwrap());
            std::io::Write::write_all(&mut theirs, b"x").unwrap();
            assert!(spin_readable(ours.as_fd(), budget).unwrap());
            // An ended channel is readable too (the read sees the end).
            let (ours, theirs) = UnixStream::pair().unwrap();
            drop(theirs);
            assert!(spin_readable(ours.as_fd(), budget).unwrap());
        });
    }

    #[test]
    fn the_spin_variable_sets_the_spin_within_its_bounds() {
        use std::ffi::OsStr;
        let spin = |v: &str| spin_from(Some(OsStr::new(v)));
        assert_eq!(spin_from(None), (SPIN_BEFORE_SLEEP, None));
        assert_eq!(spin(""), (SPIN_BEFORE_SLEEP, None), "empty is unset");
        assert_eq!(spin("0"), (Duration::ZERO, None));
        assert_eq!(spin(" 200 "), (Duration::from_micros(200), None));
        assert_eq!(spin("99999999"), (MAX_SPIN, None));
        assert_eq!(spin("99999999999999999999999"), (MAX_SPIN, None));
        for bad in ["fast", "-5", "1.5", "+5"] {
            let (budget, warning) = spin(bad);
            assert_eq!(budget, SPIN_BEFORE_SLEEP, "{bad:?}");
            let warning = warning.expect("a warning");
            assert!(
                warning.contains(SPIN_ENV) && warning.contains(bad),
                "{warning}"
            );
        }
        use std::os::unix::ffi::OsStrExt;
        let (budget, warning) = spin_from(Some(OsStr::from_bytes(b"\xff")));
        assert_eq!(budget, SPIN_BEFORE_SLEEP);
        assert!(warning.is_some(), "not text: a warning");
    }
}
