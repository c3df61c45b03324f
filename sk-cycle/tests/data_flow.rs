//! What each part receives: its tree parent's output, or its pipe's.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sk_cycle::{CycleBuilder, CyclePart, PartState, Run};
use sk_testkit::guarded;

fn constant(name: &str, value: u32) -> CyclePart {
    CyclePart::new(name.to_owned(), move |_| value)
}

/// A part that outputs the `u32` it received (`None` for anything else).
fn echo(name: &str) -> CyclePart {
    CyclePart::new(name.to_owned(), |ctx| ctx.input_as::<u32>().ok().copied())
}

#[test]
fn a_pipe_across_branches_delivers_its_source_output() {
    guarded(|| {
        let mut b = CycleBuilder::new("pipe-across");
        b.add(constant("root", 1), 1).unwrap();
        b.split([constant("producer", 500), constant("other", 3)], 2)
            .unwrap();
        b.add(echo("consumer"), (4, 2)).unwrap();
        b.pipe("producer", "consumer").unwrap();
        let report = b.build().unwrap().run(Run::times(2)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.output_as::<Option<u32>>("consumer"), Some(&Some(500)));
    });
}

#[test]
fn a_pipe_that_skips_a_level_delivers_its_source_output() {
    guarded(|| {
        let mut b = CycleBuilder::new("pipe-skip");
        b.add(constant("p1", 111), 1).unwrap();
        b.add(constant("p2", 222), 2).unwrap();
        b.add(echo("p3"), 3).unwrap();
        b.pipe("p1", "p3").unwrap();
        let report = b.build().unwrap().run(Run::once()).unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.output_as::<Option<u32>>("p3"), Some(&Some(111)));
        // Without the pipe, the tree parent's output flows.
        let mut b = CycleBuilder::new("no-pipe");
        b.add(constant("p1", 111), 1).unwrap();
        b.add(constant("p2", 222), 2).unwrap();
        b.add(echo("p3"), 3).unwrap();
        let report = b.build().unwrap().run(Run::once()).unwrap();
        assert_eq!(
            report.last().unwrap().output_as::<Option<u32>>("p3"),
            Some(&Some(222))
        );
    });
}

#[test]
fn a_failed_pipe_source_fails_its_target_upstream() {
    guarded(|| {
        let mut b = CycleBuilder::new("pipe-fail");
        b.add(constant("root", 1), 1).unwrap();
        b.split(
            [
                CyclePart::fallible("producer", |_| -> Result<u32, String> {
                    Err("no".to_owned())
                }),
                constant("other", 3),
            ],
            2,
        )
        .unwrap();
        b.add(echo("consumer"), (4, 2)).unwrap();
        b.pipe("producer", "consumer").unwrap();
        let report = b.build().unwrap().run(Run::once()).unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.state_of("producer"), Some(PartState::Failed));
        assert_eq!(last.state_of("consumer"), Some(PartState::UpstreamFailed));
    });
}

