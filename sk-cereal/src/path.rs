//! Paths naming a value inside a larger serialized value.

use std::borrow::Cow;
use std::fmt;

/// One step of a [`ValuePath`]: a struct field, a sequence index, a map key,
/// an enum variant, or a caller-supplied context such as a function argument.
///
/// # Examples
///
/// ```
/// use sk_cereal::Segment;
/// assert_eq!(Segment::Field("w".into()).to_string(), r#"field "w""#);
/// assert_eq!(Segment::Index(3).to_string(), "index 3");
/// assert_eq!(Segment::arg("size").to_string(), r#"arg "size""#);
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A named struct field (or struct-variant field).
    Field(String),
    /// A position in a sequence, tuple or tuple struct.
    Index(usize),
    /// A map entry, named by its key rendered as text.
    Key(String),
    /// An enum variant.
    Variant(String),
    /// A caller-supplied step, such as `arg "size"` or `part "resize"`.
    Context {
        /// What the step is (`arg`, `function`, `part`, ...).
        kind: Cow<'static, str>,
        /// Its name.
        name: String,
    },
}

impl Segment {
    /// A function-argument step, displayed as `arg "name"`.
    pub fn arg(name: impl Into<String>) -> Self {
        Self::context("arg", name)
    }

    /// A caller-defined step, displayed as `kind "name"`.
    pub fn context(kind: impl Into<Cow<'static, str>>, name: impl Into<String>) -> Self {
        Self::Context {
            kind: kind.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => write!(f, "field {name:?}"),
            Self::Index(index) => write!(f, "index {index}"),
            Self::Key(key) => write!(f, "key {key:?}"),
            Self::Variant(name) => write!(f, "variant {name:?}"),
            Self::Context { kind, name } => write!(f, "{kind} {name:?}"),
        }
    }
}

/// The path from the root of a value to one of its parts, outermost first.
///
/// Displays as its segments joined with ` > `, or `<root>` when empty.
///
/// # Examples
///
/// ```
/// use sk_cereal::{Segment, ValuePath};
/// let mut path = ValuePath::root();
/// path.push(Segment::Field("w".into()));
/// let path = path.prefixed(Segment::arg("size"));
/// assert_eq!(path.to_string(), r#"arg "size" > field "w""#);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ValuePath {
    segments: Vec<Segment>,
}

impl ValuePath {
    /// The empty path: the value itself.
    pub fn root() -> Self {
        Self::default()
    }

    /// Appends `segment` at the innermost end.
    pub fn push(&mut self, segment: Segment) {
        self.segments.push(segment);
    }

    /// Returns this path with `segment` added at the outermost end.
    pub fn prefixed(mut self, segment: Segment) -> Self {
        self.segments.insert(0, segment);
        self
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether this is the root path.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }
}

impl From<Vec<Segment>> for ValuePath {
    fn from(segments: Vec<Segment>) -> Self {
        Self { segments }
    }
}

impl fmt::Display for ValuePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("<root>");
        }
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(" > ")?;
            }
            write!(f, "{segment}")?;
        }
        Ok(())
    }
}
