//! Round trips through both formats.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::types::{Outer, outer};
use crate::{External, Format, Internal};

fn round_trip<F: Format, T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let bytes = F::encode(value).unwrap();
    F::decode(&bytes).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn nested_values_round_trip_internally(value in outer()) {
        prop_assert_eq!(round_trip::<Internal, Outer>(&value), value);
    }

    #[test]
    fn nested_values_round_trip_externally(value in outer()) {
        prop_assert_eq!(round_trip::<External, Outer>(&value), value);
    }

    #[test]
    fn encode_into_appends_the_same_bytes(value in outer(), prefix in any::<Vec<u8>>()) {
        let mut out = prefix.clone();
        Internal::encode_into(&value, &mut out).unwrap();
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&out[prefix.len()..], &Internal::encode(&value).unwrap()[..]);
    }

    #[test]
    fn strings_and_maps_round_trip(
        text in any::<String>(),
        map in proptest::collection::hash_map(any::<i64>(), any::<Option<String>>(), 0..32),
        tree in proptest::collection::btree_map(any::<char>(), any::<u128>(), 0..32),
    ) {
        let value = (text, map, tree);
        prop_assert_eq!(round_trip::<Internal, _>(&value), value.clone());
        prop_assert_eq!(round_trip::<External, _>(&value), value);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn large_vectors_round_trip(len in 50_000_usize..100_000, seed in any::<u32>()) {
        let value: Vec<u32> = (0..len as u32).map(|i| i.wrapping_mul(seed)).collect();
        prop_assert_eq!(round_trip::<Internal, Vec<u32>>(&value), value.clone());
        prop_assert_eq!(round_trip::<External, Vec<u32>>(&value), value);
    }
}

#[test]
fn byte_buffers_and_unusual_keys_round_trip() {
    let bytes = serde_bytes::ByteBuf::from(vec![7_u8; 1 << 16]);
    assert_eq!(round_trip::<Internal, serde_bytes::ByteBuf>(&bytes), bytes);
    assert_eq!(round_trip::<External, serde_bytes::ByteBuf>(&bytes), bytes);

    let map: HashMap<Option<u8>, BTreeMap<i32, ()>> = HashMap::from([
        (None, BTreeMap::new()),
        (Some(3), BTreeMap::from([(-1, ())])),
    ]);
    assert_eq!(round_trip::<Internal, _>(&map), map);
    assert_eq!(round_trip::<External, _>(&map), map);
}
