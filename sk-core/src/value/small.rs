//! Small values held inline in a [`Value`](super::Value): the primitive
//! types up to 64 bits (integers, floats, `bool`, `char`) without a box,
//! so that a part returning a number allocates nothing for it (128-bit
//! integers would double a value's size, and are boxed). Told apart by
//! their `TypeId`, which a build resolves at compile time.

use std::any::Any;

use super::{Erased, Serializable};

/// Moves `value` out as a `U` if it is one.
fn cast<T: 'static, U: 'static>(value: T) -> Result<U, T> {
    let mut slot = Some(value);
    let taken = (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take);
    match (taken, slot) {
        (Some(u), _) => Ok(u),
        (None, Some(t)) => Err(t),
        // The slot is emptied only when the value was taken as a `U`.
        (None, None) => unreachable!("a value taken is a value moved out"),
    }
}

macro_rules! small {
    ($($variant:ident: $ty:ty),* $(,)?) => {
        /// A value of a primitive type, inline.
        pub(super) enum Small {
            $($variant(Serializable<$ty>),)*
        }

        impl Small {
            /// `value` inline if its type is one of the primitive
            /// types; back otherwise.
            #[inline]
            pub(super) fn new<T: 'static>(value: T) -> Result<Small, T> {
                $(
                    let value = match cast::<T, $ty>(value) {
                        Ok(v) => return Ok(Small::$variant(Serializable(v))),
                        Err(value) => value,
                    };
                )*
                Err(value)
            }

            /// The value behind the same interface as a boxed one.
            pub(super) fn erased(&self) -> &dyn Erased {
                match self {
                    $(Small::$variant(v) => v,)*
                }
            }

            /// Moves the value out as a `T`; back if it is not one.
            pub(super) fn downcast<T: 'static>(self) -> Result<T, Small> {
                match self {
                    $(Small::$variant(Serializable(v)) => {
                        cast::<$ty, T>(v).map_err(|v| Small::$variant(Serializable(v)))
                    })*
                }
            }
        }
    };
}

small! {
    Bool: bool,
    Char: char,
    U8: u8,
    U16: u16,
    U32: u32,
    U64: u64,
    Usize: usize,
    I8: i8,
    I16: i16,
    I32: i32,
    I64: i64,
    Isize: isize,
    F32: f32,
    F64: f64,
}
