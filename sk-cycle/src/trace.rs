//! Run traces in the Chrome trace event format (open them in Perfetto or
//! `chrome://tracing`).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use crate::coord::Coord;
use crate::mode::PartState;

/// What a trace event is of.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceKind {
    /// One execution of a part (all its attempts).
    Part,
    /// One iteration of a lane, start to end.
    Iteration,
}

/// The thread id iteration events of lane `lane` are drawn on.
pub(crate) fn lane_tid(lane: u32) -> u64 {
    1_000_000 + u64::from(lane)
}

/// One part execution, or one iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceEvent {
    /// What it is of.
    pub kind: TraceKind,
    /// The part (`iteration` for an iteration).
    pub name: String,
    /// Its coordinate.
    pub coord: Coord,
    /// Its lane (0 unless independent sync made more).
    pub lane: u32,
    /// The iteration of its lane.
    pub iteration: u64,
    /// The thread it ran on (a small number, stable per thread).
    pub tid: u64,
    /// When it started, since the run started.
    pub start: Duration,
    /// How long it ran.
    pub duration: Duration,
    /// How it ended (an iteration in error: `Failed`).
    pub state: PartState,
    /// Attempts beyond the first (retries) it took.
    pub retries: u32,
    /// The worker process a part placed in a process ran in (0: this
    /// process).
    pub pid: u32,
}

/// How many events a run's trace keeps by default (the latest ones; a
/// continuous run's trace does not grow without end).
pub const DEFAULT_TRACE_CAPACITY: usize = 100_000;

/// A run's trace while it runs: the latest events, up to a capacity.
#[derive(Debug)]
pub(crate) struct TraceLog {
    pub(crate) events: VecDeque<TraceEvent>,
    pub(crate) capacity: usize,
    pub(crate) dropped: u64,
    /// The names of the threads events ran on.
    pub(crate) threads: BTreeMap<u64, String>,
}

impl TraceLog {
    pub(crate) fn new(capacity: usize) -> Self {
        TraceLog {
            events: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
            threads: BTreeMap::new(),
        }
    }

    /// Notes the name of thread `tid`; the oldest names go first when
    /// there are more than the capacity (a thread per timed part run).
    pub(crate) fn name_thread(&mut self, tid: u64, name: String) {
        self.threads.insert(tid, name);
        if self.threads.len() > self.capacity {
            self.threads.pop_first();
        }
    }

    pub(crate) fn push(&mut self, event: TraceEvent) {
        if self.events.len() >= self.capacity {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }
}

/// The part executions and iterations of a run, in start order (the
/// latest ones, up to the run's trace capacity).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    pub(crate) cycle: String,
    pub(crate) events: Vec<TraceEvent>,
    pub(crate) dropped: u64,
    pub(crate) threads: BTreeMap<u64, String>,
}

impl Trace {
    /// Builds the run's trace from its log.
    pub(crate) fn from_log(cycle: &str, log: TraceLog) -> Trace {
        let mut events: Vec<TraceEvent> = log.events.into();
        events.sort_by_key(|e| e.start);
        Trace {
            cycle: cycle.to_owned(),
            events,
            dropped: log.dropped,
            threads: log.threads,
        }
    }
}

#[derive(Serialize)]
struct ChromeTrace<'a> {
    #[serde(rename = "traceEvents")]
    trace_events: Vec<ChromeEvent<'a>>,
    #[serde(rename = "displayTimeUnit")]
    display_time_unit: &'static str,
}

#[derive(Serialize)]
struct ChromeEvent<'a> {
    name: &'a str,
    cat: &'a str,
    ph: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<f64>,
    pid: u32,
    tid: u64,
    args: ChromeArgs<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ChromeArgs<'a> {
    Run {
        #[serde(skip_serializing_if = "Option::is_none")]
        coord: Option<String>,
        lane: u32,
        iteration: u64,
        state: &'a str,
        retries: u32,
    },
    /// Metadata: a thread's name.
    Name { name: &'a str },
}

impl Trace {
    /// The events, in start order.
    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// How many of the oldest events were let go to keep the trace within
    /// its capacity ([`Run::trace_capacity`](crate::Run::trace_capacity)).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The trace as Chrome trace event JSON: one complete (`"ph": "X"`)
    /// event per part execution (its retries among its args) and per
    /// iteration (on a row of its own per lane), a `thread_name` metadata
    /// event per thread, times in microseconds.
    pub fn to_chrome_json(&self) -> String {
        let pid = std::process::id();
        let mut trace_events: Vec<ChromeEvent<'_>> = self
            .threads
            .iter()
            .map(|(&tid, name)| (tid, name.as_str()))
            .chain(
                self.events
                    .iter()
                    .filter(|e| e.kind == TraceKind::Iteration)
                    .map(|e| (e.tid, "iterations"))
                    .collect::<BTreeMap<_, _>>(),
            )
            .map(|(tid, name)| ChromeEvent {
                name: "thread_name",
                cat: "__metadata",
                ph: "M",
                ts: None,
                dur: None,
                pid,
                tid,
                args: ChromeArgs::Name { name },
            })
            .collect();
        // A worker process is a process row of its own, named so.
        let workers: std::collections::BTreeSet<u32> = self
            .events
            .iter()
            .map(|e| e.pid)
            .filter(|&p| p != 0 && p != pid)
            .collect();
        trace_events.extend(workers.into_iter().map(|worker| ChromeEvent {
            name: "process_name",
            cat: "__metadata",
            ph: "M",
            ts: None,
            dur: None,
            pid: worker,
            tid: 0,
            args: ChromeArgs::Name {
                name: "worker process",
            },
        }));
        trace_events.extend(self.events.iter().map(|e| ChromeEvent {
            name: &e.name,
            cat: &self.cycle,
            ph: "X",
            ts: Some(e.start.as_secs_f64() * 1e6),
            dur: Some(e.duration.as_secs_f64() * 1e6),
            pid: if e.pid == 0 { pid } else { e.pid },
            tid: e.tid,
            args: ChromeArgs::Run {
                coord: (e.kind == TraceKind::Part).then(|| e.coord.to_string()),
                lane: e.lane,
                iteration: e.iteration,
                state: e.state.as_str(),
                retries: e.retries,
            },
        }));
        let trace = ChromeTrace {
            trace_events,
            display_time_unit: "ms",
        };
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_string(&trace).unwrap_or_else(|_| String::from("{\"traceEvents\":[]}"))
    }
}
