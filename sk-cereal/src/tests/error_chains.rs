//! Every error of the crate that wraps another says it once: the wrapped
//! error is its `source()`, not part of its `Display`.

use sk_testkit::assert_chain_says_each_thing_once as says_once;

use super::accumulator::AccumulatorError;
use crate::{CerealError, External, Format, Internal, Segment, ValuePath};

#[test]
fn every_error_with_a_source_says_it_once() {
    let path = || ValuePath::from(vec![Segment::arg("size")]);
    let deserialize = Internal::decode::<String>(&[]).unwrap_err();
    says_once(&deserialize);
    says_once(&deserialize.with_context(Segment::arg("a")));
    let envelope = External::decode::<u32>(b"SKCE\xff\xff\xff\xff").unwrap_err();
    assert!(
        matches!(envelope, CerealError::Envelope { .. }),
        "{envelope:?}"
    );
    says_once(&envelope);
    for err in [
        CerealError::Serialize {
            format: Internal::NAME,
            path: path(),
            source: "width must be positive".into(),
        },
        CerealError::Deserialize {
            format: Internal::NAME,
            path: path(),
            source: "expected bool".into(),
        },
        CerealError::Snapshot {
            type_name: "Conn",
            source: "socket closed".into(),
        },
        CerealError::Restore {
            type_name: "Conn",
            source: "socket closed".into(),
        },
        CerealError::BadMagic { found: vec![1, 2] }.with_context(Segment::arg("b")),
    ] {
        says_once(&err);
    }
    says_once(&AccumulatorError::Spawn(std::io::Error::other(
        "no threads left",
    )));
}
