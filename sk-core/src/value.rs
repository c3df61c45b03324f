//! [`Value`]: a type-erased function output that can be downcast in-process
//! or encoded to cross a process boundary.

use std::any::{Any, type_name};
use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sk_cereal::{CerealError, External, Format, Internal, ValuePath};

use crate::error::FunctionError;

mod small;

use small::Small;

/// Which of the two sk-cereal formats a value's bytes are in.
#[non_exhaustive]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Encoding {
    /// The internal format: compact and fast, read back in a build of
    /// the same program (the default).
    #[default]
    Internal,
    /// The external format (see [`sk_cereal::External`]): self-describing
    /// and stable, to keep on disk (e.g. in a journal).
    External,
}

/// The output of a function, type-erased.
///
/// In-process it holds the value itself and [`Value::take`] moves it out
/// without any copying. A value that arrived from another process holds the
/// internal-format bytes and its type name, and `take` decodes it; one
/// read back from disk ([`Value::from_external`]) holds external-format
/// bytes, decoded the same way.
pub struct Value {
    repr: Repr,
}

enum Repr {
    Live(Box<dyn Erased>),
    /// A primitive value, inline (no box).
    Small(Small),
    /// Bytes from another process or from disk, boxed: a value's size is
    /// a live one's (it is moved around, and handed back from every
    /// part's run).
    Bytes(Box<Encoded>),
}

/// A value's bytes: the internal format (from another process of this
/// program) or the external one (see [`sk_cereal::External`], whose
/// envelope names the type).
struct Encoded {
    encoding: Encoding,
    type_name: String,
    bytes: Vec<u8>,
    /// The value decoded by [`Value::get`], kept for later reads.
    decoded: OnceLock<Box<dyn Any + Send + Sync>>,
}

trait Erased: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn encode(&self) -> Result<Vec<u8>, CerealError>;
    fn encode_external(&self) -> Result<Vec<u8>, CerealError>;
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
    fn encode_external(&self) -> Result<Vec<u8>, CerealError> {
        External::encode(&self.0)
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
        Err(local_only::<T>(Internal::NAME))
    }
    fn encode_external(&self) -> Result<Vec<u8>, CerealError> {
        Err(local_only::<T>(External::NAME))
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        Box::new(self.0)
    }
    fn as_any(&self) -> &(dyn Any + Send) {
        &self.0
    }
}

/// Why a value made with [`Value::local`] does not encode in `format`.
fn local_only<T>(format: &'static str) -> CerealError {
    CerealError::Serialize {
        format,
        path: ValuePath::root(),
        source: format!(
            "a `{}` is local to its process (made with Value::local) and cannot be serialized",
            type_name::<T>()
        )
        .into(),
    }
}

impl Encoded {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, CerealError> {
        match self.encoding {
            Encoding::Internal => Internal::decode(&self.bytes),
            Encoding::External => External::decode(&self.bytes),
        }
    }

    /// Decodes the bytes as a `T` (see [`Value::take`]).
    fn take<T: DeserializeOwned + 'static>(self) -> Result<T, TakeError> {
        if self.type_name != type_name::<T>() {
            return Err(TakeError::Type {
                expected: type_name::<T>(),
                found: self.type_name,
            });
        }
        self.decode().map_err(TakeError::Decode)
    }

    /// Decodes the bytes as a `T` once, keeping it for later reads;
    /// `None` for another type or bad bytes.
    fn get<T: DeserializeOwned + Send + Sync + 'static>(&self) -> Option<&T> {
        if self.type_name != type_name::<T>() {
            return None;
        }
        if self.decoded.get().is_none() {
            let value: T = self.decode().ok()?;
            let _ = self.decoded.set(Box::new(value));
        }
        self.decoded.get()?.downcast_ref()
    }

    /// The bytes in `encoding`, if they are in it.
    fn bytes_in(&self, encoding: Encoding) -> Result<Vec<u8>, CerealError> {
        if self.encoding == encoding {
            return Ok(self.bytes.clone());
        }
        let format = match encoding {
            Encoding::Internal => Internal::NAME,
            Encoding::External => External::NAME,
        };
        Err(not_transcodable(&self.type_name, format))
    }
}

