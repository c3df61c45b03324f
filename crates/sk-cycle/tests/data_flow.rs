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
    CyclePart::new(name.to_owned(), |ctx| ctx.input_as::<u32>().copied())
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
