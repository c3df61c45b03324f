//! Hostile input: random bytes, truncations, inflated lengths, deep nesting.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::types::{Outer, Tree, outer};
use crate::bounded::Bounded;
use crate::envelope::Envelope;
use crate::guard::{Guard, State};
use crate::{CerealError, External, Internal, Limits};

/// Wraps a hand-made CBOR payload in a valid envelope for `T`.
pub(super) fn external_bytes<T>(payload: Vec<u8>) -> Vec<u8> {
    let envelope = Envelope {
        format_version: 1,
        type_name: std::any::type_name::<T>().to_owned(),
        payload_encoding: "cbor".to_owned(),
        payload,
    };
    let mut out = b"SKCE".to_vec();
    out.extend(prost::Message::encode_to_vec(&envelope));
    out
}

fn postcard_varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

fn assert_internal_failure(err: &CerealError) {
    assert!(
        matches!(
            err,
            CerealError::Deserialize { .. }
                | CerealError::TrailingBytes { .. }
                | CerealError::DepthLimit { .. }
        ),
        "unexpected internal error: {err:?}"
    );
}

fn assert_external_failure(err: &CerealError) {
    assert!(
        matches!(
            err,
            CerealError::BadMagic { .. }
                | CerealError::Envelope { .. }
                | CerealError::UnsupportedVersion { .. }
                | CerealError::PayloadEncoding { .. }
                | CerealError::TypeMismatch { .. }
                | CerealError::Deserialize { .. }
                | CerealError::TrailingBytes { .. }
                | CerealError::DepthLimit { .. }
        ),
        "unexpected external error: {err:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in any::<Vec<u8>>()) {
        if let Err(err) = Internal::decode::<Outer>(&bytes) {
            assert_internal_failure(&err);
        }
        if let Err(err) = External::decode::<Outer>(&bytes) {
            assert_external_failure(&err);
        }
        let mut magic = b"SKCE".to_vec();
        magic.extend(&bytes);
        match External::decode::<Outer>(&magic) {
            Err(err) => assert_external_failure(&err),
            Ok(_) => prop_assert!(false, "random envelope decoded"),
        }
        // Random CBOR payloads inside a valid envelope.
        let wrapped = external_bytes::<Outer>(bytes);
        if let Err(err) = External::decode::<Outer>(&wrapped) {
            assert_external_failure(&err);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn every_truncation_is_a_typed_error(value in outer()) {
        let bytes = Internal::encode(&value).unwrap();
        for end in 0..bytes.len() {
            let err = Internal::decode::<Outer>(&bytes[..end]).unwrap_err();
            prop_assert!(matches!(err, CerealError::Deserialize { .. }), "{:?}", err);
        }
        let bytes = External::encode(&value).unwrap();
        for end in 0..bytes.len() {
            let err = External::decode::<Outer>(&bytes[..end]).unwrap_err();
            assert_external_failure(&err);
        }
    }

    #[test]
    fn fast_and_tracking_decoders_trip_at_the_same_depth(outer in outer(), len in 0_usize..3) {
        let value = (outer, Newtype(vec![Pair(1, Some(Unit)); len]));
        let bytes = Internal::encode(&value).unwrap();
        let mut accepted = None;
        for max_depth in 0..10 {
            let fast = decodes_fast::<(Outer, Newtype)>(&bytes, max_depth);
            let tracked = decodes_tracked::<(Outer, Newtype)>(&bytes, max_depth);
            prop_assert_eq!(fast, tracked, "max_depth {}", max_depth);
            let limits = Limits::default().with_max_depth(max_depth);
            match Internal::decode_with::<(Outer, Newtype)>(&bytes, &limits) {
                Ok(back) => {
                    prop_assert!(fast);
                    prop_assert_eq!(&back, &value);
                    accepted.get_or_insert(max_depth);
                }
                Err(err) => {
                    prop_assert!(!fast);
                    let depth_limit = matches!(err, CerealError::DepthLimit { .. });
                    prop_assert!(depth_limit, "{:?}", err);
                    prop_assert!(accepted.is_none(), "a deeper limit refused what a shallower took");
                }
            }
        }
        prop_assert!(accepted.is_some(), "no limit under 10 accepted the value");
    }

    #[test]
    fn trailing_bytes_are_rejected(value in outer(), extra in 1_usize..4) {
        let mut bytes = Internal::encode(&value).unwrap();
        bytes.extend(std::iter::repeat_n(0, extra));
        let err = Internal::decode::<Outer>(&bytes).unwrap_err();
        let trailing = matches!(err, CerealError::TrailingBytes { count, .. } if count == extra);
        prop_assert!(trailing, "{:?}", err);
    }
}

#[test]
fn external_trailing_payload_bytes_are_rejected() {
    let mut payload = Vec::new();
    ciborium::into_writer(&5_u32, &mut payload).unwrap();
    payload.push(0);
    let err = External::decode::<u32>(&external_bytes::<u32>(payload)).unwrap_err();
    assert!(
        matches!(err, CerealError::TrailingBytes { count: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn input_longer_than_the_limit_is_rejected_before_parsing() {
    let limits = Limits::default().with_max_input_bytes(8);
    let err = External::decode_with::<u8>(&[0; 9], &limits).unwrap_err();
    assert!(matches!(
        err,
        CerealError::InputTooLarge { len: 9, max: 8, .. }
    ));
}

/// Declared lengths far beyond the input must fail fast, without reserving
/// the declared size (a 4 GiB or `u64::MAX` reservation would abort).
#[test]
fn inflated_internal_lengths_fail_without_allocating() {
    sk_testkit::hang_guard(Duration::from_secs(30), || {
        for declared in [u64::MAX, 1 << 32, u64::from(u32::MAX)] {
            let mut bytes = postcard_varint(declared);
            bytes.extend([1, b'a', 2, 3]);
            let errs = [
                Internal::decode::<Vec<u8>>(&bytes).unwrap_err(),
                Internal::decode::<serde_bytes::ByteBuf>(&bytes).unwrap_err(),
                Internal::decode::<Vec<String>>(&bytes).unwrap_err(),
                Internal::decode::<String>(&bytes).unwrap_err(),
                Internal::decode::<HashMap<u32, u32>>(&bytes).unwrap_err(),
                Internal::decode::<HashMap<String, Vec<u64>>>(&bytes).unwrap_err(),
            ];
            for err in errs {
                assert!(matches!(err, CerealError::Deserialize { .. }), "{err:?}");
            }
        }
    });
}

#[test]
fn inflated_external_lengths_fail_without_allocating() {
    sk_testkit::hang_guard(Duration::from_secs(30), || {
        for declared in [u64::MAX, 1 << 32] {
            // CBOR major types with a 64-bit length argument (additional info 27).
            let head = |major: u8| {
                let mut out = vec![(major << 5) | 27];
                out.extend(declared.to_be_bytes());
                out.extend([0x01, 0x61, b'a']);
                out
            };
            let decoded = [
                External::decode::<serde_bytes::ByteBuf>(&external_bytes::<serde_bytes::ByteBuf>(
                    head(2),
                ))
                .map(drop),
                External::decode::<String>(&external_bytes::<String>(head(3))).map(drop),
                External::decode::<Vec<u8>>(&external_bytes::<Vec<u8>>(head(4))).map(drop),
                External::decode::<Vec<String>>(&external_bytes::<Vec<String>>(head(4))).map(drop),
                External::decode::<HashMap<u32, u32>>(&external_bytes::<HashMap<u32, u32>>(head(
                    5,
                )))
                .map(drop),
            ];
            for result in decoded {
                let err = result.unwrap_err();
                assert!(matches!(err, CerealError::Deserialize { .. }), "{err:?}");
            }
        }
        // An envelope whose payload field declares 4 GiB.
        let mut bytes = b"SKCE".to_vec();
        bytes.extend([0x08, 0x01, 0x22]);
        bytes.extend(postcard_varint(1 << 32)); // protobuf varints use the same encoding
        bytes.extend([1, 2, 3]);
        let err = External::decode::<u8>(&bytes).unwrap_err();
        assert!(matches!(err, CerealError::Envelope { .. }), "{err:?}");
    });
}

#[test]
fn deep_nesting_hits_the_depth_limit_instead_of_the_stack() {
    sk_testkit::guarded(|| {
        // Internal: variant index 1 (`Node`) a million times, then `Leaf`.
        let mut bytes = vec![1_u8; 1_000_000];
        bytes.push(0);
        let err = Internal::decode::<Tree>(&bytes).unwrap_err();
        assert!(
            matches!(err, CerealError::DepthLimit { max_depth: 128, .. }),
            "{err:?}"
        );
        let path = err.path().unwrap();
        assert_eq!(path.segments().len(), 128, "{path}");
        assert!(
            path.to_string()
                .starts_with(r#"variant "Node" > variant "Node""#)
        );

        // External: {"Node": {"Node": ... "Leaf"}} a million levels deep.
        let mut payload = Vec::with_capacity(6_000_010);
        for _ in 0..1_000_000 {
            payload.extend([0xA1, 0x64, b'N', b'o', b'd', b'e']);
        }
        payload.extend([0x64, b'L', b'e', b'a', b'f']);
        let err = External::decode::<Tree>(&external_bytes::<Tree>(payload)).unwrap_err();
        assert!(
            matches!(err, CerealError::DepthLimit { max_depth: 128, .. }),
            "{err:?}"
        );
    });
}

#[test]
fn nesting_within_the_limit_round_trips() {
    sk_testkit::guarded(|| {
        for depth in [0, 1, 100] {
            let tree = Tree::chain(depth);
            let back: Tree = Internal::decode(&Internal::encode(&tree).unwrap()).unwrap();
            assert_eq!(back, tree);
            let back: Tree = External::decode(&External::encode(&tree).unwrap()).unwrap();
            assert_eq!(back, tree);
        }
        let tree = Tree::chain(300);
        let bytes = Internal::encode(&tree).unwrap();
        let limits = Limits::default().with_max_depth(400);
        let back: Tree = Internal::decode_with(&bytes, &limits).unwrap();
        assert_eq!(back, tree);
        back.dismantle();
        tree.dismantle();
    });
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Pair(u8, Option<Unit>);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Newtype(Vec<Pair>);

/// Whether the fast-path decoder accepts `bytes` under `max_depth`.
fn decodes_fast<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> bool {
    let mut de = postcard::Deserializer::from_bytes(bytes);
    T::deserialize(Bounded::new(&mut de, max_depth)).is_ok()
}

/// Whether the path-tracking decoder accepts `bytes` under `max_depth`.
fn decodes_tracked<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> bool {
    let state = State::new(max_depth);
    let mut de = postcard::Deserializer::from_bytes(bytes);
    T::deserialize(Guard::new(&mut de, &state)).is_ok()
}
