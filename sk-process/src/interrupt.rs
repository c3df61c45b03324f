//! Ctrl-C (SIGINT) and SIGTERM, scoped to whoever asked.
//!
//! While at least one [`InterruptGuard`] lives, SIGINT and SIGTERM stop
//! the watched [`StopToken`]s (a graceful stop) instead of ending the
//! process; a second signal while that first stop is under way ends the
//! process at once, by the signal's default action. When the last guard
//! goes, the dispositions that were there before come back — the default
//! (Ctrl-C ends the program again), or the application's own handler.
//! An application handler installed before is called on every signal
//! while guards live too, so both hear it; one installed after the last
//! guard is simply the handler (nothing of ours is left in the way).
//!
//! The signal handler only counts the signal and writes a byte to a pipe
//! (both async-signal-safe); one thread, started on first use, reads the
//! pipe and stops the tokens.

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use parking_lot::Mutex;
use rustix::process::Signal;
use sk_core::StopToken;

use crate::sys::{Chain, Disposition, SavedErrno, SigInfo};

/// The signals watched.
const SIGNALS: [Signal; 2] = [Signal::INT, Signal::TERM];

/// Keeps a token stopped on SIGINT and SIGTERM until it is dropped (see
/// [`stop_on_interrupt`]).
#[derive(Debug)]
#[must_use = "the token is watched only while the guard lives"]
pub struct InterruptGuard {
    id: u64,
}

struct State {
    next: u64,
    tokens: Vec<(u64, StopToken)>,
    /// The dispositions replaced while guards live.
    previous: Option<[Disposition; 2]>,
}

static STATE: Mutex<State> = Mutex::new(State {
    next: 0,
    tokens: Vec::new(),
    previous: None,
});

/// Signals received since the handler was installed.
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

/// The pipe's write end, once the reader thread exists (it lives as long
/// as the process). Reading a set `OnceLock` is one atomic load, so the
/// signal handler may.
static WAKE: OnceLock<OwnedFd> = OnceLock::new();

/// The replaced handlers, for the signal handler to chain to, per watched
/// signal.
static CHAIN: [Chain; 2] = [Chain::new(), Chain::new()];

/// Stops `token` on SIGINT or SIGTERM until the guard is dropped.
///
/// # Errors
///
/// When the signal handler or its reader thread cannot be set up.
///
/// # Examples
///
/// ```no_run
/// use sk_core::StopToken;
///
/// let token = StopToken::new();
/// let guard = sk_process::stop_on_interrupt(token.clone())?;
/// while !token.is_stopped() {
///     // ... work in small steps ...
/// #   break;
/// }
/// drop(guard); // Ctrl-C ends the program again
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn stop_on_interrupt(token: StopToken) -> io::Result<InterruptGuard> {
    start_reader()?;
    let mut state = STATE.lock();
    if state.previous.is_none() {
        state.previous = Some(install()?);
    }
    // A new watcher starts from a clean slate: a signal that stopped the
    // others does not make this one's first Ctrl-C the second.
    RECEIVED.store(0, Ordering::Release);
    state.next += 1;
    let id = state.next;
    state.tokens.push((id, token));
    Ok(InterruptGuard { id })
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        let mut state = STATE.lock();
        state.tokens.retain(|(id, _)| *id != self.id);
        if state.tokens.is_empty() {
            if let Some(previous) = state.previous.take() {
                restore(&previous);
            }
        }
    }
}

/// Starts the thread that stops the tokens, once.
fn start_reader() -> io::Result<()> {
    static READER: OnceLock<Result<(), String>> = OnceLock::new();
    READER
        .get_or_init(|| {
            let start = || -> io::Result<()> {
                let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
                thread::Builder::new()
                    .name("sk-interrupt".to_owned())
                    .spawn(move || read_signals(&read))?;
                // Set only here, inside `READER`'s one initialization.
                let _ = WAKE.set(write);
                Ok(())
            };
            start().map_err(|e| e.to_string())
        })
        .clone()
        .map_err(io::Error::other)
}

fn read_signals(read: &OwnedFd) {
    let mut byte = [0u8; 1];
    loop {
        match rustix::io::read(read, &mut byte) {
            Ok(0) => return,
            Ok(_) => {
                for (_, token) in &STATE.lock().tokens {
                    token.stop();
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

/// Installs the handler for both signals; the dispositions it replaced.
fn install() -> io::Result<[Disposition; 2]> {
    RECEIVED.store(0, Ordering::Release);
    let previous = [
        Disposition::current(SIGNALS[0])?,
        Disposition::current(SIGNALS[1])?,
    ];
    let ours = Disposition::handler(on_signal);
    for (i, (&signal, old)) in SIGNALS.iter().zip(&previous).enumerate() {
        CHAIN[i].keep(old);
        if let Err(e) = ours.set(signal) {
            restore(&previous[..i]);
            return Err(e);
        }
    }
    Ok(previous)
}

/// Puts back the dispositions in `previous` where ours is still the one
/// installed (a handler someone set over ours stays).
fn restore(previous: &[Disposition]) {
    for (&signal, old) in SIGNALS.iter().zip(previous) {
        if Disposition::current(signal).is_ok_and(|now| now.is(on_signal)) {
            let _ = old.set(signal);
        }
    }
}

/// The signal handler: async-signal-safe work only.
extern "C" fn on_signal(signal: c_int, info: *mut SigInfo, context: *mut c_void) {
    let _errno = SavedErrno::save();
    if RECEIVED.fetch_add(1, Ordering::AcqRel) > 0 {
        // A second signal while the first stop is under way: the default
        // action, now.
        crate::sys::die_by(signal);
        return;
    }
    if let Some(wake) = WAKE.get() {
        // write(2) is async-signal-safe; a handler can do nothing
        // about a failure.
        let _ = rustix::io::write(wake, &[1]);
    }
    let Some(i) = SIGNALS.iter().position(|s| s.as_raw() == signal) else {
        return;
    };
    CHAIN[i].call(signal, info, context);
}
