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

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::thread;

use parking_lot::Mutex;
use sk_core::StopToken;

/// The signals watched.
const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

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
    previous: Option<[libc::sigaction; 2]>,
}

// SAFETY-relevant note: `libc::sigaction` holds plain data (a handler
// address, flags, a mask); it is only read and written under the lock.
static STATE: Mutex<State> = Mutex::new(State {
    next: 0,
    tokens: Vec::new(),
    previous: None,
});

/// Signals received since the handler was installed.
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

/// The pipe's write end (-1 before the reader thread exists).
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// The replaced handlers, for the signal handler to chain to: handler
/// address and flags, per watched signal.
static CHAIN: [(AtomicUsize, AtomicUsize); 2] = [
    (AtomicUsize::new(0), AtomicUsize::new(0)),
    (AtomicUsize::new(0), AtomicUsize::new(0)),
];

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
                let write: OwnedFd = write;
                thread::Builder::new()
                    .name("sk-interrupt".to_owned())
                    .spawn(move || read_signals(&read))?;
                // The write end lives as long as the process.
                WAKE.store(write.as_raw_fd(), Ordering::Release);
                std::mem::forget(write);
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
fn install() -> io::Result<[libc::sigaction; 2]> {
    RECEIVED.store(0, Ordering::Release);
    let mut previous = [crate::sys::empty_sigaction(), crate::sys::empty_sigaction()];
    for (i, &signal) in SIGNALS.iter().enumerate() {
        let old = crate::sys::current_sigaction(signal)?;
        CHAIN[i].0.store(old.sa_sigaction, Ordering::Release);
        CHAIN[i].1.store(old.sa_flags as usize, Ordering::Release);
        previous[i] = old;
        if let Err(e) = crate::sys::set_sigaction_handler(signal, on_signal) {
            restore(&previous[..i]);
            return Err(e);
        }
    }
    Ok(previous)
}

/// Puts back the dispositions in `previous` where ours is still the one
/// installed (a handler someone set over ours stays).
fn restore(previous: &[libc::sigaction]) {
    for (&signal, old) in SIGNALS.iter().zip(previous) {
        if crate::sys::current_sigaction(signal)
            .is_ok_and(|now| now.sa_sigaction == on_signal as *const () as libc::sighandler_t)
        {
            let _ = crate::sys::set_sigaction(signal, old);
        }
    }
}

/// The signal handler: async-signal-safe work only.
extern "C" fn on_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let _errno = crate::sys::SavedErrno::save();
    if RECEIVED.fetch_add(1, Ordering::AcqRel) > 0 {
        // A second signal while the first stop is under way: the default
        // action, now.
        crate::sys::die_by(signal);
        return;
    }
    let fd = WAKE.load(Ordering::Acquire);
    if fd >= 0 {
        crate::sys::write_byte(fd);
    }
    let Some(i) = SIGNALS.iter().position(|&s| s == signal) else {
        return;
    };
    let handler = CHAIN[i].0.load(Ordering::Acquire);
    let flags = CHAIN[i].1.load(Ordering::Acquire);
    crate::sys::chain(handler, flags, signal, info, context);
}
