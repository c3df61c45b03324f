//! The fast-path `Deserializer` wrapper: bounds nesting depth, nothing else.
//!
//! [`Internal`](crate::Internal) decodes through [`Bounded`] first. It keeps
//! the wrapped format's own error type and carries the remaining depth budget
//! by value, so a successful decode pays one compare per compound value and
//! no error conversion. Any failure, a depth-limit trip included, is
//! explained by decoding again through the path-tracking
//! [`Guard`](crate::guard::Guard), which counts the same levels (see its
//! `forward_nested!` and `nested` uses) and therefore trips at the same place.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

/// A deserializer that fails once values nest deeper than its budget.
///
/// Struct, enum, sequence, map, tuple, tuple struct, newtype struct and option
/// levels (and `deserialize_any`/`deserialize_ignored_any`) each take one
/// level, exactly as in [`Guard`](crate::guard::Guard).
pub(crate) struct Bounded<D> {
    inner: D,
    depth_left: usize,
}

impl<D> Bounded<D> {
    pub(crate) fn new(inner: D, max_depth: usize) -> Self {
        Self {
            inner,
            depth_left: max_depth,
        }
    }
}

/// The error of a depth-limit trip; its text is never shown, because the
/// failure path decodes again and reports [`CerealError::DepthLimit`](crate::CerealError::DepthLimit).
#[cold]
#[inline(never)]
fn too_deep<E: de::Error>() -> E {
    E::custom("nesting too deep")
}

/// Takes one level off `depth_left`, failing when none is left.
#[inline(always)]
fn descend<E: de::Error>(depth_left: usize) -> Result<usize, E> {
    match depth_left.checked_sub(1) {
        Some(left) => Ok(left),
        None => Err(too_deep()),
    }
}

/// Wraps a visitor so that whatever it deserializes next stays bounded.
struct Level<V> {
    visitor: V,
    depth_left: usize,
}

/// Wraps a seed so that the value it deserializes stays bounded.
struct Seed<S> {
    seed: S,
    depth_left: usize,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.seed
            .deserialize(Bounded::new(deserializer, self.depth_left))
    }
}

macro_rules! forward_flat {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let depth_left = self.depth_left;
            self.inner.$method(Level { visitor, depth_left })
        }
    )*};
}

macro_rules! forward_nested {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let depth_left = descend(self.depth_left)?;
            self.inner.$method(Level { visitor, depth_left })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<D> {
    type Error = D::Error;

    forward_flat! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier
    }

    forward_nested! {
        deserialize_any deserialize_option deserialize_seq deserialize_map deserialize_ignored_any
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let depth_left = self.depth_left;
        self.inner.deserialize_unit_struct(
            name,
            Level {
                visitor,
                depth_left,
            },
        )
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let depth_left = descend(self.depth_left)?;
        self.inner.deserialize_newtype_struct(
            name,
            Level {
                visitor,
                depth_left,
            },
        )
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let depth_left = descend(self.depth_left)?;
        self.inner.deserialize_tuple(
            len,
            Level {
                visitor,
                depth_left,
            },
        )
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let depth_left = descend(self.depth_left)?;
        self.inner.deserialize_tuple_struct(
            name,
            len,
            Level {
                visitor,
                depth_left,
            },
        )
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let depth_left = descend(self.depth_left)?;
        self.inner.deserialize_struct(
            name,
            fields,
            Level {
                visitor,
                depth_left,
            },
        )
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let depth_left = descend(self.depth_left)?;
        self.inner.deserialize_enum(
            name,
            variants,
            Level {
                visitor,
                depth_left,
            },
        )
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! visit_flat {
    ($($method:ident: $ty:ty)*) => {$(
        #[inline]
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.visitor.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Level<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    visit_flat! {
        visit_bool: bool visit_i8: i8 visit_i16: i16 visit_i32: i32 visit_i64: i64
        visit_i128: i128 visit_u8: u8 visit_u16: u16 visit_u32: u32 visit_u64: u64
        visit_u128: u128 visit_f32: f32 visit_f64: f64 visit_char: char visit_str: &str
        visit_borrowed_str: &'de str visit_string: String visit_bytes: &[u8]
        visit_borrowed_bytes: &'de [u8] visit_byte_buf: Vec<u8>
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visitor.visit_none()
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visitor.visit_unit()
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.visitor.visit_some(Bounded::new(d, self.depth_left))
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.visitor
            .visit_newtype_struct(Bounded::new(d, self.depth_left))
    }

    #[inline]
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.visitor.visit_seq(Access {
            inner: seq,
            depth_left: self.depth_left,
        })
    }

    #[inline]
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.visitor.visit_map(Access {
            inner: map,
            depth_left: self.depth_left,
        })
    }

    #[inline]
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.visitor.visit_enum(Access {
            inner: data,
            depth_left: self.depth_left,
        })
    }
}

/// Wraps a sequence, map, enum or variant access so that the values it hands
/// out stay bounded (they are one level below the compound, already counted).
struct Access<A> {
    inner: A,
    depth_left: usize,
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let depth_left = self.depth_left;
        self.inner.next_element_seed(Seed { seed, depth_left })
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let depth_left = self.depth_left;
        self.inner.next_key_seed(Seed { seed, depth_left })
    }

    #[inline]
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let depth_left = self.depth_left;
        self.inner.next_value_seed(Seed { seed, depth_left })
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<A> {
    type Error = A::Error;
    type Variant = Access<A::Variant>;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let depth_left = self.depth_left;
        let (value, inner) = self.inner.variant_seed(Seed { seed, depth_left })?;
        Ok((value, Access { inner, depth_left }))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<A> {
    type Error = A::Error;

    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let depth_left = self.depth_left;
        self.inner.newtype_variant_seed(Seed { seed, depth_left })
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let depth_left = self.depth_left;
        self.inner.tuple_variant(
            len,
            Level {
                visitor,
                depth_left,
            },
        )
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let depth_left = self.depth_left;
        self.inner.struct_variant(
            fields,
            Level {
                visitor,
                depth_left,
            },
        )
    }
}
