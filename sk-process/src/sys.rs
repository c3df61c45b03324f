//! The crate's system calls that need `unsafe`, and the few no safe crate
//! wraps: the only module with `unsafe` code. Everything else calls
//! [`rustix`] where it is used.
//!
//! What is here, and why:
//!
//! - Signal dispositions, for `interrupt.rs` and the worker: `sigaction`
//!   with a handler of ours, calling the handler it replaced, re-raising a
//!   signal from inside a handler (`signal`, `raise`), ignoring a signal,
//!   and keeping the interrupted thread's `errno`. rustix has none of these
//!   outside its unstable `runtime` API, so they call `libc`; `libc`
//!   appears nowhere else in the crate's system calls.
//! - Mapping the started-call mark (`mark.rs`) into memory: rustix's
//!   `mmap` is `unsafe` (the mapping's lifetime and aliasing are ours to
//!   prove).
//! - Waiting for a child to exit without reaping it (safe, through rustix;
//!   here because it is the fallback of the hub's pidfd).

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rustix::process::Signal;

/// What the kernel passes a three-argument (`SA_SIGINFO`) handler.
pub(crate) type SigInfo = libc::siginfo_t;

/// A three-argument (`SA_SIGINFO`) signal handler.
pub(crate) type Handler = extern "C" fn(c_int, *mut SigInfo, *mut c_void);

/// A signal's disposition (its handler, flags and mask), as `sigaction`
/// reads and sets it.
#[derive(Clone, Copy)]
pub(crate) struct Disposition(libc::sigaction);

impl Disposition {
    /// The current disposition of `signal`.
    pub(crate) fn current(signal: Signal) -> io::Result<Self> {
        // SAFETY: `sigaction` is plain data; all-zero is a valid value (the
        // default handler, no flags, an empty mask), overwritten below.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only reads the current one into `old`.
        let r = unsafe { libc::sigaction(signal.as_raw(), std::ptr::null(), &raw mut old) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(Disposition(old))
        }
    }

    /// Makes this the disposition of `signal`.
    pub(crate) fn set(&self, signal: Signal) -> io::Result<()> {
        let new = &raw const self.0;
        // SAFETY: `self` was read with `sigaction` (or built by `handler`),
        // so it is a disposition the kernel accepts.
        let r = unsafe { libc::sigaction(signal.as_raw(), new, std::ptr::null_mut()) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// `handler` as the disposition, restarting interrupted calls.
    pub(crate) fn handler(handler: Handler) -> Self {
        // SAFETY: as in `current`: all-zero is a valid `sigaction`.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = handler as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: a valid signal set to empty.
        unsafe { libc::sigemptyset(&raw mut action.sa_mask) };
        Disposition(action)
    }

    /// Whether `handler` is its handler.
    pub(crate) fn is(&self, handler: Handler) -> bool {
        self.0.sa_sigaction == handler as *const () as libc::sighandler_t
    }
}

/// A replaced disposition, kept where a signal handler can call it (plain
/// atomics: a handler may not lock).
pub(crate) struct Chain {
    handler: AtomicUsize,
    flags: AtomicUsize,
}

impl Chain {
    /// Nothing to call (the default disposition).
    pub(crate) const fn new() -> Self {
        Chain {
            handler: AtomicUsize::new(libc::SIG_DFL),
            flags: AtomicUsize::new(0),
        }
    }

    /// Keeps `previous` to call.
    pub(crate) fn keep(&self, previous: &Disposition) {
        self.handler
            .store(previous.0.sa_sigaction, Ordering::Release);
        self.flags
            .store(previous.0.sa_flags as usize, Ordering::Release);
    }

    /// Calls the handler kept, if it was a function rather than the
    /// default or ignore (async-signal-safe).
    pub(crate) fn call(&self, signal: c_int, info: *mut SigInfo, context: *mut c_void) {
        let handler = self.handler.load(Ordering::Acquire);
        let flags = self.flags.load(Ordering::Acquire);
        if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
            return;
        }
        if flags & libc::SA_SIGINFO as usize != 0 {
            // SAFETY: with SA_SIGINFO the kernel would have called this
            // address as a three-argument handler, as it is called here.
            let f: Handler = unsafe { std::mem::transmute::<libc::sighandler_t, Handler>(handler) };
            f(signal, info, context);
        } else {
            // SAFETY: without SA_SIGINFO it is a one-argument handler.
            let f: extern "C" fn(c_int) =
                unsafe { std::mem::transmute::<libc::sighandler_t, extern "C" fn(c_int)>(handler) };
            f(signal);
        }
    }
}

/// Ignores `signal` from now on (and in programs this process starts).
pub(crate) fn ignore(signal: Signal) {
    // SAFETY: setting a standard disposition (no handler of ours) has no
    // preconditions.
    unsafe {
        libc::signal(signal.as_raw(), libc::SIG_IGN);
    }
}

/// Ends the process by `signal`'s default action (from inside a handler:
/// only async-signal-safe calls).
pub(crate) fn die_by(signal: c_int) {
    // SAFETY: signal and raise are async-signal-safe; the default action
    // of SIGINT/SIGTERM ends the process.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// The interrupted thread's `errno`, put back when dropped (a signal
/// handler must leave it as it found it).
pub(crate) struct SavedErrno(c_int);

impl SavedErrno {
    pub(crate) fn save() -> Self {
        // SAFETY: __errno_location gives this thread's errno slot; reading
        // it is async-signal-safe.
        SavedErrno(unsafe { *libc::__errno_location() })
    }
}

impl Drop for SavedErrno {
    fn drop(&mut self) {
        // SAFETY: as in `save`.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

/// Maps the first 8 bytes of `file` shared, for the life of the process
/// (never unmapped); `None` when the file is shorter or cannot be mapped.
pub(crate) fn map_shared_u64(file: &OwnedFd) -> Option<&'static AtomicU64> {
    use rustix::mm::{MapFlags, ProtFlags, mmap};
    // Touching a mapped page past the end of the file is SIGBUS, not an
    // error: map only a file that has the 8 bytes.
    if rustix::fs::fstat(file).ok()?.st_size < 8 {
        return None;
    }
    // SAFETY: a new shared mapping of a file of at least 8 bytes, at an
    // address the kernel picks, so it aliases nothing of ours; it is
    // page-aligned, so aligned for an `AtomicU64` (same layout as `u64`),
    // and never unmapped, so the reference is valid for the rest of the
    // process. Another process writing the same page is what atomics are
    // for.
    unsafe {
        let ptr = mmap(
            std::ptr::null_mut(),
            8,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            file,
            0,
        )
        .ok()?;
        ptr.cast::<AtomicU64>().as_ref()
    }
}

/// Blocks until process `pid` (a child of this process) has exited,
/// leaving it unreaped: whoever owns its `Child` collects the status.
pub(crate) fn wait_exited(pid: u32) -> io::Result<()> {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::other(format!("not a process id: {pid}")))?;
    loop {
        match waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Err(rustix::io::Errno::INTR) => {}
            other => return other.map(drop).map_err(io::Error::from),
        }
    }
}
