//! Run traces in the Chrome trace event format (open them in Perfetto or
//! `chrome://tracing`).

use std::time::Duration;

use serde::Serialize;

use crate::coord::Coord;
use crate::mode::PartState;

/// One part execution.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceEvent {
    /// The part.
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
    /// How it ended.
    pub state: PartState,
}

/// The part executions of a run, in start order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    pub(crate) cycle: String,
    pub(crate) events: Vec<TraceEvent>,
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
    ts: f64,
    dur: f64,
    pid: u32,
    tid: u64,
    args: ChromeArgs<'a>,
}

#[derive(Serialize)]
struct ChromeArgs<'a> {
    coord: String,
    lane: u32,
    iteration: u64,
    state: &'a str,
}

impl Trace {
    /// The events, in start order.
    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// The trace as Chrome trace event JSON: one complete (`"ph": "X"`)
    /// event per part execution, times in microseconds.
    pub fn to_chrome_json(&self) -> String {
        let trace = ChromeTrace {
            trace_events: self
                .events
                .iter()
                .map(|e| ChromeEvent {
                    name: &e.name,
                    cat: &self.cycle,
                    ph: "X",
                    ts: e.start.as_secs_f64() * 1e6,
                    dur: e.duration.as_secs_f64() * 1e6,
                    pid: std::process::id(),
                    tid: e.tid,
                    args: ChromeArgs {
                        coord: e.coord.to_string(),
                        lane: e.lane,
                        iteration: e.iteration,
                        state: e.state.as_str(),
                    },
                })
                .collect(),
            display_time_unit: "ms",
        };
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_string(&trace).unwrap_or_else(|_| String::from("{\"traceEvents\":[]}"))
    }
}