impl Value {
    /// Wraps a serializable value.
    ///
    /// Values of the primitive types up to 64 bits (integers, floats,
    /// `bool`, `char`) are held inline; others in a box.
    pub fn new<T: Serialize + Send + Sync + 'static>(value: T) -> Self {
        let repr = match Small::new(value) {
            Ok(small) => Repr::Small(small),
            Err(value) => Repr::Live(Box::new(Serializable(value))),
        };
        Value { repr }
    }

    /// Wraps a value that never leaves this process; [`Value::encode`]
    /// refuses it with an error naming its type.
    pub fn local<T: Send + Sync + 'static>(value: T) -> Self {
        Value {
            repr: Repr::Live(Box::new(LocalOnly(value))),
        }
    }

    fn bytes(encoding: Encoding, type_name: String, bytes: Vec<u8>) -> Self {
        Value {
            repr: Repr::Bytes(Box::new(Encoded {
                encoding,
                type_name,
                bytes,
                decoded: OnceLock::new(),
            })),
        }
    }

    /// A value received from another process: internal-format bytes of a
    /// value whose type is `type_name` (as given by [`Value::type_name`]).
    pub fn from_encoded(type_name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Value::bytes(Encoding::Internal, type_name.into(), bytes)
    }

    /// A value read back from disk or another program: external-format
    /// bytes (see [`sk_cereal::External`]), whose envelope names its type.
    /// Typed reads ([`Value::get`], [`Value::take`]) decode them.
    ///
    /// # Errors
    ///
    /// The [`CerealError`] of [`External::inspect`] when the bytes are not
    /// an external envelope this build reads.
    pub fn from_external(bytes: Vec<u8>) -> Result<Self, CerealError> {
        let info = External::inspect(&bytes)?;
        Ok(Value::bytes(Encoding::External, info.type_name, bytes))
    }

    /// The value behind the live values' interface (boxed or inline), or
    /// its bytes.
    fn view(&self) -> Result<&dyn Erased, &Encoded> {
        match &self.repr {
            Repr::Live(v) => Ok(&**v),
            Repr::Small(v) => Ok(v.erased()),
            Repr::Bytes(b) => Err(b),
        }
    }

    /// The Rust type name of the value.
    pub fn type_name(&self) -> &str {
        match self.view() {
            Ok(v) => v.type_name(),
            Err(b) => &b.type_name,
        }
    }

    /// Whether the value is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        match self.view() {
            Ok(v) => v.as_any().is::<T>(),
            Err(b) => b.type_name == type_name::<T>(),
        }
    }

    /// Borrows the value as a `T`, decoding it (once) if it arrived encoded
    /// from another process.
    ///
    /// `None` when it is not a `T` or its bytes do not decode.
    pub fn get<T: DeserializeOwned + Send + Sync + 'static>(&self) -> Option<&T> {
        match self.view() {
            Ok(v) => v.as_any().downcast_ref(),
            Err(b) => b.get(),
        }
    }

    /// Borrows the value as a `T`, if it is a live `T` (see [`Value::get`]
    /// for values that arrived from another process).
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.view().ok()?.as_any().downcast_ref()
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
            Repr::Small(v) => v.downcast::<T>().map_err(|v| Value {
                repr: Repr::Small(v),
            }),
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
            Repr::Bytes(b) => b.take(),
            repr => Value { repr }.downcast::<T>().map_err(|v| TakeError::Type {
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
        match self.view() {
            Ok(v) => v.encode(),
            Err(b) => b.bytes_in(Encoding::Internal),
        }
    }

    /// The value's bytes to send to another process of this program, and
    /// their encoding: the internal format, or the external bytes a value
    /// read back from disk holds (they are sent as they are).
    ///
    /// # Errors
    ///
    /// A [`CerealError`] when the value does not serialize or was made
    /// with [`Value::local`].
    pub fn encode_any(&self) -> Result<(Encoding, Vec<u8>), CerealError> {
        match self.view() {
            Ok(v) => v.encode().map(|bytes| (Encoding::Internal, bytes)),
            Err(b) => Ok((b.encoding, b.bytes.clone())),
        }
    }

    /// A value received from another process as `bytes` in `encoding`
    /// (see [`Value::encode_any`]); `type_name` is used for internal bytes
    /// (external bytes name their type).
    ///
    /// # Errors
    ///
    /// As [`Value::from_external`], for external bytes.
    pub fn from_any(
        encoding: Encoding,
        type_name: impl Into<String>,
        bytes: Vec<u8>,
    ) -> Result<Self, CerealError> {
        match encoding {
            Encoding::Internal => Ok(Value::from_encoded(type_name, bytes)),
            Encoding::External => Value::from_external(bytes),
        }
    }

    /// Encodes the value in the external format (see
    /// [`sk_cereal::External`]), to keep on disk or hand to another
    /// program.
    ///
    /// # Errors
    ///
    /// A [`CerealError`] when the value does not serialize, was made with
    /// [`Value::local`], or arrived from another process in the internal
    /// format (its bytes carry no type information to re-encode from:
    /// ask the worker for external bytes instead).
    pub fn encode_external(&self) -> Result<Vec<u8>, CerealError> {
        match self.view() {
            Ok(v) => v.encode_external(),
            Err(b) => b.bytes_in(Encoding::External),
        }
    }

    /// Whether the value holds external-format bytes (see
    /// [`Value::from_external`]).
    pub fn is_external(&self) -> bool {
        matches!(&self.repr, Repr::Bytes(b) if b.encoding == Encoding::External)
    }

    /// Converts the value into its encoded form, ready to cross a process
    /// boundary.
    ///
    /// # Errors
    ///
    /// As [`Value::encode`].
    pub fn into_encoded(self) -> Result<(String, Vec<u8>), CerealError> {
        match self.repr {
            Repr::Bytes(b) if b.encoding == Encoding::Internal => Ok((b.type_name, b.bytes)),
            _ => Ok((self.type_name().to_owned(), self.encode()?)),
        }
    }
}

