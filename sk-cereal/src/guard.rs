//! A `Deserializer` wrapper that bounds nesting depth and records the path of
//! the value that failed.
//!
//! It runs on failure paths only: [`Internal`](crate::Internal) first decodes
//! through the cheaper [`Bounded`](crate::bounded::Bounded) (and
//! [`External`](crate::External) through plain ciborium); when that fails the
//! same bytes are decoded again through [`Guard`] to name the failing value.
//! `Bounded` and `Guard` count the same levels, so a depth-limit trip happens
//! at the same place in each.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

use crate::path::Segment;

/// An error raised inside the wrapper: either the wrapped format's own error
/// or a message from a visitor (kept as text because postcard drops it).
#[derive(Debug)]
pub(crate) enum GuardError<E> {
    Inner(E),
    Custom(String),
}

impl<E: fmt::Display> fmt::Display for GuardError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inner(err) => err.fmt(f),
            Self::Custom(msg) => f.write_str(msg),
        }
    }
}

impl<E: fmt::Display + fmt::Debug> std::error::Error for GuardError<E> {}

impl<E: de::Error> de::Error for GuardError<E> {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Custom(msg.to_string())
    }
}

impl<E: serde::ser::Error> serde::ser::Error for GuardError<E> {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Custom(msg.to_string())
    }
}

/// Path bookkeeping of a failure-path run.
#[derive(Default)]
pub(crate) struct PathTrack {
    stack: RefCell<Vec<Segment>>,
    failed_at: RefCell<Option<Vec<Segment>>>,
    capturing: Cell<bool>,
    key: RefCell<Option<String>>,
}

impl PathTrack {
    /// The failure point, or the root when the failure was at the top.
    pub(crate) fn into_path(self) -> Vec<Segment> {
        self.failed_at.into_inner().unwrap_or_default()
    }

    pub(crate) fn push(&self, segment: Segment) {
        self.stack.borrow_mut().push(segment);
    }

    pub(crate) fn pop(&self) {
        self.stack.borrow_mut().pop();
    }

    /// Records the current path as the failure point unless a deeper one is known.
    pub(crate) fn capture(&self) {
        let mut failed_at = self.failed_at.borrow_mut();
        if failed_at.is_none() {
            *failed_at = Some(self.stack.borrow().clone());
        }
    }

    pub(crate) fn start_key(&self) {
        self.capturing.set(true);
        *self.key.borrow_mut() = None;
    }

    pub(crate) fn note_scalar(&self, render: &dyn Fn() -> String) {
        if self.capturing.get() {
            self.capturing.set(false);
            *self.key.borrow_mut() = Some(render());
        }
    }

    pub(crate) fn end_key(&self) -> Option<String> {
        self.capturing.set(false);
        self.key.borrow_mut().take()
    }
}

/// Shared state of one decoding run.
pub(crate) struct State {
    depth: Cell<usize>,
    max_depth: usize,
    tripped: Cell<bool>,
    message: RefCell<Option<String>>,
    pub(crate) track: PathTrack,
}

impl State {
    pub(crate) fn new(max_depth: usize) -> Self {
        Self {
            depth: Cell::new(0),
            max_depth,
            tripped: Cell::new(false),
            message: RefCell::new(None),
            track: PathTrack::default(),
        }
    }

    /// Converts a wrapper error back into the wrapped format's error.
    pub(crate) fn lower<E: de::Error>(&self, err: GuardError<E>) -> E {
        match err {
            GuardError::Inner(err) => err,
            GuardError::Custom(msg) => {
                let err = E::custom(&msg);
                let mut slot = self.message.borrow_mut();
                if slot.is_none() {
                    *slot = Some(msg);
                }
                err
            }
        }
    }

    /// Runs `f` one level deeper, failing once the limit is reached.
    #[inline]
    fn nested<T, E>(
        &self,
        f: impl FnOnce() -> Result<T, GuardError<E>>,
    ) -> Result<T, GuardError<E>> {
        let depth = self.depth.get();
        if depth >= self.max_depth {
            self.tripped.set(true);
            return Err(GuardError::Custom(format!(
                "nesting deeper than {} levels",
                self.max_depth
            )));
        }
        self.depth.set(depth + 1);
        let result = f();
        self.depth.set(depth);
        result
    }
}

/// How the values inside a compound are named in a path.
#[derive(Clone, Copy)]
enum Ctx {
    Plain,
    Struct(&'static [&'static str]),
    Enum(&'static [&'static str]),
}

/// The depth-bounding, path-tracking deserializer.
pub(crate) struct Guard<'s, D> {
    inner: D,
    st: &'s State,
}

impl<'s, D> Guard<'s, D> {
    pub(crate) fn new(inner: D, st: &'s State) -> Self {
        Self { inner, st }
    }
}

struct GVisitor<'s, V> {
    visitor: V,
    st: &'s State,
    ctx: Ctx,
}

