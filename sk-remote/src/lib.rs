//! Remote parts: cycle parts run by worker processes on other machines,
//! through NATS JetStream.
//!
//! A part placed with [`CyclePart::remote`](sk_cycle::CyclePart::remote)
//! goes, one message per attempt, to its group's subject of a work-queue
//! stream; any machine running the same program as a [`RemoteWorker`]
//! for that group takes it, runs it in a local worker process, publishes
//! the result to a results stream and then acknowledges the work. The
//! run's [`Coordinator`] (given to the run with
//! [`Run::remote`](sk_cycle::Run::remote)) hears the result; the run's
//! journal, when it has one, stays the record of truth: the broker only
//! delivers work.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sk_cycle::{CycleBuilder, CyclePart, Run};
//! use sk_remote::{Broker, Coordinator, GroupConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let coordinator = Coordinator::connect(&Broker::new("nats://10.0.0.5:4222"))?;
//! coordinator.group("gpu", GroupConfig::new().max_in_flight(8))?;
//! let mut builder = CycleBuilder::new("render");
//! let render = sk_core::SkFunction::get("render_tile")?;
//! builder.add(CyclePart::function("tile", render).remote("gpu"), 1)?;
//! let cycle = builder.build()?;
//! cycle.run(Run::once().remote(Arc::new(coordinator)))?;
//! # Ok(())
//! # }
//! ```
//!
//! Workers are the same binary, started with
//! `my-app --sk-remote-worker nats://10.0.0.5:4222 --group gpu` (see
//! [`worker_main`]) or through [`RemoteWorker::run`].
//!
//! # Guarantees
//!
//! - **At-least-once execution, exactly-once recording.** An attempt may
//!   run more than once (its worker died or was cut off after it began);
//!   its answer is taken once: answers are fenced by run, iteration, part
//!   and attempt, and a late or duplicate one is dropped. A journaled run
//!   records each part's end once.
//! - **A dead worker or host**: its parts go to other workers once the
//!   group's ack wait passes without a sign of life (default 1 s; running
//!   parts send in-progress acks at a third of it).
//! - **Poison parts**: a part whose worker died more than the group's
//!   crash limit times (default 3) is not handed to another worker; it
//!   fails with [`RemoteFailure::Poison`](sk_cycle::RemoteFailure::Poison).
//!   Every delivery counts: a part handed back by a draining worker, or
//!   by one that could not start a local process for it, counts as one
//!   too (JetStream has no other count). A part past the broker's
//!   MaxDeliver (the crash limit plus 2) that no worker answered fails as
//!   poison when the coordinator hears the broker's advisory.
//! - **Timeouts**: a part's timeout counts from when it is sent; the
//!   worker kills its local process at the timeout and answers timed out;
//!   with no answer by the timeout plus a grace (a dead worker), the
//!   coordinator gives up on it as timed out. Retries follow the part's
//!   retry policy: each attempt is a new message.
//! - **Limits**: a group's `max_in_flight` holds across all its workers
//!   (the consumer's MaxAckPending; a part waiting its turn in a worker's
//!   slot counts); `rate_per_sec` paces a coordinator's sending to the
//!   group, across its runs. A group's delivery settings belong to the
//!   group: the last coordinator to start a run with it sets them.
//! - **Stops**: a run stopped (instant fail, a timeout given up on) tells
//!   the workers, which kill what they run of it and drop what they
//!   would; an ended run's left-overs are purged from the broker.
//! - **Broker trouble**: the client reconnects for ever; sends are tried
//!   again (deduplicated by the broker); a restarted coordinator of a
//!   journaled run reads the results that came while it was gone (results
//!   are kept 15 minutes; later, its parts are sent and run again).
//! - **Run ids**: a run is known to the broker by its id (a journaled
//!   run's [`Run::run_id`](sk_cycle::Run::run_id), by default the cycle's
//!   name; others get a fresh one). A later run with the same id is safe
//!   (it never takes an earlier one's messages for its own), but two runs
//!   with one id live at once on one broker — e.g. two machines journaling
//!   the same cycle without a `run_id` of their own — mix their work:
//!   give each its own id.
//!
//! # Security
//!
//! A worker runs only functions registered in its own binary: a message
//! names a function and carries its arguments' bytes, never code. Restrict
//! a deployment with NATS itself: give coordinators and workers
//! credentials ([`Broker::credentials_file`], tokens, nkeys) whose
//! permissions allow only the subjects under the deployment's prefix
//! (`sk.work.>`, `sk.result.>`, `sk.cancel.>`, `$JS.API.>` for the
//! streams `SK_WORK` and `SK_RESULTS` (and `KV_<bucket>` for
//! [`KvStorage`]), and, for coordinators,
//! `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.SK_WORK.>`), require TLS
//! ([`Broker::require_tls`], [`Broker::root_certificate`],
//! [`Broker::client_certificate`]), and use a prefix
//! ([`Broker::prefix`]) per deployment on a shared server.
//!
//! # Setup
//!
//! A NATS server 2.9 or newer with JetStream (`nats-server -js`).

#![deny(unreachable_pub)]
#![warn(missing_debug_implementations)]

mod broker;
mod coordinator;
mod error;
mod kv;
mod main_args;
mod wire;
mod worker;

pub use broker::{Broker, GroupConfig};
pub use coordinator::Coordinator;
pub use error::RemoteError;
pub use kv::KvStorage;
pub use main_args::worker_main;
pub use worker::{RemoteWorker, WorkerSummary};
