//! The error vocabulary of sk-core.
//!
//! One rule for every error of the workspace: an error's `Display` is its
//! own sentence, and the error it wraps is its `source()` — never also
//! written into its `Display`, so a chain printed link by link says each
//! thing once. Print a whole chain with [`error_chain`] (or any reporter
//! that walks `source()`). An error that carries another only as data
//! (e.g. `PoolError::Item`, which says why an item failed) shows it in its
//! `Display` and does not return it as its source.

use std::error::Error as StdError;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use sk_cereal::CerealError;
use sk_reg::RegistryError;

/// A boxed error from user code, kept as the source of a [`FunctionError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong binding, resolving or executing a function.
///
/// Every variant names the function involved.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// No function of this name is registered in this process.
    #[error("function \"{name}\" is not registered in this process")]
    NotRegistered {
        /// The name that was looked up.
        name: String,
    },
    /// Two static registrations claim the same name.
    #[error("function \"{name}\" is registered twice: at {first} and at {second}")]
    DuplicateStatic {
        /// The contested name.
        name: String,
        /// Where the first registration is.
        first: String,
        /// Where the second registration is.
        second: String,
    },
    /// A name was registered where one already exists.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// An argument was bound to a parameter the function does not have.
    #[error("function \"{function}\" has no parameter \"{param}\" (its parameters: {known})")]
    UnknownParameter {
        /// The function.
        function: String,
        /// The parameter name that was given.
        param: String,
        /// The parameters the function does have, comma separated.
        known: String,
    },
    /// An argument of the wrong type was bound to a parameter.
    #[error(
        "function \"{function}\" parameter \"{param}\" expects `{expected}`, but a `{found}` was bound"
    )]
    ArgumentType {
        /// The function.
        function: String,
        /// The parameter.
        param: String,
        /// The parameter's declared type.
        expected: String,
        /// The type of the value that was bound.
        found: String,
    },
    /// A parameter was bound twice.
    #[error("function \"{function}\" parameter \"{param}\" is bound twice")]
    ArgumentBoundTwice {
        /// The function.
        function: String,
        /// The parameter.
        param: String,
    },
    /// The function was called without a value for one of its parameters.
    #[error("function \"{function}\" was called without a value for parameter \"{param}\"")]
    MissingArgument {
        /// The function.
        function: String,
        /// The parameter without a value.
        param: String,
    },
    /// A value could not be serialized or deserialized; the error's path
    /// names the function and argument (`function "f" > arg "x" > field "w"`).
    #[error(transparent)]
    Cereal(#[from] CerealError),
    /// The caller asked for an output type the function does not return.
    #[error("function \"{function}\" returns `{found}`, not the requested `{expected}`")]
    OutputType {
        /// The function.
        function: String,
        /// The type the caller asked for.
        expected: String,
        /// The type the function produced.
        found: String,
    },
    /// The function was executed in a way its kind does not support.
    #[error("function \"{function}\" is a {kind} function and cannot be {action}")]
    WrongKind {
        /// The function.
        function: String,
        /// Its kind, e.g. `plain`.
        kind: &'static str,
        /// What was attempted, e.g. `streamed`.
        action: &'static str,
    },
    /// A local closure was asked to cross a process boundary.
    #[error(
        "function \"{name}\" is a local closure (SkLambda) and cannot be serialized or sent to another process"
    )]
    LocalOnly {
        /// The lambda's name.
        name: String,
    },
    /// The function ran and returned an error.
    #[error("function \"{function}\" failed")]
    Failed {
        /// The function.
        function: String,
        /// The function's own error.
        #[source]
        source: BoxError,
    },
    /// The function panicked; the panic was caught.
    #[error("function \"{function}\" panicked: {message}")]
    Panicked {
        /// The function.
        function: String,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// A call overran its timeout; its [`StopToken`](crate::StopToken) was set.
    #[error("function \"{function}\" timed out after {after:?}")]
    TimedOut {
        /// The function.
        function: String,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// Retrying did not produce a success.
    #[error("function \"{function}\" gave up after {attempts} attempt(s)")]
    RetriesExhausted {
        /// The function.
        function: String,
        /// How many attempts were made.
        attempts: u32,
        /// The error of the last attempt.
        #[source]
        last: Box<FunctionError>,
    },
    /// A modifier was given an invalid setting.
    #[error("function \"{function}\": invalid {modifier} setting: {reason}")]
    InvalidModifier {
        /// The function.
        function: String,
        /// The modifier, e.g. `rate_limit`.
        modifier: &'static str,
        /// Why the setting is invalid.
        reason: String,
    },
    /// A background call was stopped or its thread could not be started.
    #[error("function \"{function}\" background call: {reason}")]
    Background {
        /// The function.
        function: String,
        /// What went wrong.
        reason: String,
    },
}

impl FunctionError {
    /// Wraps an error returned by user code.
    pub fn failed(function: impl Into<String>, source: impl Into<BoxError>) -> Self {
        FunctionError::Failed {
            function: function.into(),
            source: source.into(),
        }
    }

    /// Whether a retry could succeed: user failures and timeouts are
    /// retryable, unless the user marked the failure [`Permanent`]; binding,
    /// registration and type errors are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            FunctionError::Failed { source, .. } => !source.is::<Permanent>(),
            FunctionError::Panicked { .. } | FunctionError::TimedOut { .. } => true,
            _ => false,
        }
    }
}

/// Marks an error from user code as not worth retrying.
///
/// Return it (boxed, e.g. through `?` into a `Box<dyn Error>`) from a
/// registered function and retry policies stop at once.
///
/// # Examples
///
/// ```
/// use sk_core::{FunctionError, Permanent};
/// let err = FunctionError::failed("parse", Permanent::new("bad header"));
/// assert!(!err.is_retryable());
/// ```
#[derive(Debug)]
pub struct Permanent(BoxError);

impl Permanent {
    /// Wraps `error` as permanent.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Permanent(error.into())
    }

    /// The wrapped error.
    pub fn into_inner(self) -> BoxError {
        self.0
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("permanent failure")
    }
}

impl StdError for Permanent {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

/// The message of a caught panic: its payload when that is a string.
///
/// # Examples
///
/// ```
/// let payload = std::panic::catch_unwind(|| panic!("kaboom")).unwrap_err();
/// assert_eq!(sk_core::panic_message(&*payload), "kaboom");
/// ```
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// Runs `f`, turning a panic into [`FunctionError::Panicked`] naming
/// `function`.
pub(crate) fn catch_panic<T>(
    function: &str,
    f: impl FnOnce() -> Result<T, FunctionError>,
) -> Result<T, FunctionError> {
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(FunctionError::Panicked {
            function: function.to_owned(),
            message: panic_message(&*payload),
        })
    })
}

/// An error and its sources, joined with ": " — the whole story in one
/// line, e.g. for an error that must cross a process boundary as text.
///
/// # Examples
///
/// ```
/// use sk_core::{FunctionError, error_chain};
/// let err = FunctionError::failed("parse", "bad header");
/// assert_eq!(error_chain(&err), "function \"parse\" failed: bad header");
/// ```
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
