//! [`Value`]: a type-erased function output that can be downcast in-process
//! or encoded to cross a process boundary.

use std::any::{Any, type_name};
use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sk_cereal::{CerealError, Format, Internal, ValuePath};

use crate::error::FunctionError;

/// The output of a function, type-erased.
///
/// In-process it holds the value itself and [`Value::take`] moves it out
/// without any copying. A value that arrived from another process holds the
/// internal-format bytes and its type name, and `take` decodes it.
pub struct Value {
    repr: Repr,
}

enum Repr {
    Live(Box<dyn Erased>),
    Encoded {
        type_name: String,
        bytes: Vec<u8>,
        /// The value decoded by [`Value::get`], kept for later reads.
        decoded: OnceLock<Box<dyn Any + Send + Sync>>,
    },
}

trait Erased: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn encode(&self) -> Result<Vec<u8>, CerealError>;
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
    fn as_any(&self) -> &(dyn Any + Send);
}

struct Serializable<T>(T);

impl<T: Serialize + Send + Sync + 'static> Erased for Serializable<T> {
    fn type_name(&self) -> &'static str {
        type_name::<T>()
    }
    fn encode(&self) -> Result<Vec<u8>, CerealError> {
        Internal::encode(&self.0)
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        Box::new(self.0)
    }
    fn as_any(&self) -> &(dyn Any + Send) {
        &self.0
    }
}

struct LocalOnly<T>(T);

impl<T: Send + Sync + 'static> Erased for LocalOnly<T> {
    fn type_name(&self) -> &'static str {
        type_name::<T>()
    }
    fn encode(&self) -> Result<Vec<u8>, CerealError> {
        Err(CerealError::Serialize {
            format: Internal::NAME,
            path: ValuePath::root(),
            source: format!(
                "a `{}` is local to its process (made with Value::local) and cannot be serialized",
                type_name::<T>()
            )
            .into(),
        })
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        Box::new(self.0)
    }
    fn as_any(&self) -> &(dyn Any + Send) {
        &self.0
    }
}

impl Value {
    /// Wraps a serializable value.
    pub fn new<T: Serialize + Send + Sync + 'static>(value: T) -> Self {
        Value {
            repr: Repr::Live(Box::new(Serializable(value))),
        }
    }

    /// Wraps a value that never leaves this process; [`Value::encode`]
    /// refuses it with an error naming its type.
    pub fn local<T: Send + Sync + 'static>(value: T) -> Self {
        Value {
            repr: Repr::Live(Box::new(LocalOnly(value))),
        }
    }

    /// A value received from another process: internal-format bytes of a
    /// value whose type is `type_name` (as given by [`Value::type_name`]).
    pub fn from_encoded(type_name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Value {
            repr: Repr::Encoded {
                type_name: type_name.into(),
                bytes,
                decoded: OnceLock::new(),
            },
        }
    }

    /// The Rust type name of the value.
    pub fn type_name(&self) -> &str {
        match &self.repr {
            Repr::Live(v) => v.type_name(),
            Repr::Encoded { type_name, .. } => type_name,
        }
    }

    /// Whether the value is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        match &self.repr {
            Repr::Live(v) => v.as_any().is::<T>(),
            Repr::Encoded {
                type_name: name, ..
            } => name == type_name::<T>(),
        }
    }

    /// Borrows the value as a `T`, decoding it (once) if it arrived encoded
    /// from another process.
    ///
    /// `None` when it is not a `T` or its bytes do not decode.
    pub fn get<T: DeserializeOwned + Send + Sync + 'static>(&self) -> Option<&T> {
        match &self.repr {
            Repr::Live(v) => v.as_any().downcast_ref(),
            Repr::Encoded {
                type_name: name,
                bytes,
                decoded,
            } => {
                if name != type_name::<T>() {
                    return None;
                }
                if decoded.get().is_none() {
                    let value: T = Internal::decode(bytes).ok()?;
                    let _ = decoded.set(Box::new(value));
                }
                decoded.get()?.downcast_ref()
            }
        }
    }

    /// Borrows the value as a `T`, if it is a live `T` (see [`Value::get`]
    /// for values that arrived from another process).
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        match &self.repr {
            Repr::Live(v) => v.as_any().downcast_ref(),
            Repr::Encoded { .. } => None,
        }
    }

    /// Moves the value out as a `T`.
    ///
    /// # Errors
    ///
    /// Gives the value back when it is not a `T`.
    pub fn downcast<T: 'static>(self) -> Result<T, Value> {
        match self.repr {
            Repr::Live(v) if v.as_any().is::<T>() => match v.into_any().downcast::<T>() {
                Ok(b) => Ok(*b),
                // Unreachable: `is::<T>()` was checked just above.
                Err(_) => Err(Value::local(())),
            },
            repr => Err(Value { repr }),
        }
    }

    /// Takes the value as a `T`, decoding it if it arrived encoded.
    ///
    /// # Errors
    ///
    /// [`TakeError::Type`] when the value is not a `T` (naming both types),
    /// [`TakeError::Decode`] when encoded bytes do not decode.
    pub fn take<T: DeserializeOwned + 'static>(self) -> Result<T, TakeError> {
        match self.repr {
            Repr::Encoded {
                type_name: name,
                bytes,
                ..
            } => {
                if name != type_name::<T>() {
                    return Err(TakeError::Type {
                        expected: type_name::<T>(),
                        found: name,
                    });
                }
                Internal::decode(&bytes).map_err(TakeError::Decode)
            }
            repr @ Repr::Live(_) => Value { repr }.downcast::<T>().map_err(|v| TakeError::Type {
                expected: type_name::<T>(),
                found: v.type_name().to_owned(),
            }),
        }
    }

    /// Encodes the value in the internal format.
    ///
    /// # Errors
    ///
    /// A [`CerealError`] when the value does not serialize or was made with
    /// [`Value::local`].
    pub fn encode(&self) -> Result<Vec<u8>, CerealError> {
        match &self.repr {
            Repr::Live(v) => v.encode(),
            Repr::Encoded { bytes, .. } => Ok(bytes.clone()),
        }
    }

    /// Converts the value into its encoded form, ready to cross a process
    /// boundary.
    ///
    /// # Errors
    ///
    /// As [`Value::encode`].
    pub fn into_encoded(self) -> Result<(String, Vec<u8>), CerealError> {
        match self.repr {
            Repr::Live(v) => Ok((v.type_name().to_owned(), v.encode()?)),
            Repr::Encoded {
                type_name, bytes, ..
            } => Ok((type_name, bytes)),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Live(v) => f.debug_tuple("Value").field(&v.type_name()).finish(),
            Repr::Encoded {
                type_name, bytes, ..
            } => f
                .debug_struct("Value")
                .field("type_name", type_name)
                .field("encoded_len", &bytes.len())
                .finish(),
        }
    }
}