struct GSeed<'s, S> {
    seed: S,
    st: &'s State,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for GSeed<'_, S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        let st = self.st;
        self.seed
            .deserialize(Guard::new(deserializer, st))
            .map_err(|err| st.lower(err))
    }
}

macro_rules! forward_scalar {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            let st = self.st;
            self.inner
                .$method(GVisitor { visitor, st, ctx: Ctx::Plain })
                .map_err(GuardError::Inner)
        }
    )*};
}

macro_rules! forward_nested {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            let st = self.st;
            let inner = self.inner;
            st.nested(|| {
                inner
                    .$method(GVisitor { visitor, st, ctx: Ctx::Plain })
                    .map_err(GuardError::Inner)
            })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guard<'_, D> {
    type Error = GuardError<D::Error>;

    forward_scalar! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier
    }

    forward_nested! {
        deserialize_any deserialize_option deserialize_seq deserialize_map deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let st = self.st;
        self.inner
            .deserialize_unit_struct(
                name,
                GVisitor {
                    visitor,
                    st,
                    ctx: Ctx::Plain,
                },
            )
            .map_err(GuardError::Inner)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let (st, inner) = (self.st, self.inner);
        st.nested(|| {
            inner
                .deserialize_newtype_struct(
                    name,
                    GVisitor {
                        visitor,
                        st,
                        ctx: Ctx::Plain,
                    },
                )
                .map_err(GuardError::Inner)
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let (st, inner) = (self.st, self.inner);
        st.nested(|| {
            inner
                .deserialize_tuple(
                    len,
                    GVisitor {
                        visitor,
                        st,
                        ctx: Ctx::Plain,
                    },
                )
                .map_err(GuardError::Inner)
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let (st, inner) = (self.st, self.inner);
        st.nested(|| {
            inner
                .deserialize_tuple_struct(
                    name,
                    len,
                    GVisitor {
                        visitor,
                        st,
                        ctx: Ctx::Plain,
                    },
                )
                .map_err(GuardError::Inner)
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let (st, inner) = (self.st, self.inner);
        st.nested(|| {
            let ctx = Ctx::Struct(fields);
            inner
                .deserialize_struct(name, fields, GVisitor { visitor, st, ctx })
                .map_err(GuardError::Inner)
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let (st, inner) = (self.st, self.inner);
        st.nested(|| {
            let ctx = Ctx::Enum(variants);
            inner
                .deserialize_enum(name, variants, GVisitor { visitor, st, ctx })
                .map_err(GuardError::Inner)
        })
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! visit_scalar {
    ($($method:ident: $ty:ty)*) => {$(
        #[inline]
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.st.track.note_scalar(&|| v.to_string());
            let st = self.st;
            self.visitor.$method::<GuardError<E>>(v).map_err(|err| st.lower(err))
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for GVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    visit_scalar! {
        visit_bool: bool visit_i8: i8 visit_i16: i16 visit_i32: i32 visit_i64: i64
        visit_i128: i128 visit_u8: u8 visit_u16: u16 visit_u32: u32 visit_u64: u64
        visit_u128: u128 visit_f32: f32 visit_f64: f64 visit_char: char visit_str: &str
    }

    #[inline]
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.st.track.note_scalar(&|| v.to_owned());
        let st = self.st;
        self.visitor
            .visit_borrowed_str::<GuardError<E>>(v)
            .map_err(|err| st.lower(err))
    }

    #[inline]
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        self.st.track.note_scalar(&|| v.clone());
        let st = self.st;
        self.visitor
            .visit_string::<GuardError<E>>(v)
            .map_err(|err| st.lower(err))
    }

    #[inline]
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        let st = self.st;
        self.visitor
            .visit_bytes::<GuardError<E>>(v)
            .map_err(|err| st.lower(err))
    }

    #[inline]
    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        let st = self.st;
        self.visitor
            .visit_borrowed_bytes::<GuardError<E>>(v)
            .map_err(|err| st.lower(err))
    }

    #[inline]
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        let st = self.st;
        self.visitor
            .visit_byte_buf::<GuardError<E>>(v)
            .map_err(|err| st.lower(err))
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        let st = self.st;
        self.visitor
            .visit_none::<GuardError<E>>()
            .map_err(|err| st.lower(err))
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        let st = self.st;
        self.visitor
            .visit_unit::<GuardError<E>>()
            .map_err(|err| st.lower(err))
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let st = self.st;
        self.visitor
            .visit_some(Guard::new(d, st))
            .map_err(|err| st.lower(err))
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let st = self.st;
        self.visitor
            .visit_newtype_struct(Guard::new(d, st))
            .map_err(|err| st.lower(err))
    }

    #[inline]
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let st = self.st;
        let seq = GSeq {
            inner: seq,
            st,
            fields: match self.ctx {
                Ctx::Struct(fields) => fields,
                _ => &[],
            },
            index: 0,
        };
        self.visitor.visit_seq(seq).map_err(|err| st.lower(err))
    }

    #[inline]
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let st = self.st;
        let map = GMap {
            inner: map,
            st,
            is_struct: matches!(self.ctx, Ctx::Struct(_)),
            key: None,
        };
        self.visitor.visit_map(map).map_err(|err| st.lower(err))
    }

    #[inline]
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let st = self.st;
        let variants = match self.ctx {
            Ctx::Enum(variants) => variants,
            Ctx::Plain | Ctx::Struct(_) => &[],
        };
        let data = GEnum {
            inner: data,
            st,
            variants,
        };
        self.visitor.visit_enum(data).map_err(|err| st.lower(err))
    }
}

struct GSeq<'s, A> {
    inner: A,
    st: &'s State,
    fields: &'static [&'static str],
    index: usize,
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for GSeq<'_, A> {
    type Error = GuardError<A::Error>;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let st = self.st;
        let segment = match self.fields.get(self.index) {
            Some(field) => Segment::Field((*field).to_owned()),
            None => Segment::Index(self.index),
        };
        st.track.push(segment);
        let result = self.inner.next_element_seed(GSeed { seed, st });
        if result.is_err() {
            st.track.capture();
        }
        st.track.pop();
        self.index += 1;
        result.map_err(GuardError::Inner)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

struct GMap<'s, A> {
    inner: A,
    st: &'s State,
    is_struct: bool,
    key: Option<String>,
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for GMap<'_, A> {
    type Error = GuardError<A::Error>;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let st = self.st;
        st.track.start_key();
        let result = self.inner.next_key_seed(GSeed { seed, st });
        self.key = st.track.end_key();
        if result.is_err() {
            st.track.capture();
        }
        result.map_err(GuardError::Inner)
    }

    #[inline]
    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        let st = self.st;
        let key = self.key.take().unwrap_or_else(|| "?".to_owned());
        st.track.push(if self.is_struct {
            Segment::Field(key)
        } else {
            Segment::Key(key)
        });
        let result = self.inner.next_value_seed(GSeed { seed, st });
        if result.is_err() {
            st.track.capture();
        }
        st.track.pop();
        result.map_err(GuardError::Inner)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

struct GEnum<'s, A> {
    inner: A,
    st: &'s State,
    variants: &'static [&'static str],
}

