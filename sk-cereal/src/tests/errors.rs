//! Error paths, envelope checks and the wire fixture.

use std::collections::BTreeMap;

use serde::ser::Error as _;
use serde::{Deserialize, Serialize, Serializer};

use super::hostile::external_bytes;
use crate::envelope::Envelope;
use crate::{CerealError, External, Format, Internal, Segment};

/// A value that refuses to serialize.
#[derive(Debug)]
struct Negative;

impl Serialize for Negative {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(S::Error::custom("width must be positive"))
    }
}

#[derive(Serialize)]
struct Dims {
    h: u32,
    w: Negative,
}

#[derive(Serialize)]
struct Resize {
    name: &'static str,
    inner: Dims,
}

fn check_serialize_error<F: Format>() {
    let value = Resize {
        name: "r",
        inner: Dims { h: 1, w: Negative },
    };
    let err = F::encode(&value).unwrap_err();
    assert!(matches!(err, CerealError::Serialize { .. }), "{err:?}");
    assert_eq!(
        err.path().unwrap().to_string(),
        r#"field "inner" > field "w""#
    );

    let err = F::encode(&value.inner)
        .unwrap_err()
        .with_context(Segment::arg("size"));
    assert_eq!(
        err.to_string(),
        format!(
            r#"cannot serialize value at arg "size" > field "w" ({} format)"#,
            F::NAME
        )
    );
    // The reason is the error's source, said once.
    let reason = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(reason.as_deref(), Some("width must be positive"));
    sk_testkit::assert_chain_says_each_thing_once(&err);
    let err = err.with_context(Segment::context("function", "resize"));
    assert_eq!(
        err.path().unwrap().to_string(),
        r#"function "resize" > arg "size" > field "w""#
    );
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.to_string(), "width must be positive");
}

#[test]
fn serialize_errors_name_the_failing_field() {
    check_serialize_error::<Internal>();
    check_serialize_error::<External>();
    let mut out = vec![9];
    assert!(Internal::encode_into(&Dims { h: 1, w: Negative }, &mut out).is_err());
    assert_eq!(out, [9], "a failed encode_into leaves the buffer as it was");
}

#[test]
fn serialize_errors_name_keys_indices_and_variants() {
    #[derive(Serialize)]
    enum Op {
        Scale { factors: Vec<Negative> },
    }
    let mut map = BTreeMap::new();
    map.insert(
        "k",
        vec![Op::Scale {
            factors: vec![Negative],
        }],
    );
    for err in [
        Internal::encode(&map).unwrap_err(),
        External::encode(&map).unwrap_err(),
    ] {
        assert_eq!(
            err.path().unwrap().to_string(),
            r#"key "k" > index 0 > variant "Scale" > field "factors" > index 0"#
        );
    }
}

/// Serializes as a bare bool or a bare integer, in both formats.
#[derive(Serialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Int(u8),
}

#[derive(Serialize)]
struct WireItem {
    flag: Flag,
}

#[derive(Serialize)]
enum WireKind {
    A(WireItem),
}

