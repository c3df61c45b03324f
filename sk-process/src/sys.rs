//! Signal dispositions: the system calls `interrupt.rs` needs that no safe
//! crate wraps (sigaction with a handler of ours, calling a replaced
//! handler, re-raising a signal from inside a handler).

use std::io;

/// A `sigaction` with nothing set.
pub(crate) fn empty_sigaction() -> libc::sigaction {
    // SAFETY: `sigaction` is plain data; all-zero is a valid value (the
    // default handler, no flags, an empty mask).
    unsafe { std::mem::zeroed() }
}

/// The current disposition of `signal`.
pub(crate) fn current_sigaction(signal: libc::c_int) -> io::Result<libc::sigaction> {
    let mut old = empty_sigaction();
    // SAFETY: a null new action only reads the current one into `old`.
    let r = unsafe { libc::sigaction(signal, std::ptr::null(), &raw mut old) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(old)
    }
}

/// Sets the disposition of `signal` to `action`.
pub(crate) fn set_sigaction(signal: libc::c_int, action: &libc::sigaction) -> io::Result<()> {
    // SAFETY: `action` is a disposition read earlier with `sigaction`.
    let r = unsafe { libc::sigaction(signal, action, std::ptr::null_mut()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The type of a three-argument (`SA_SIGINFO`) handler.
pub(crate) type InfoHandler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Makes `handler` the handler of `signal` (restarting interrupted calls).
pub(crate) fn set_sigaction_handler(signal: libc::c_int, handler: InfoHandler) -> io::Result<()> {
    let mut action = empty_sigaction();
    action.sa_sigaction = handler as *const () as libc::sighandler_t;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: an empty set to fill.
    unsafe { libc::sigemptyset(&raw mut action.sa_mask) };
    set_sigaction(signal, &action)
}

/// The interrupted thread's `errno`, put back when dropped (a signal
/// handler must leave it as it found it).
pub(crate) struct SavedErrno(libc::c_int);

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

/// Ends the process by `signal`'s default action (from inside a handler:
/// only async-signal-safe calls).
pub(crate) fn die_by(signal: libc::c_int) {
    // SAFETY: signal and raise are async-signal-safe; the default action
    // of SIGINT/SIGTERM ends the process.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// Writes one byte to `fd`, ignoring failure (from inside a handler).
pub(crate) fn write_byte(fd: libc::c_int) {
    let byte = 1u8;
    // SAFETY: write is async-signal-safe; one byte from a valid buffer.
    unsafe {
        libc::write(fd, (&raw const byte).cast(), 1);
    }
}

/// Calls the handler that was replaced (`handler` with `flags`), if it was
/// a function rather than the default or ignore.
pub(crate) fn chain(
    handler: libc::sighandler_t,
    flags: usize,
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return;
    }
    if flags & libc::SA_SIGINFO as usize != 0 {
        // SAFETY: with SA_SIGINFO the kernel would have called this
        // address as a three-argument handler, as it is called here.
        let f: InfoHandler =
            unsafe { std::mem::transmute::<libc::sighandler_t, InfoHandler>(handler) };
        f(signal, info, context);
    } else {
        // SAFETY: without SA_SIGINFO it is a one-argument handler.
        let f: extern "C" fn(libc::c_int) = unsafe {
            std::mem::transmute::<libc::sighandler_t, extern "C" fn(libc::c_int)>(handler)
        };
        f(signal);
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
        match waitid(WaitId::Pid(pid), WaitIdOptions::EXITED | WaitIdOptions::NOWAIT) {
            Err(rustix::io::Errno::INTR) => {}
            other => return other.map(drop).map_err(io::Error::from),
        }
    }
}
