//! Shared test types and strategies.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) enum Shape {
    Unit,
    Tuple(i32, String),
    Struct { w: u32, h: Option<u64> },
    Nested(Box<Inner>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Inner {
    pub(super) name: String,
    pub(super) flag: bool,
    pub(super) ratio: f64,
    pub(super) bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Outer {
    pub(super) id: u64,
    pub(super) signed: i64,
    pub(super) label: Option<String>,
    pub(super) inner: Inner,
    pub(super) shapes: Vec<Shape>,
    pub(super) by_id: HashMap<u32, String>,
    pub(super) by_pair: BTreeMap<(i16, bool), Vec<i8>>,
    pub(super) by_shape: BTreeMap<String, Shape>,
    pub(super) chars: Vec<char>,
    pub(super) tuple: (u8, i128, Option<bool>),
}

pub(super) fn inner() -> impl Strategy<Value = Inner> {
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

pub(super) fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Unit),
        (any::<i32>(), any::<String>()).prop_map(|(a, b)| Shape::Tuple(a, b)),
        (any::<u32>(), any::<Option<u64>>()).prop_map(|(w, h)| Shape::Struct { w, h }),
        inner().prop_map(|i| Shape::Nested(Box::new(i))),
    ]
}

pub(super) fn outer() -> impl Strategy<Value = Outer> {
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
pub(super) enum Tree {
    Leaf,
    Node(Box<Tree>),
}

impl Tree {
    /// A chain of `depth` nodes, built without recursion.
    pub(super) fn chain(depth: usize) -> Self {
        let mut tree = Tree::Leaf;
        for _ in 0..depth {
            tree = Tree::Node(Box::new(tree));
        }
        tree
    }

    /// Drops a deep chain without recursing.
    pub(super) fn dismantle(mut self) {
        while let Tree::Node(next) = self {
            self = *next;
        }
    }
}
