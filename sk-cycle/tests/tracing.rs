//! Runs speak `tracing`: spans for the run, each iteration and each part,
//! events for retries and timeouts — seen by whatever subscriber the
//! application installs (here a small collecting one; by default nothing
//! is printed).

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Debug;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sk_core::RetryPolicy;
use sk_cycle::{CycleBuilder, CyclePart, ErrorMode, Run};
use sk_testkit::guarded;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Every span and event, as `name field=value ...` lines.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Collector {
    next: AtomicU64,
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl Subscriber for Collector {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = Line(format!("span {}", span.metadata().name()));
        span.record(&mut line);
        SEEN.lock().unwrap().push(line.0);
        Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed))
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line(format!("event {}", event.metadata().level()));
        event.record(&mut line);
        SEEN.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn runs_iterations_parts_retries_and_timeouts_are_traced() {
    guarded(|| {
        tracing::subscriber::set_global_default(Collector {
            next: AtomicU64::new(1),
        })
        .unwrap();
        let mut b = CycleBuilder::new("traced");
        b.add(CyclePart::new("root", |_| ()), 1).unwrap();
        b.split(
            [
                CyclePart::fallible("flaky", |ctx| {
                    if ctx.attempt() < 2 {
                        Err("not yet")
                    } else {
                        Ok(())
                    }
                })
                .retry(RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(3)),
                CyclePart::new("slow", |ctx| {
                    ctx.stop_token().wait_timeout(Duration::from_secs(10));
                })
                .timeout(Duration::from_millis(20))
                .error_mode(ErrorMode::Skip),
            ],
            2,
        )
        .unwrap();
        b.build().unwrap().run(Run::times(2)).unwrap();
        let seen = SEEN.lock().unwrap().clone();
        let has = |want: &str| seen.iter().any(|l| l.contains(want));
        assert!(has("span run cycle=traced"), "{seen:#?}");
        assert!(has("span iteration lane=0 number=2"), "{seen:#?}");
        assert!(
            has("span part name=flaky coord=3-1 iteration=2"),
            "{seen:#?}"
        );
        assert!(
            has("message=retrying part=flaky coord=3-1 attempt=2"),
            "{seen:#?}"
        );
        assert!(
            seen.iter().any(|l| l.starts_with("event WARN")
                && l.contains("part timed out")
                && l.contains("part=slow")),
            "{seen:#?}"
        );
    })
}
