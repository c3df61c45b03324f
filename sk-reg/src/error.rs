//! Errors of the registries, the project root and the global storage.

use std::path::PathBuf;

use sk_cereal::CerealError;

use crate::layer::Layer;

/// An error from a [`Registry`](crate::Registry).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The name is already registered in that layer; use
    /// [`Registry::replace`](crate::Registry::replace) to overwrite it.
    #[error("\"{name}\" is already registered in the {layer} layer of registry \"{registry}\"")]
    Duplicate {
        /// Name of the registry.
        registry: String,
        /// Layer that already holds the name.
        layer: Layer,
        /// The contested name.
        name: String,
    },
    /// No layer of the registry holds the name.
    #[error("\"{name}\" is not registered in registry \"{registry}\"")]
    NotFound {
        /// Name of the registry.
        registry: String,
        /// The name that was looked up.
        name: String,
    },
}

/// An error from [`SkRoot`](crate::SkRoot).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// No marker was found in the start directory or any of its ancestors.
    #[error(
        "no project root found from {}: none of {} exists there or in any ancestor",
        start.display(),
        markers.join(", ")
    )]
    NotFound {
        /// The directory detection started from.
        start: PathBuf,
        /// The markers that were looked for, in priority order.
        markers: Vec<String>,
    },
    /// Detection was configured without any marker.
    #[error("no root markers were given")]
    NoMarkers,
    /// A path could not be read (it may not exist).
    #[error("cannot access {}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// An explicit root is not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path given as root.
        path: PathBuf,
    },
    /// A path does not lie in or under the root.
    #[error("{} is outside the project root {}", path.display(), root.display())]
    OutsideRoot {
        /// The path given.
        path: PathBuf,
        /// The project root.
        root: PathBuf,
    },
    /// A relative path leaves the root (through `..` or by being absolute).
    #[error("{} escapes the project root {}", path.display(), root.display())]
    Escapes {
        /// The path given.
        path: PathBuf,
        /// The project root.
        root: PathBuf,
    },
    /// The process root was already detected or set.
    #[error("the process root is already set to {}", current.display())]
    AlreadySet {
        /// The root already in use.
        current: PathBuf,
    },
}

/// An error from [`GlobalStorage`](crate::GlobalStorage) or a
/// [`StorageBackend`](crate::StorageBackend).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The stored value has another type than the one asked for.
    #[error("value at key \"{key}\" is stored as `{found}`, not `{expected}`")]
    TypeMismatch {
        /// The key.
        key: String,
        /// The type asked for.
        expected: String,
        /// The type the value was stored as.
        found: String,
    },
    /// A value could not be encoded for storage.
    #[error("cannot encode the value for key \"{key}\"")]
    Encode {
        /// The key.
        key: String,
        /// The serializer's error, naming the failing field.
        #[source]
        source: CerealError,
    },
    /// A stored value could not be decoded.
    #[error("cannot decode the value at key \"{key}\"")]
    Decode {
        /// The key.
        key: String,
        /// The deserializer's error, naming the failing field.
        #[source]
        source: CerealError,
    },
    /// A serialization error outside any single key (for backends that
    /// encode their own traffic).
    #[error("serialization failed in the storage backend")]
    Cereal(#[from] CerealError),
    /// The backend failed (for a remote backend: the transport).
    #[error("storage backend failed: {message}")]
    Backend {
        /// What the backend was doing.
        message: String,
        /// The underlying failure, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// [`GlobalStorage::install_global_backend`](crate::GlobalStorage::install_global_backend)
    /// was called after the process-wide storage was already in use.
    #[error("the process-wide global storage is already initialized")]
    GlobalAlreadyInitialized,
}

impl StorageError {
    /// A [`StorageError::Backend`] without an underlying cause.
    ///
    /// # Examples
    ///
    /// ```
    /// use sk_reg::StorageError;
    ///
    /// let err = StorageError::backend("the host process is gone");
    /// assert_eq!(err.to_string(), "storage backend failed: the host process is gone");
    /// ```
    pub fn backend(message: impl Into<String>) -> Self {
        StorageError::Backend {
            message: message.into(),
            source: None,
        }
    }

    /// A [`StorageError::Backend`] caused by `source`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::error::Error as _;
    /// use sk_reg::StorageError;
    ///
    /// let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed");
    /// let err = StorageError::backend_with("sending a store request", io);
    /// assert_eq!(err.to_string(), "storage backend failed: sending a store request");
    /// assert_eq!(err.source().map(|s| s.to_string()).as_deref(), Some("pipe closed"));
    /// ```
    pub fn backend_with<E>(message: impl Into<String>, source: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        StorageError::Backend {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use sk_testkit::assert_chain_says_each_thing_once as says_once;

    use super::*;

    fn cereal() -> CerealError {
        sk_cereal::Internal::decode::<String>(&[]).unwrap_err()
    }

    #[test]
    fn every_error_with_a_source_says_it_once() {
        says_once(&RootError::Io {
            path: PathBuf::from("/nowhere"),
            source: std::io::Error::other("no such file"),
        });
        for err in [
            StorageError::Encode {
                key: "k".to_owned(),
                source: cereal(),
            },
            StorageError::Decode {
                key: "k".to_owned(),
                source: cereal(),
            },
            StorageError::Cereal(cereal()),
            StorageError::Backend {
                message: "cannot reach the parent's storage".to_owned(),
                source: Some("broken pipe".into()),
            },
        ] {
            says_once(&err);
        }
    }
}
