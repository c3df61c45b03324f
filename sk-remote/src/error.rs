//! The crate's error type.

use std::time::Duration;

/// What went wrong talking to the broker or serving remote parts.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The broker could not be reached (or refused the connection).
    #[error("cannot connect to the NATS server at {url} within {timeout:?}")]
    Connect {
        /// The URL tried.
        url: String,
        /// How long was waited.
        timeout: Duration,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading connection options (credentials, certificates) failed.
    #[error("cannot read the NATS connection option {what} for {url}")]
    Options {
        /// The URL.
        url: String,
        /// Which option (e.g. `credentials file "x.creds"`).
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The broker answered, but JetStream refused an operation (e.g. the
    /// server runs without `-js`).
    #[error("JetStream at {url} failed to {what}")]
    JetStream {
        /// The URL.
        url: String,
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A group name is not usable as a subject token.
    #[error(
        "remote group \"{group}\" is not a valid name: use letters, digits, '-' and '_' (1 to 64 of them)"
    )]
    BadGroup {
        /// The name given.
        group: String,
    },
    /// A command line option of a remote worker is wrong.
    #[error("remote worker: {0}")]
    Usage(String),
    /// The private runtime thread could not start, or is gone.
    #[error("the sk-remote bridge thread {0}")]
    Bridge(String),
    /// A local worker process could not be started.
    #[error("cannot start a local worker process for remote parts")]
    Worker(#[source] sk_process::WorkerError),
}

/// A boxed error, for sources.
pub(crate) fn boxed<E: std::error::Error + Send + Sync + 'static>(
    e: E,
) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

/// Checks that `group` can be a subject token.
pub(crate) fn check_group(group: &str) -> Result<(), RemoteError> {
    let ok = !group.is_empty()
        && group.len() <= 64
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(RemoteError::BadGroup {
            group: group.to_owned(),
        })
    }
}
