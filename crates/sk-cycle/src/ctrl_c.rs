//! Ctrl-C (and SIGTERM): stops every run that asked for it, gracefully.
//!
//! The process has one handler (installed on first use); it stops the stop
//! tokens of the runs that are watching at that moment.

use parking_lot::Mutex;
use sk_core::StopToken;

use crate::error::RunError;

struct Watchers {
    installed: bool,
    next: u64,
    tokens: Vec<(u64, StopToken)>,
}

static WATCHERS: Mutex<Watchers> = Mutex::new(Watchers {
    installed: false,
    next: 0,
    tokens: Vec::new(),
});

/// Stops `token` on Ctrl-C until the guard is dropped.
pub(crate) fn watch(token: StopToken) -> Result<CtrlCGuard, RunError> {
    let mut watchers = WATCHERS.lock();
    if !watchers.installed {
        ctrlc::set_handler(|| {
            for (_, token) in &WATCHERS.lock().tokens {
                token.stop();
            }
        })
        .map_err(RunError::CtrlC)?;
        watchers.installed = true;
    }
    watchers.next += 1;
    let id = watchers.next;
    watchers.tokens.push((id, token));
    Ok(CtrlCGuard { id })
}

/// Stops watching Ctrl-C for one run when dropped.
pub(crate) struct CtrlCGuard {
    id: u64,
}

impl Drop for CtrlCGuard {
    fn drop(&mut self) {
        WATCHERS.lock().tokens.retain(|(id, _)| *id != self.id);
    }
}
