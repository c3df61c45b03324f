//! A `Serializer` wrapper that records the path of the value that failed.
//!
//! Used only after a plain serialization has already failed: serialization is
//! deterministic, so running again through this wrapper fails at the same
//! value and names it.

use std::cell::RefCell;

use serde::ser::{self, Serialize, Serializer};

use crate::guard::{GuardError, PathTrack};
use crate::path::Segment;

/// Failure-path state: the path tracker and the innermost custom message.
#[derive(Default)]
pub(crate) struct SerState {
    pub(crate) track: PathTrack,
    message: RefCell<Option<String>>,
}

impl SerState {
    pub(crate) fn take_message(&self) -> Option<String> {
        self.message.borrow_mut().take()
    }

    fn lower<E: ser::Error>(&self, err: GuardError<E>) -> E {
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

    /// Runs `f` with `segment` on the path, capturing the path on failure.
    fn within<T, E>(
        &self,
        segment: Option<Segment>,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let pushed = segment.is_some();
        if let Some(segment) = segment {
            self.track.push(segment);
        }
        let result = f();
        if result.is_err() {
            self.track.capture();
        }
        if pushed {
            self.track.pop();
        }
        result
    }
}

/// A value serialized through [`PathSer`].
pub(crate) struct Tracked<'a, T: ?Sized> {
    pub(crate) value: &'a T,
    pub(crate) st: &'a SerState,
}

impl<T: Serialize + ?Sized> Serialize for Tracked<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let st = self.st;
        self.value
            .serialize(PathSer {
                inner: serializer,
                st,
            })
            .map_err(|err| st.lower(err))
    }
}

struct PathSer<'a, S> {
    inner: S,
    st: &'a SerState,
}

macro_rules! scalar {
    ($($method:ident: $ty:ty)*) => {$(
        fn $method(self, v: $ty) -> Result<S::Ok, Self::Error> {
            self.st.track.note_scalar(&|| v.to_string());
            self.inner.$method(v).map_err(GuardError::Inner)
        }
    )*};
}

impl<'a, S: Serializer> Serializer for PathSer<'a, S> {
    type Ok = S::Ok;
    type Error = GuardError<S::Error>;
    type SerializeSeq = Compound<'a, S::SerializeSeq>;
    type SerializeTuple = Compound<'a, S::SerializeTuple>;
    type SerializeTupleStruct = Compound<'a, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<'a, S::SerializeTupleVariant>;
    type SerializeMap = Compound<'a, S::SerializeMap>;
    type SerializeStruct = Compound<'a, S::SerializeStruct>;
    type SerializeStructVariant = Compound<'a, S::SerializeStructVariant>;

