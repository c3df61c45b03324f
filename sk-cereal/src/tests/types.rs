//! Shared test types and strategies.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Shape {
    Unit,
    Tuple(i32, String),
    Struct { w: u32, h: Option<u64> },
    Nested(Box<Inner>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inner {
    pub name: String,
    pub flag: bool,
    pub ratio: f64,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outer {
    pub id: u64,
    pub signed: i64,
    pub label: Option<String>,
    pub inner: Inner,
    pub shapes: Vec<Shape>,
    pub by_id: HashMap<u32, String>,
    pub by_pair: BTreeMap<(i16, bool), Vec<i8>>,
    pub by_shape: BTreeMap<String, Shape>,
    pub chars: Vec<char>,
    pub tuple: (u8, i128, Option<bool>),
}

pub fn inner() -> impl Strategy<Value = Inner> {
    (
        any::<String>(),
        any::<bool>(),
        any::<f64>().prop_filter("nan never equals itself", |f| !f.is_nan()),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(name, flag, ratio, bytes)| Inner {
            name,
            flag,
            ratio,
            bytes,
        })
}

pub fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Unit),
        (any::<i32>(), any::<String>()).prop_map(|(a, b)| Shape::Tuple(a, b)),
        (any::<u32>(), any::<Option<u64>>()).prop_map(|(w, h)| Shape::Struct { w, h }),
        inner().prop_map(|i| Shape::Nested(Box::new(i))),
    ]
}

pub fn outer() -> impl Strategy<Value = Outer> {
    (
        (any::<u64>(), any::<i64>(), any::<Option<String>>(), inner()),
        proptest::collection::vec(shape(), 0..8),
        proptest::collection::hash_map(any::<u32>(), any::<String>(), 0..8),
        proptest::collection::btree_map(
            any::<(i16, bool)>(),
            proptest::collection::vec(any::<i8>(), 0..4),
            0..6,
        ),
        proptest::collection::btree_map(any::<String>(), shape(), 0..4),
        proptest::collection::vec(any::<char>(), 0..8),
        any::<(u8, i128, Option<bool>)>(),
    )
        .prop_map(
            |((id, signed, label, inner), shapes, by_id, by_pair, by_shape, chars, tuple)| Outer {
                id,
                signed,
                label,
                inner,
                shapes,
                by_id,
                by_pair,
                by_shape,
                chars,
                tuple,
            },
        )
}

/// A recursive type for depth tests.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum Tree {
    Leaf,
    Node(Box<Tree>),
}

impl Tree {
    /// A chain of `depth` nodes, built without recursion.
    pub fn chain(depth: usize) -> Self {
        let mut tree = Tree::Leaf;
        for _ in 0..depth {
            tree = Tree::Node(Box::new(tree));
        }
        tree
    }

    /// Drops a deep chain without recursing.
    pub fn dismantle(mut self) {
        while let Tree::Node(next) = self {
            self = *next;
        }
    }
}