#[derive(Serialize)]
struct Wire {
    id: u32,
    items: Vec<WireItem>,
    by_name: BTreeMap<String, WireKind>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Item {
    flag: bool,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
enum Kind {
    A(Item),
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Doc {
    id: u32,
    items: Vec<Item>,
    by_name: BTreeMap<String, Kind>,
}

fn wire(bad_item: Option<usize>) -> Wire {
    let items = (0..5)
        .map(|i| WireItem {
            flag: if Some(i) == bad_item {
                Flag::Int(2)
            } else {
                Flag::Bool(true)
            },
        })
        .collect();
    let flag = if bad_item.is_none() {
        Flag::Int(7)
    } else {
        Flag::Bool(false)
    };
    Wire {
        id: 1,
        items,
        by_name: BTreeMap::from([("k".to_owned(), WireKind::A(WireItem { flag }))]),
    }
}

#[test]
fn deserialize_errors_name_the_failing_value() {
    let bytes = Internal::encode(&wire(Some(3))).unwrap();
    let err = Internal::decode::<Doc>(&bytes).unwrap_err();
    assert!(matches!(err, CerealError::Deserialize { .. }), "{err:?}");
    assert_eq!(
        err.path().unwrap().to_string(),
        r#"field "items" > index 3 > field "flag""#
    );

    let bytes = Internal::encode(&wire(None)).unwrap();
    let err = Internal::decode::<Doc>(&bytes).unwrap_err();
    assert_eq!(
        err.path().unwrap().to_string(),
        r#"field "by_name" > key "k" > variant "A" > field "flag""#
    );

    // CBOR carries the integer 2 where a bool belongs: serde's message survives.
    let bytes = External::encode_named(&wire(Some(3)), "doc").unwrap();
    let err = External::decode_named::<Doc>(&bytes, "doc").unwrap_err();
    assert!(matches!(err, CerealError::Deserialize { .. }), "{err:?}");
    assert_eq!(
        err.path().unwrap().to_string(),
        r#"field "items" > index 3 > field "flag""#
    );
    let reason = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("expected bool")),
        "{reason:?}"
    );
    sk_testkit::assert_chain_says_each_thing_once(&err);

    let bytes = External::encode_named(&wire(None), "doc").unwrap();
    let err = External::decode_named::<Doc>(&bytes, "doc").unwrap_err();
    assert_eq!(
        err.path().unwrap().to_string(),
        r#"field "by_name" > key "k" > variant "A" > field "flag""#
    );
}

#[test]
fn wrong_type_name_names_both_types() {
    let bytes = External::encode(&5_u32).unwrap();
    let err = External::decode::<String>(&bytes).unwrap_err();
    assert!(matches!(err, CerealError::TypeMismatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(r#"expected "alloc::string::String""#),
        "{text}"
    );
    assert!(text.contains(r#"found "u32""#), "{text}");
}

fn envelope(version: u32, encoding: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    ciborium::into_writer(&5_u32, &mut payload).unwrap();
    let envelope = Envelope {
        format_version: version,
        type_name: "u32".to_owned(),
        payload_encoding: encoding.to_owned(),
        payload,
    };
    let mut out = b"SKCE".to_vec();
    out.extend(prost::Message::encode_to_vec(&envelope));
    out
}

#[test]
fn newer_versions_and_other_encodings_are_refused() {
    let err = External::decode::<u32>(&envelope(2, "cbor")).unwrap_err();
    assert!(matches!(
        err,
        CerealError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    ));
    let text = err.to_string();
    assert!(
        text.contains("version 2") && text.contains("version 1"),
        "{text}"
    );
    assert!(External::inspect(&envelope(2, "cbor")).is_err());

    let err = External::decode::<u32>(&envelope(1, "json")).unwrap_err();
    assert!(matches!(err, CerealError::PayloadEncoding { ref found } if found == "json"));
    assert_eq!(External::decode::<u32>(&envelope(1, "cbor")).unwrap(), 5);
}

#[test]
fn bad_magic_is_named() {
    let err = External::decode::<u32>(b"JSON{}").unwrap_err();
    assert!(matches!(err, CerealError::BadMagic { ref found } if found == b"JSON"));
    assert_eq!(
        err.to_string(),
        r#"not external-format bytes: expected magic b"SKCE", found b"JSON""#
    );
    let internal = Internal::encode(&5_u32).unwrap();
    assert!(matches!(
        External::decode::<u32>(&internal),
        Err(CerealError::BadMagic { .. })
    ));
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Fixture {
    name: String,
    size: (u32, u32),
    tags: Vec<String>,
    scale: Option<f64>,
    mode: Mode,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Mode {
    Fit,
    Crop { margin: i8 },
}

fn fixture() -> Fixture {
    Fixture {
        name: "résumé".to_owned(),
        size: (640, 480),
        tags: vec!["a".to_owned(), "b".to_owned()],
        scale: Some(0.5),
        mode: Mode::Crop { margin: -2 },
    }
}

/// The external bytes of [`fixture`] under the name `sk.Fixture`, checked in
/// so a change to the wire format cannot go unnoticed.
const FIXTURE_HEX: &str = "534b43450801120a736b2e466978747572651a0463626f722242a5646e616d656872c3a973756dc3a96473697a65821902801901e064746167738261616162657363616c65f93800646d6f6465a16443726f70a1666d617267696e21";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn checked_in_fixture_decodes_and_re_encodes_identically() {
    let encoded = External::encode_named(&fixture(), "sk.Fixture").unwrap();
    assert_eq!(hex(&encoded), FIXTURE_HEX, "wire format changed");
    let bytes = unhex(FIXTURE_HEX);
    let info = External::inspect(&bytes).unwrap();
    assert_eq!(info.format_version, 1);
    assert_eq!(info.type_name, "sk.Fixture");
    assert_eq!(info.payload_encoding, "cbor");
    assert_eq!(info.payload_len, 0x42);
    let back: Fixture = External::decode_named(&bytes, "sk.Fixture").unwrap();
    assert_eq!(back, fixture());
    // The payload is plain CBOR any reader can walk.
    let payload = &bytes[bytes.len() - info.payload_len..];
    let value: ciborium::Value = ciborium::from_reader(payload).unwrap();
    let map = value.as_map().unwrap();
    assert_eq!(map[0].0.as_text(), Some("name"));
    assert_eq!(map[0].1.as_text(), Some("résumé"));
}

#[test]
fn hand_built_envelope_matches_encoder() {
    let mut payload = Vec::new();
    ciborium::into_writer(&5_u32, &mut payload).unwrap();
    assert_eq!(
        external_bytes::<u32>(payload),
        External::encode(&5_u32).unwrap()
    );
}