/// Moves the output of `function` out as an `R`.
///
/// # Errors
///
/// [`FunctionError::OutputType`] naming `function` and both types when the
/// output is not an `R`.
pub(crate) fn downcast_output<R: 'static>(
    function: &str,
    value: Value,
) -> Result<R, FunctionError> {
    value
        .downcast::<R>()
        .map_err(|v| FunctionError::OutputType {
            function: function.to_owned(),
            expected: type_name::<R>().to_owned(),
            found: v.type_name().to_owned(),
        })
}

/// Why [`Value::take`] failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// The value is of another type.
    #[error("value is a `{found}`, not a `{expected}`")]
    Type {
        /// The requested type.
        expected: &'static str,
        /// The value's type.
        found: String,
    },
    /// The encoded bytes did not decode.
    #[error("encoded value does not decode")]
    Decode(#[source] CerealError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_values_move_out_without_encoding() {
        let v = Value::new(vec![1u32, 2, 3]);
        assert!(v.is::<Vec<u32>>());
        assert_eq!(v.downcast_ref::<Vec<u32>>(), Some(&vec![1, 2, 3]));
        assert_eq!(v.take::<Vec<u32>>().unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn wrong_type_names_both_types() {
        let err = Value::new(5u8).take::<String>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("u8") && msg.contains("String"), "{msg}");
    }

    #[test]
    fn encoded_values_decode_on_take() {
        let (name, bytes) = Value::new(String::from("hi")).into_encoded().unwrap();
        let v = Value::from_encoded(name, bytes);
        assert!(v.is::<String>());
        assert_eq!(v.take::<String>().unwrap(), "hi");
    }

    #[test]
    fn get_decodes_an_encoded_value_once_and_borrows_it() {
        let (name, bytes) = Value::new(vec![1u16, 2]).into_encoded().unwrap();
        let v = Value::from_encoded(name, bytes);
        assert_eq!(v.downcast_ref::<Vec<u16>>(), None);
        assert_eq!(v.get::<Vec<u16>>(), Some(&vec![1, 2]));
        assert_eq!(v.get::<Vec<u32>>(), None);
        assert_eq!(Value::new(7u8).get::<u8>(), Some(&7));
    }

    #[test]
    fn local_values_refuse_to_encode_naming_the_type() {
        struct Handle;
        let err = Value::local(Handle).encode().unwrap_err();
        let text = crate::error_chain(&err);
        assert!(text.contains("Handle"), "{text}");
    }
}
