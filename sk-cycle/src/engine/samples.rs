//! Part timings: sampled runs are logged into a buffer of the thread that
//! ran them, and merged into each part's stats a batch at a time and
//! whenever the stats are read. A timed run so costs a push onto a buffer
//! in the thread's cache, not a lock on a cold line of a large cycle's
//! stats. Only the parts timed in a run have stats in it: a large cycle
//! times few of its parts each run, and a window of stats for every part
//! (some 140 bytes each) cost a 512x512 wavefront's run of ten
//! iterations as much as a fifth of its time, allocated and written.

use std::time::Duration;

use crossbeam::utils::CachePadded;
use parking_lot::Mutex;

use crate::report::PartTimings;

/// Samples a buffer holds before its thread merges them.
const BATCH: usize = 256;

/// One timed run of a part, standing for `runs` of its runs.
#[derive(Clone, Copy)]
struct Sample {
    part: u32,
    runs: u32,
    elapsed: Duration,
}

/// A run's part timings.
pub(super) struct Samples {
    /// One buffer per thread of the run's pool, and a last one for any
    /// other thread (a component's, a timed part's).
    buffers: Box<[CachePadded<Mutex<Vec<Sample>>>]>,
    /// Per part timed: the samples merged so far, under one lock, taken
    /// once per batch merged (a lock per part cost two atomic operations
    /// per sample).
    parts: Mutex<PartTimings>,
}

impl Samples {
    /// Stats for parts run on a pool of `threads` threads (none at all
    /// with stats off; only the parts timed get stats). A run makes its
    /// own: the last run's went to its report (see [`Samples::take`]).
    pub(super) fn new(stats: bool, threads: usize) -> Samples {
        let buffers = if stats { threads + 1 } else { 0 };
        Samples {
            buffers: (0..buffers)
                .map(|_| CachePadded::new(Mutex::new(Vec::new())))
                .collect(),
            parts: Mutex::new(PartTimings::default()),
        }
    }

    /// Records that part `part` ran for `elapsed`, a sample standing for
    /// `runs` of its runs (see [`WindowStats::record_n`](sk_core::WindowStats::record_n)).
    #[inline]
    pub(super) fn record(&self, part: u32, elapsed: Duration, runs: u32) {
        let Some(last) = self.buffers.len().checked_sub(1) else {
            return;
        };
        // A thread of another pool may have an index too: it shares the
        // last buffer with the threads of no pool.
        let buffer = rayon::current_thread_index()
            .filter(|&i| i < last)
            .unwrap_or(last);
        let mut samples = self.buffers[buffer].lock();
        samples.push(Sample {
            part,
            runs,
            elapsed,
        });
        if samples.len() >= BATCH {
            self.merge(&mut samples);
        }
    }

    /// Moves `samples` into their parts' stats.
    #[cold]
    fn merge(&self, samples: &mut Vec<Sample>) {
        let mut parts = self.parts.lock();
        for s in samples.drain(..) {
            parts.entry(s.part).or_default().record_n(s.elapsed, s.runs);
        }
    }

    /// Merges every thread's buffer.
    fn merge_all(&self) {
        for buffer in self.buffers.iter() {
            self.merge(&mut buffer.lock());
        }
    }

    /// The summary of every part's timings, in part order (empty with
    /// stats off).
    #[cfg(test)]
    pub(super) fn summaries(&self, parts: u32) -> Vec<sk_core::StatsSummary> {
        self.merge_all();
        let timed = self.parts.lock();
        (0..parts)
            .map(|p| {
                timed
                    .get(&p)
                    .map(sk_core::WindowStats::summary)
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Every part's timings as they are now, in part order (empty with
    /// stats off). Merges wait while they are copied.
    pub(super) fn snapshot(&self) -> PartTimings {
        self.merge_all();
        self.parts.lock().clone()
    }

    /// The timed parts' timings, taken out at the end of the run for its
    /// report (which summarizes them when read): a large cycle's timings
    /// are neither copied nor summarized unless they are read. Later
    /// samples go to the emptied map, which nothing reads; the next run
    /// makes its own.
    pub(super) fn take(&self) -> PartTimings {
        self.merge_all();
        std::mem::take(&mut *self.parts.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_from_many_threads_all_reach_their_parts() {
        sk_testkit::guarded(|| {
            // Two pool threads (a buffer each) and two threads of no pool
            // (sharing the last one).
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let samples = Samples::new(true, 2);
            let record = |t: u64| {
                for i in 0..1000u64 {
                    samples.record((i % 3) as u32, Duration::from_nanos(t * 1000 + i), 1);
                }
            };
            pool.broadcast(|ctx| record(ctx.index() as u64));
            std::thread::scope(|s| {
                for t in 2..4u64 {
                    let record = &record;
                    s.spawn(move || record(t));
                }
            });
            let summaries = samples.summaries(3);
            let counts: Vec<u64> = summaries.iter().map(|s| s.count).collect();
            assert_eq!(counts, [1336, 1332, 1332]);
            assert_eq!(summaries[0].min, Duration::from_nanos(0));
            assert_eq!(summaries[0].max, Duration::from_nanos(3999));
        })
    }

    #[test]
    fn a_large_cycles_run_holds_stats_for_its_timed_parts_only() {
        let samples = Samples::new(true, 2);
        samples.record(7, Duration::from_nanos(5), 1);
        samples.record(999_999, Duration::from_nanos(9), 3);
        samples.record(7, Duration::from_nanos(6), 1);
        let timed = samples.take();
        assert_eq!(timed.len(), 2);
        assert_eq!(timed[&7].summary().count, 2);
        assert_eq!(timed[&999_999].summary().count, 3);
    }

    #[test]
    fn stats_off_records_nothing() {
        let samples = Samples::new(false, 2);
        samples.record(0, Duration::from_nanos(5), 1);
        assert!(samples.parts.lock().is_empty());
    }
}