impl<'s, 'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for GEnum<'s, A> {
    type Error = GuardError<A::Error>;
    type Variant = GVariant<'s, A::Variant>;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Self::Error> {
        let st = self.st;
        st.track.start_key();
        let result = self.inner.variant_seed(GSeed { seed, st });
        let raw = st.track.end_key().unwrap_or_else(|| "?".to_owned());
        // Compact formats name variants by index; map it back to the name.
        let named = raw
            .parse::<usize>()
            .ok()
            .and_then(|index| self.variants.get(index));
        let name = named.map_or(raw, |name| (*name).to_owned());
        if result.is_err() {
            st.track.capture();
        }
        let (value, inner) = result.map_err(GuardError::Inner)?;
        Ok((value, GVariant { inner, st, name }))
    }
}

pub(crate) struct GVariant<'s, A> {
    inner: A,
    st: &'s State,
    name: String,
}

impl<A> GVariant<'_, A> {
    /// Runs `f` with the variant's segment on the path.
    #[inline]
    fn within<T, E>(self, f: impl FnOnce(A, &State) -> Result<T, E>) -> Result<T, GuardError<E>> {
        let st = self.st;
        st.track.push(Segment::Variant(self.name));
        let result = f(self.inner, st);
        if result.is_err() {
            st.track.capture();
        }
        st.track.pop();
        result.map_err(GuardError::Inner)
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for GVariant<'_, A> {
    type Error = GuardError<A::Error>;

    fn unit_variant(self) -> Result<(), Self::Error> {
        self.inner.unit_variant().map_err(GuardError::Inner)
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        self.within(|inner, st| inner.newtype_variant_seed(GSeed { seed, st }))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.within(|inner, st| {
            let visitor = GVisitor {
                visitor,
                st,
                ctx: Ctx::Plain,
            };
            inner.tuple_variant(len, visitor)
        })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.within(|inner, st| {
            let visitor = GVisitor {
                visitor,
                st,
                ctx: Ctx::Struct(fields),
            };
            inner.struct_variant(fields, visitor)
        })
    }
}

impl State {
    /// The failure report of a tracked run: path, innermost message, and
    /// whether the depth limit was hit.
    pub(crate) fn into_report(self) -> Report {
        Report {
            path: self.track.into_path(),
            message: self.message.into_inner(),
            tripped: self.tripped.get(),
        }
    }
}

/// What a failure-path run found out.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) path: Vec<Segment>,
    pub(crate) message: Option<String>,
    pub(crate) tripped: bool,
}
