//! [`Args`]: arguments bound by parameter name, held encoded so that a
//! handle carrying them can cross a process boundary.

use std::any::type_name;
use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sk_cereal::{External, Internal, Segment};

use crate::error::FunctionError;
use crate::value::Encoding;

/// One bound argument: the type it was bound as and its bytes (in the
/// internal format, or the external one for a value read back from disk).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgValue {
    type_name: Cow<'static, str>,
    bytes: Vec<u8>,
    #[serde(default)]
    encoding: Encoding,
}

impl ArgValue {
    /// Encodes `value`; a failure names `function`, the parameter and the
    /// path inside the value.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        function: &str,
        param: &str,
        value: &T,
    ) -> Result<Self, FunctionError> {
        let bytes = Internal::encode(value).map_err(|e| {
            e.with_context(Segment::arg(param))
                .with_context(Segment::context("function", function))
        })?;
        Ok(ArgValue {
            type_name: Cow::Borrowed(type_name::<T>()),
            bytes,
            encoding: Encoding::Internal,
        })
    }

    /// The Rust type name the argument was bound as.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The argument's bytes, in [`ArgValue::encoding`].
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The format of [`ArgValue::bytes`].
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }
}

/// Arguments bound by parameter name.
///
/// Kept sorted by name; a function's invoker reads them with
/// [`Args::decode`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Args {
    entries: Vec<(Cow<'static, str>, ArgValue)>,
}

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Args::default()
    }

    /// Binds `value` to `param` without checking it against a signature;
    /// the function checks when it is called. Use
    /// [`SkFunctionBuilder::arg`](crate::SkFunctionBuilder::arg) to check at
    /// bind time.
    ///
    /// # Errors
    ///
    /// [`FunctionError::Cereal`] when the value does not serialize, with the
    /// path of the failing value.
    pub fn with<T: Serialize>(mut self, param: &str, value: &T) -> Result<Self, FunctionError> {
        let arg = ArgValue::encode("<unbound>", param, value)?;
        self.insert(Cow::Owned(param.to_owned()), arg);
        Ok(self)
    }

    /// Binds an already encoded value (e.g. a part's input that arrived
    /// from another process) to `param`, as the type `type_name`.
    pub fn with_encoded(
        self,
        param: impl Into<Cow<'static, str>>,
        type_name: impl Into<String>,
        bytes: Vec<u8>,
    ) -> Self {
        self.with_bytes(param, type_name, Encoding::Internal, bytes)
    }

    /// Binds a value's bytes in `encoding` (see
    /// [`Value::encode_any`](crate::Value::encode_any)) to `param`, as
    /// the type `type_name`.
    pub fn with_bytes(
        mut self,
        param: impl Into<Cow<'static, str>>,
        type_name: impl Into<String>,
        encoding: Encoding,
        bytes: Vec<u8>,
    ) -> Self {
        let value = ArgValue {
            type_name: Cow::Owned(type_name.into()),
            bytes,
            encoding,
        };
        self.insert(param.into(), value);
        self
    }

    pub(crate) fn insert(&mut self, param: Cow<'static, str>, value: ArgValue) -> Option<ArgValue> {
        match self.entries.binary_search_by(|(k, _)| (**k).cmp(&*param)) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (param, value));
                None
            }
        }
    }

    /// The argument bound to `param`.
    pub fn get(&self, param: &str) -> Option<&ArgValue> {
        self.entries
            .binary_search_by(|(k, _)| (**k).cmp(param))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// Whether `param` is bound.
    pub fn contains(&self, param: &str) -> bool {
        self.get(param).is_some()
    }

    /// How many arguments are bound.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no argument is bound.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bound parameter names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| &**k)
    }

    /// Decodes the argument for `param` of `function` as a `T`.
    ///
    /// # Errors
    ///
    /// [`FunctionError::MissingArgument`] when `param` is unbound,
    /// [`FunctionError::ArgumentType`] when it was bound as another type,
    /// [`FunctionError::Cereal`] when its bytes do not decode.
    pub fn decode<T: DeserializeOwned + 'static>(
        &self,
        function: &str,
        param: &str,
    ) -> Result<T, FunctionError> {
        let arg = self
            .get(param)
            .ok_or_else(|| FunctionError::MissingArgument {
                function: function.to_owned(),
                param: param.to_owned(),
            })?;
        if *arg.type_name != *type_name::<T>() {
            return Err(FunctionError::ArgumentType {
                function: function.to_owned(),
                param: param.to_owned(),
                expected: type_name::<T>().to_owned(),
                found: arg.type_name.to_string(),
            });
        }
        let decoded = match arg.encoding {
            Encoding::Internal => Internal::decode(&arg.bytes),
            Encoding::External => External::decode(&arg.bytes),
        };
        decoded.map_err(|e| {
            FunctionError::Cereal(
                e.with_context(Segment::arg(param))
                    .with_context(Segment::context("function", function)),
            )
        })
    }

    /// Layers `extra` over `self`: a name bound in both takes `extra`'s value.
    pub(crate) fn overlay(&self, extra: &Args) -> Args {
        let mut merged = self.clone();
        for (k, v) in &extra.entries {
            merged.insert(k.clone(), v.clone());
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_checks_presence_and_type() {
        let args = Args::new().with("n", &3u32).unwrap();
        assert_eq!(args.decode::<u32>("f", "n").unwrap(), 3);
        let missing = args.decode::<u32>("f", "m").unwrap_err();
        assert!(matches!(missing, FunctionError::MissingArgument { .. }));
        let wrong = args.decode::<i64>("f", "n").unwrap_err();
        assert!(wrong.to_string().contains("expects `i64`"), "{wrong}");
    }

    #[test]
    fn an_argument_in_the_external_format_decodes_too() {
        let bytes = External::encode(&7u32).unwrap();
        let args = Args::new().with_bytes("n", type_name::<u32>(), Encoding::External, bytes);
        assert_eq!(args.get("n").unwrap().encoding(), Encoding::External);
        assert_eq!(args.decode::<u32>("f", "n").unwrap(), 7);
    }

    #[test]
    fn overlay_prefers_the_extra_value_and_stays_sorted() {
        let base = Args::new()
            .with("b", &1u8)
            .unwrap()
            .with("a", &2u8)
            .unwrap();
        let extra = Args::new().with("b", &9u8).unwrap();
        let merged = base.overlay(&extra);
        assert_eq!(merged.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(merged.decode::<u8>("f", "b").unwrap(), 9);
    }
}