    scalar! {
        serialize_bool: bool serialize_i8: i8 serialize_i16: i16 serialize_i32: i32
        serialize_i64: i64 serialize_i128: i128 serialize_u8: u8 serialize_u16: u16
        serialize_u32: u32 serialize_u64: u64 serialize_u128: u128 serialize_f32: f32
        serialize_f64: f64 serialize_char: char serialize_str: &str
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, Self::Error> {
        self.inner.serialize_bytes(v).map_err(GuardError::Inner)
    }

    fn serialize_none(self) -> Result<S::Ok, Self::Error> {
        self.inner.serialize_none().map_err(GuardError::Inner)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, Self::Error> {
        let st = self.st;
        self.inner
            .serialize_some(&Tracked { value, st })
            .map_err(GuardError::Inner)
    }

    fn serialize_unit(self) -> Result<S::Ok, Self::Error> {
        self.inner.serialize_unit().map_err(GuardError::Inner)
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, Self::Error> {
        self.inner
            .serialize_unit_struct(name)
            .map_err(GuardError::Inner)
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, Self::Error> {
        self.st.track.note_scalar(&|| variant.to_owned());
        self.inner
            .serialize_unit_variant(name, index, variant)
            .map_err(GuardError::Inner)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, Self::Error> {
        let st = self.st;
        self.inner
            .serialize_newtype_struct(name, &Tracked { value, st })
            .map_err(GuardError::Inner)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, Self::Error> {
        let (st, inner) = (self.st, self.inner);
        st.within(Some(Segment::Variant(variant.to_owned())), || {
            inner.serialize_newtype_variant(name, index, variant, &Tracked { value, st })
        })
        .map_err(GuardError::Inner)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        let inner = self.inner.serialize_seq(len).map_err(GuardError::Inner)?;
        Ok(Compound::new(inner, self.st, None))
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Self::Error> {
        let inner = self.inner.serialize_tuple(len).map_err(GuardError::Inner)?;
        Ok(Compound::new(inner, self.st, None))
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        let inner = self
            .inner
            .serialize_tuple_struct(name, len)
            .map_err(GuardError::Inner)?;
        Ok(Compound::new(inner, self.st, None))
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        let inner = self
            .inner
            .serialize_tuple_variant(name, index, variant, len)
            .map_err(GuardError::Inner)?;
        Ok(Compound::new(inner, self.st, Some(variant)))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        let inner = self.inner.serialize_map(len).map_err(GuardError::Inner)?;
        Ok(Compound::new(inner, self.st, None))
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        let inner = self
            .inner
            .serialize_struct(name, len)
            .map_err(GuardError::Inner)?;
        Ok(Compound::new(inner, self.st, None))
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        let inner = self
            .inner
            .serialize_struct_variant(name, index, variant, len)
            .map_err(GuardError::Inner)?;
        Ok(Compound::new(inner, self.st, Some(variant)))
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Every compound serializer, wrapped: names each element on the path.
pub(crate) struct Compound<'a, C> {
    inner: C,
    st: &'a SerState,
    variant: Option<&'static str>,
    index: usize,
    key: Option<String>,
}

impl<'a, C> Compound<'a, C> {
    fn new(inner: C, st: &'a SerState, variant: Option<&'static str>) -> Self {
        Self {
            inner,
            st,
            variant,
            index: 0,
            key: None,
        }
    }

    /// Runs `f` with the variant (if any) and `segment` on the path.
    fn element<E>(
        &mut self,
        segment: Segment,
        f: impl FnOnce(&mut C, &'a SerState) -> Result<(), E>,
    ) -> Result<(), GuardError<E>> {
        let st = self.st;
        let variant = self.variant.map(|v| Segment::Variant(v.to_owned()));
        let inner = &mut self.inner;
        st.within(variant, || st.within(Some(segment), || f(inner, st)))
            .map_err(GuardError::Inner)
    }

    fn next_index(&mut self) -> Segment {
        let segment = Segment::Index(self.index);
        self.index += 1;
        segment
    }
}

macro_rules! seq_like {
    ($($trait:ident :: $method:ident),*) => {$(
        impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = GuardError<C::Error>;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
                let segment = self.next_index();
                self.element(segment, |inner, st| inner.$method(&Tracked { value, st }))
            }

            fn end(self) -> Result<C::Ok, Self::Error> {
                self.inner.end().map_err(GuardError::Inner)
            }
        }
    )*};
}

seq_like! {
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
}

macro_rules! struct_like {
    ($($trait:ident),*) => {$(
        impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = GuardError<C::Error>;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Self::Error> {
                let segment = Segment::Field(key.to_owned());
                self.element(segment, |inner, st| inner.serialize_field(key, &Tracked { value, st }))
            }

            fn skip_field(&mut self, key: &'static str) -> Result<(), Self::Error> {
                self.inner.skip_field(key).map_err(GuardError::Inner)
            }

            fn end(self) -> Result<C::Ok, Self::Error> {
                self.inner.end().map_err(GuardError::Inner)
            }
        }
    )*};
}

struct_like!(SerializeStruct, SerializeStructVariant);

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = GuardError<C::Error>;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Self::Error> {
        let st = self.st;
        st.track.start_key();
        let result = st.within(None, || {
            self.inner.serialize_key(&Tracked { value: key, st })
        });
        self.key = st.track.end_key();
        result.map_err(GuardError::Inner)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        let key = self.key.take().unwrap_or_else(|| "?".to_owned());
        self.element(Segment::Key(key), |inner, st| {
            inner.serialize_value(&Tracked { value, st })
        })
    }

    fn end(self) -> Result<C::Ok, Self::Error> {
        self.inner.end().map_err(GuardError::Inner)
    }
}
