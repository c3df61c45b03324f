//! Ctrl-C (and SIGTERM) for runs that ask for it: a graceful stop at the
//! next iteration boundary, scoped to the run (see
//! [`sk_process::stop_on_interrupt`]: once no run watches, the program's
//! previous handling is back; a second Ctrl-C during a stop ends it at
//! once).

use sk_core::StopToken;
use sk_process::InterruptGuard;

use crate::error::RunError;

/// Stops `token` on Ctrl-C until the guard is dropped.
pub(crate) fn watch(token: StopToken) -> Result<InterruptGuard, RunError> {
    sk_process::stop_on_interrupt(token).map_err(RunError::CtrlC)
}
