//! The channel between a parent and a worker process: length-prefixed
//! frames (`frame.rs`) and how their reader waits (`spin.rs`), the messages they carry (`protocol.rs`), and the
//! reading of one channel by whichever thread needs the next message
//! (`relay.rs`). Nothing here knows about supervision or pools; the
//! crate's only public item from here is [`DEFAULT_MAX_FRAME`].

mod frame;
mod function;
mod protocol;
mod relay;
mod spin;

pub use frame::DEFAULT_MAX_FRAME;
pub(crate) use frame::{encode_frame, send_frame, send_frame_or, with_frame};
pub use protocol::__call_frame_sizes;
pub(crate) use protocol::{
    Answer, CallRef, Encoded, FromWorker, RemoteFailure, StorageOp, StorageReply, ToWorker,
};
pub(crate) use relay::{Ended, HubArm, Relay, Router, Waited};
