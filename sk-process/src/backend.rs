//! [`Backend`]: whether workers are threads or processes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The environment variable that selects the backend for a whole program
/// (or test suite): `thread` or `process`.
pub const BACKEND_ENV: &str = "SK_SPAWN_BACKEND";

/// Where workers run.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Backend {
    /// A thread of this process (no isolation; values are not copied).
    Thread,
    /// A separate OS process: this binary re-executed as a worker.
    #[default]
    Process,
}

impl Backend {
    /// The backend named by `SK_SPAWN_BACKEND`, or [`Backend::Process`].
    /// An unknown value is reported on stderr once and ignored.
    pub fn from_env() -> Backend {
        match std::env::var(BACKEND_ENV) {
            Ok(v) if v.eq_ignore_ascii_case("thread") => Backend::Thread,
            Ok(v) if v.eq_ignore_ascii_case("process") || v.is_empty() => Backend::Process,
            Ok(v) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    eprintln!("{BACKEND_ENV}={v:?} is not `thread` or `process`; using `process`");
                });
                Backend::Process
            }
            Err(_) => Backend::Process,
        }
    }

    /// The backend's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Thread => "thread",
            Backend::Process => "process",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