/// Why encoded bytes of a `type_name` cannot be re-encoded in `format`
/// without their type.
fn not_transcodable(type_name: &str, format: &'static str) -> CerealError {
    CerealError::Serialize {
        format,
        path: ValuePath::root(),
        source: format!(
            "a `{type_name}` held as bytes of another format cannot be re-encoded without its type"
        )
        .into(),
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.view() {
            Ok(v) => f.debug_tuple("Value").field(&v.type_name()).finish(),
            Err(b) => f
                .debug_struct("Value")
                .field("type_name", &b.type_name)
                .field("encoded_len", &b.bytes.len())
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
    fn primitive_values_read_encode_and_move_out_like_boxed_ones() {
        fn check<T>(x: T)
        where
            T: Serialize + DeserializeOwned + PartialEq + fmt::Debug + Clone + Send + Sync,
            T: 'static,
        {
            let v = Value::new(x.clone());
            assert!(v.is::<T>() && !v.is::<Vec<T>>());
            assert_eq!(v.type_name(), type_name::<T>());
            assert_eq!(v.get::<T>(), Some(&x));
            assert_eq!(v.downcast_ref::<T>(), Some(&x));
            assert_eq!(v.downcast_ref::<Vec<T>>(), None);
            assert_eq!(v.encode().unwrap(), Internal::encode(&x).unwrap());
            assert_eq!(v.encode_any().unwrap().1, Internal::encode(&x).unwrap());
            assert_eq!(v.encode_external().unwrap(), External::encode(&x).unwrap());
            assert!(format!("{v:?}").contains(type_name::<T>()));
            // A wrong type gives the value back whole.
            let v = v.downcast::<Vec<T>>().unwrap_err();
            assert_eq!(v.get::<T>(), Some(&x));
            let err = v.take::<Vec<T>>().unwrap_err();
            assert!(
                matches!(&err, TakeError::Type { found, .. } if found == type_name::<T>()),
                "{err}"
            );
            assert_eq!(Value::new(x.clone()).take::<T>().unwrap(), x);
            assert_eq!(Value::new(x.clone()).downcast::<T>().unwrap(), x);
            let (name, bytes) = Value::new(x.clone()).into_encoded().unwrap();
            assert_eq!(Value::from_encoded(name, bytes).take::<T>().unwrap(), x);
        }
        check(true);
        check('z');
        check(u8::MAX);
        check(u16::MAX);
        check(u32::MAX);
        check(u64::MAX);
        check(u128::MAX);
        check(usize::MAX);
        check(i8::MIN);
        check(i16::MIN);
        check(i32::MIN);
        check(i64::MIN);
        check(i128::MIN);
        check(isize::MIN);
        check(1.5f32);
        check(-2.25f64);
        // Other types (and a newtype of a primitive) stay boxed, alike.
        check(String::from("s"));
        check((1u8, 2u8));
        check(Some(3u64));
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

    #[test]
    fn a_value_crosses_to_another_process_in_the_encoding_it_holds() {
        let live = Value::new(vec![1u16, 2]);
        let (encoding, bytes) = live.encode_any().unwrap();
        assert_eq!(encoding, Encoding::Internal);
        let back = Value::from_any(encoding, live.type_name(), bytes).unwrap();
        assert_eq!(back.get::<Vec<u16>>(), Some(&vec![1, 2]));

        let external = Value::from_external(live.encode_external().unwrap()).unwrap();
        let (encoding, bytes) = external.encode_any().unwrap();
        assert_eq!(
            encoding,
            Encoding::External,
            "external bytes are sent as they are"
        );
        let back = Value::from_any(encoding, "ignored", bytes).unwrap();
        assert_eq!(back.get::<Vec<u16>>(), Some(&vec![1, 2]));
        assert!(Value::from_any(Encoding::External, "x", vec![1, 2, 3]).is_err());
        assert!(Value::local(1u8).encode_any().is_err());
    }

    #[test]
    fn external_values_round_trip_and_read_like_encoded_ones() {
        let bytes = Value::new(vec![String::from("a"), String::from("b")])
            .encode_external()
            .unwrap();
        let v = Value::from_external(bytes.clone()).unwrap();
        assert!(v.is_external() && v.is::<Vec<String>>());
        assert_eq!(v.get::<Vec<String>>().map(Vec::len), Some(2));
        assert_eq!(v.get::<Vec<u8>>(), None);
        assert_eq!(v.encode_external().unwrap(), bytes);
        let err = Value::from_external(bytes)
            .unwrap()
            .take::<u8>()
            .unwrap_err();
        assert!(matches!(err, TakeError::Type { .. }), "{err}");
    }

    #[test]
    fn bytes_that_are_no_envelope_are_refused() {
        assert!(Value::from_external(b"not an envelope".to_vec()).is_err());
    }

    #[test]
    fn internal_bytes_do_not_pretend_to_re_encode() {
        let (name, bytes) = Value::new(3u32).into_encoded().unwrap();
        let err = Value::from_encoded(name, bytes)
            .encode_external()
            .unwrap_err();
        assert!(crate::error_chain(&err).contains("u32"), "{err}");
        struct Handle;
        assert!(Value::local(Handle).encode_external().is_err());
    }
}
