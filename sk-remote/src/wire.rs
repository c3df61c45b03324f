//! What travels through the broker: a [`Work`] message per attempt, a
//! [`Reply`] per answer, and stop notices. Encoded in the internal format
//! (coordinator and workers run the same build of one program), led by a
//! version byte; decoding untrusted bytes never panics and is bounded
//! (see [`sk_cereal::Internal`]).

use serde::{Deserialize, Serialize};
use sk_core::{Args, Encoding, SkFunction};

/// The wire version; a message of another is refused, naming both.
pub(crate) const VERSION: u8 = 1;

/// One attempt of a part, as published to its group.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Work {
    pub(crate) run: String,
    pub(crate) iteration: u64,
    pub(crate) part: String,
    pub(crate) attempt: u32,
    /// By registered name (with bound arguments): a worker runs only
    /// functions of its own binary.
    pub(crate) function: SkFunction,
    pub(crate) args: Args,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) output: Encoding,
    /// Deliveries past this many are not run: the part is poison.
    pub(crate) crash_limit: u32,
    /// The group's ack wait: a worker shows signs of life at a third of it.
    pub(crate) ack_wait_ms: u64,
}

impl Work {
    /// The broker's deduplication id: the same attempt published again (a
    /// coordinator restarted) is dropped.
    pub(crate) fn message_id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.run, self.iteration, self.part, self.attempt
        )
    }
}

/// How an attempt ended, as its worker reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The output: bytes in `encoding` of type `type_name`.
    Value {
        encoding: Encoding,
        type_name: String,
        bytes: Vec<u8>,
    },
    Failed {
        message: String,
        retryable: bool,
    },
    TimedOut {
        after_ms: u64,
    },
    /// Not run: its workers died this many times.
    Poison {
        deliveries: u32,
    },
}

/// An attempt's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub(crate) run: String,
    pub(crate) iteration: u64,
    pub(crate) part: String,
    pub(crate) attempt: u32,
    /// The worker that answered (its name).
    pub(crate) worker: String,
    pub(crate) outcome: Outcome,
}

/// A stop notice: attempts of the run (or only `attempt`) published at or
/// before stream sequence `upto` are not to be run any more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Cancel {
    pub(crate) upto: u64,
    pub(crate) attempt: Option<(u64, String, u32)>,
}

/// Encodes `message` behind the version byte.
pub(crate) fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, sk_cereal::CerealError> {
    let mut bytes = vec![VERSION];
    bytes.extend(sk_cereal::Internal::encode(message)?);
    Ok(bytes)
}

/// Decodes a `what` message, naming what is wrong with it.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, String> {
    match bytes.split_first() {
        None => Err(format!("empty {what} message")),
        Some((&VERSION, rest)) => {
            sk_cereal::Internal::decode(rest).map_err(|e| format!("malformed {what} message: {e}"))
        }
        Some((&v, _)) => Err(format!(
            "{what} message of wire version {v}, this build speaks {VERSION}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip_and_bad_bytes_are_named() {
        let reply = Reply {
            run: "r".into(),
            iteration: 3,
            part: "p".into(),
            attempt: 2,
            worker: "w".into(),
            outcome: Outcome::Failed {
                message: "boom".into(),
                retryable: true,
            },
        };
        let bytes = encode(&reply).unwrap();
        assert_eq!(decode::<Reply>(&bytes, "result").unwrap(), reply);
        assert!(
            decode::<Reply>(&[], "result")
                .unwrap_err()
                .contains("empty")
        );
        let e = decode::<Reply>(&[9, 1, 2], "result").unwrap_err();
        assert!(e.contains("version 9"), "{e}");
        let e = decode::<Reply>(&bytes[..bytes.len() - 3], "result").unwrap_err();
        assert!(e.contains("malformed result"), "{e}");
        for cut in 0..bytes.len() {
            let _ = decode::<Reply>(&bytes[..cut], "result");
        }
    }
}