#[test]
fn reading_a_part_not_ordered_before_the_reader_is_a_build_error_naming_both() {
    let mut b = CycleBuilder::new("racy");
    b.add(constant("root", 1), 1).unwrap();
    b.split(
        [
            constant("producer", 500),
            CyclePart::new("consumer", |ctx| {
                ctx.output::<u32>("producer").map(|v| *v).ok()
            })
            .reads(["producer"]),
        ],
        2,
    )
    .unwrap();
    let err = b.build().unwrap_err();
    assert!(
        matches!(&err, sk_cycle::BuildError::UnorderedRead { reader, part, .. }
            if reader == "consumer" && part == "producer"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "part \"consumer\" at 3-2 reads \"producer\" at 3-1, which is not ordered before it: \
         order them (after, pipe) or declare a latest-completed read (reads_latest)"
    );

    // Ordered by an `after` edge, the same read builds and reads the value.
    let mut b = CycleBuilder::new("ordered");
    b.add(constant("root", 1), 1).unwrap();
    b.split(
        [
            constant("producer", 500),
            CyclePart::new("consumer", |ctx| {
                ctx.output::<u32>("producer").map(|v| *v).ok()
            })
            .reads(["producer"]),
        ],
        2,
    )
    .unwrap();
    b.after("consumer", "producer").unwrap();
    let report = b.build().unwrap().run(Run::times(3)).unwrap();
    assert_eq!(
        report.last().unwrap().output_as::<Option<u32>>("consumer"),
        Some(&Some(500))
    );
}

#[test]
fn of_several_unordered_reads_the_build_error_names_the_first_reader_by_coordinate() {
    // Two readers in sibling branches, each reading the other branch's
    // part: both are unordered; the first reader by coordinate is named.
    let mut b = CycleBuilder::new("racy-pair");
    b.add(constant("root", 1), 1).unwrap();
    b.split(
        [echo("left").reads(["right"]), echo("right").reads(["left"])],
        2,
    )
    .unwrap();
    let err = b.build().unwrap_err();
    assert!(
        matches!(&err, sk_cycle::BuildError::UnorderedRead { reader, part, .. }
            if reader == "left" && part == "right"),
        "{err:?}"
    );
}

#[test]
fn a_declared_read_of_a_name_the_cycle_lacks_is_a_build_error() {
    let mut b = CycleBuilder::new("typo");
    b.add(constant("root", 1).reads(["rooot"]), 1).unwrap();
    let err = b.build().unwrap_err().to_string();
    assert_eq!(
        err,
        "part \"root\" at 1-1 reads \"rooot\", but the cycle has no part of that name"
    );
}

/// Records what a read gave: the value, or the error's text.
fn read_report(
    read: impl Fn(&sk_cycle::PartContext<'_>) -> Result<u64, sk_cycle::ReadError>
    + Send
    + Sync
    + 'static,
) -> String {
    let mut b = CycleBuilder::new("reads");
    b.add(CyclePart::new("root", |_| 7u32), 1).unwrap();
    b.add(
        CyclePart::new("reader", move |ctx| match read(ctx) {
            Ok(v) => v.to_string(),
            Err(e) => e.to_string(),
        }),
        2,
    )
    .unwrap();
    let report = b.build().unwrap().run(Run::once()).unwrap();
    report
        .last()
        .unwrap()
        .output_as::<String>("reader")
        .unwrap()
        .clone()
}

#[test]
fn reads_that_cannot_be_served_say_why() {
    guarded(|| {
        // A u32 asked for as a u64: both types, by short name.
        assert_eq!(
            read_report(|ctx| ctx.input_as::<u64>().copied()),
            "the input of part \"reader\" is a `u32`, not a `u64`"
        );
        assert_eq!(
            read_report(|ctx| ctx.output::<String>("root").map(|_| 0)),
            "the output of part \"root\" is a `u32`, not a `String`"
        );
        // The input part needs no declaration.
        assert_eq!(
            read_report(|ctx| ctx.output::<u32>("root").map(|v| u64::from(*v))),
            "7"
        );
        // A misspelled name is an error, not a silent None.
        assert_eq!(
            read_report(|ctx| ctx.output::<u32>("roto").map(|v| u64::from(*v))),
            "part \"reader\" reads \"roto\", but the cycle has no part of that name"
        );
    })
}

#[test]
fn an_undeclared_read_is_refused_naming_the_fix() {
    guarded(|| {
        let mut b = CycleBuilder::new("undeclared");
        b.add(constant("root", 1), 1).unwrap();
        b.split([constant("left", 2), constant("right", 3)], 2)
            .unwrap();
        b.add(
            CyclePart::new("below_left", |ctx| match ctx.output::<u32>("right") {
                Ok(v) => v.to_string(),
                Err(e) => e.to_string(),
            }),
            (4, 1),
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::once()).unwrap();
        let text = report
            .last()
            .unwrap()
            .output_as::<String>("below_left")
            .unwrap();
        assert!(
            text.starts_with("part \"below_left\" reads \"right\" without declaring it"),
            "{text}"
        );
    })
}

#[test]
fn a_latest_completed_read_needs_no_ordering() {
    guarded(|| {
        let mut b = CycleBuilder::new("latest");
        b.add(constant("root", 1), 1).unwrap();
        b.split(
            [
                CyclePart::new("counter", |ctx| ctx.iteration()),
                CyclePart::new("watcher", |ctx| {
                    ctx.output::<u64>("counter").ok().map(|v| *v)
                })
                .reads_latest(["counter"]),
            ],
            2,
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::times(5)).unwrap();
        // Some value of this iteration or an earlier one, or none yet.
        let seen = report
            .last()
            .unwrap()
            .output_as::<Option<u64>>("watcher")
            .unwrap();
        assert!(seen.is_none_or(|v| (1..=5).contains(&v)), "{seen:?}");
    })
}

/// A connection-like handle: shared, mutable, not serializable.
struct Conn {
    sent: std::sync::Mutex<Vec<String>>,
}

#[test]
fn values_without_serde_flow_between_thread_parts() {
    guarded(|| {
        let mut b = CycleBuilder::new("local");
        b.add(
            CyclePart::local("connect", |_| {
                std::sync::Arc::new(Conn {
                    sent: std::sync::Mutex::new(Vec::new()),
                })
            }),
            1,
        )
        .unwrap();
        b.add(
            CyclePart::fallible("send", |ctx| {
                let conn = ctx.input_local::<std::sync::Arc<Conn>>()?;
                conn.sent
                    .lock()
                    .unwrap()
                    .push(format!("hello {}", ctx.iteration()));
                Ok::<_, sk_cycle::ReadError>(conn.sent.lock().unwrap().len())
            }),
            2,
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::times(3)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.state_of("send"), Some(PartState::Succeeded));
        // A fresh connection each iteration, one message on it.
        assert_eq!(last.output_as::<usize>("send"), Some(&1));
    });
}

#[sk_core::function(crate = ::sk_core)]
fn takes_input(input: u8) -> u8 {
    input
}

#[test]
fn a_value_without_serde_cannot_feed_a_process_part() {
    let mut b = CycleBuilder::new("local-to-process");
    b.add(CyclePart::local("connect", |_| std::sync::Arc::new(5u8)), 1)
        .unwrap();
    let remote = sk_core::SkFunction::builder("takes_input").build().unwrap();
    b.add(CyclePart::function("remote", remote).in_process(), 2)
        .unwrap();
    let err = b.build().unwrap_err();
    assert!(
        matches!(err, sk_cycle::BuildError::LocalOutputCrossesProcess { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "part \"connect\" at 1-1 makes a value that cannot leave this process, but its output \
         feeds \"remote\" at 2-1, placed in a worker process"
    );
}

/// root → split [a=10 → a1=11, b=20 → (split [b1=21, b2=22])], and a
/// watcher beside them.
fn family() -> CycleBuilder {
    let mut b = CycleBuilder::new("family");
    b.add(constant("root", 1), 1).unwrap();
    b.split([constant("a", 10), constant("b", 20)], 2).unwrap();
    b.add(constant("a1", 11), (4, 1)).unwrap();
    b.split([constant("b1", 21), constant("b2", 22)], (4, 2))
        .unwrap();
    b
}

#[test]
fn a_report_gives_a_parts_descendants_data_by_a_predicate() {
    guarded(|| {
        let report = family().build().unwrap().run(Run::once()).unwrap();
        let last = report.last().unwrap();
        let all: Vec<(&str, u32)> = last
            .descendants_where::<u32, _>("root", |_, _| true)
            .into_iter()
            .map(|(n, v)| (n, *v))
            .collect();
        assert_eq!(
            all,
            [("a", 10), ("b", 20), ("a1", 11), ("b1", 21), ("b2", 22)]
        );
        let odd_below_b: Vec<&str> = last
            .descendants_where::<u32, _>("b", |_, v| v % 2 == 1)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(odd_below_b, ["b1"]);
        assert!(
            last.descendants_where::<u32, _>("a1", |_, _| true)
                .is_empty()
        );
        // Values of another type are left out.
        assert!(
            last.descendants_where::<String, _>("root", |_, _| true)
                .is_empty()
        );
    });
}

#[test]
fn a_part_asks_another_for_its_descendants_latest_data() {
    guarded(|| {
        let mut b = family();
        b.add(
            CyclePart::new("census", |ctx| {
                ctx.descendants_where::<u32, _>("b", |name, _| name != "b2")
                    .map(|found| {
                        found
                            .into_iter()
                            .map(|(name, v)| format!("{name}={}", *v))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_else(|e| e.to_string())
            }),
            (5, 1),
        )
        .unwrap();
        b.after("census", "b1").unwrap();
        let report = b.build().unwrap().run(Run::times(2)).unwrap();
        let census = report
            .last()
            .unwrap()
            .output_as::<String>("census")
            .unwrap();
        // b1 is ordered before the census; b's own value is not its
        // descendant's.
        assert!(census.starts_with("b1=21"), "{census}");
        assert!(!census.contains("b2"), "{census}");

        let mut b = family();
        b.add(
            CyclePart::new("lost", |ctx| {
                ctx.descendants_where::<u32, _>("nobody", |_, _| true)
                    .err()
                    .map(|e| e.to_string())
            }),
            (5, 1),
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::once()).unwrap();
        assert_eq!(
            report.last().unwrap().output_as::<Option<String>>("lost"),
            Some(&Some(
                "part \"lost\" reads \"nobody\", but the cycle has no part of that name".to_owned()
            ))
        );
    });
}

#[test]
fn a_report_reads_outputs_with_typed_errors() {
    guarded(|| {
        let mut b = CycleBuilder::new("report-reads");
        b.add(constant("root", 7), 1).unwrap();
        b.add(
            CyclePart::fallible("broken", |_| -> Result<u32, String> {
                Err("no".to_owned())
            })
            .error_mode(sk_cycle::ErrorMode::Skip),
            2,
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::once()).unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.output::<u32>("root").unwrap(), &7);
        assert_eq!(
            last.output::<u64>("root").unwrap_err().to_string(),
            "the output of part \"root\" is a `u32`, not a `u64`"
        );
        assert_eq!(
            last.output::<u32>("rot").unwrap_err().to_string(),
            "the report reads \"rot\", but the cycle has no part of that name"
        );
        assert_eq!(
            last.output::<u32>("broken").unwrap_err().to_string(),
            "the report reads \"broken\", which has no output (failed)"
        );
    });
}
