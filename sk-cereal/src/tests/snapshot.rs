//! Snapshots: a live accumulator survives encode/decode and keeps running.

use super::accumulator::{Accumulator, AccumulatorState};
use crate::{CerealError, External, Format, Internal, Snapshot};

fn check_continues<F: Format>() {
    let acc = Accumulator::new().unwrap();
    for value in 1..=10 {
        acc.push(value).unwrap();
    }
    let bytes = F::encode_snapshot(&acc).unwrap();
    // The original keeps running after the snapshot.
    acc.push(100).unwrap();
    assert_eq!(
        acc.snapshot().unwrap(),
        AccumulatorState::of((1..=10).chain([100]))
    );

    let copy: Accumulator = F::decode_snapshot(&bytes).unwrap();
    for value in [-5, 7] {
        copy.push(value).unwrap();
    }
    assert_eq!(
        copy.stop().unwrap(),
        AccumulatorState::of((1..=10).chain([-5, 7]))
    );
    let finished = acc.stop().unwrap();
    assert_eq!(
        (finished.count, finished.sum, finished.max),
        (11, 155, Some(100))
    );
}

#[test]
fn restored_accumulator_continues_the_totals() {
    sk_testkit::guarded(|| {
        check_continues::<Internal>();
        check_continues::<External>();
    });
}

#[test]
fn snapshot_sees_every_value_pushed_before_it() {
    sk_testkit::guarded(|| {
        let acc = Accumulator::new().unwrap();
        for value in 0..10_000 {
            acc.push(value).unwrap();
            if value % 2_500 == 0 {
                assert_eq!(acc.snapshot().unwrap().count, value as u64 + 1);
            }
        }
        assert_eq!(acc.snapshot().unwrap(), AccumulatorState::of(0..10_000));
    });
}

#[test]
fn dropping_joins_the_worker() {
    // Drop closes the channel and joins; the hang guard fails the test if the
    // worker never exits.
    sk_testkit::guarded(|| {
        for _ in 0..50 {
            let acc = Accumulator::new().unwrap();
            acc.push(1).unwrap();
            drop(acc);
        }
    });
}

#[test]
fn bad_snapshot_bytes_are_a_typed_error() {
    sk_testkit::guarded(|| {
        let err = Internal::decode_snapshot::<Accumulator>(&[1]).unwrap_err();
        assert!(matches!(err, CerealError::Deserialize { .. }), "{err:?}");
    });
}
