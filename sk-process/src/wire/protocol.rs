//! The messages parent and worker exchange, one per frame.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sk_core::{Args, SkFunction};
use sk_reg::{CasOutcome, StoredValue};

use sk_core::Encoding;

/// The parent's answer to a question: its bytes, or why there is none.
pub(crate) type Answer = Result<Vec<u8>, String>;

/// Parent → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run `function` with `extra` arguments layered over its own.
    Call {
        id: u64,
        /// As the byte string of its encoding (see `function.rs`).
        #[serde(with = "super::function")]
        function: Arc<SkFunction>,
        extra: Args,
        /// The format to send the output back in.
        output: Encoding,
    },
    /// The answer to a storage request.
    Storage { id: u64, reply: StorageReply },
    /// The answer to a question the running code asked
    /// ([`FromWorker::Ask`]): the answer's bytes, or why there is none.
    Answer { id: u64, answer: Answer },
    /// A message for the running code (`listen` in the worker).
    Message { bytes: Vec<u8> },
    /// Finish the current call, then exit cleanly.
    Stop,
}

/// [`ToWorker::Call`] borrowing what it carries: it encodes to the same
/// bytes without copying the function and its arguments first.
#[derive(Debug)]
pub(crate) struct CallRef<'a> {
    pub(crate) id: u64,
    pub(crate) function: &'a SkFunction,
    pub(crate) extra: &'a Args,
    pub(crate) output: Encoding,
}

impl Serialize for CallRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        // As the derived `Serialize` of `ToWorker` writes its variant 0.
        let mut call = serializer.serialize_struct_variant("ToWorker", 0, "Call", 4)?;
        call.serialize_field("id", &self.id)?;
        call.serialize_field("function", &Function(self.function))?;
        call.serialize_field("extra", self.extra)?;
        call.serialize_field("output", &self.output)?;
        call.end()
    }
}

/// A function as [`ToWorker::Call`] carries it.
struct Function<'a>(&'a SkFunction);

impl Serialize for Function<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        super::function::serialize(self.0, serializer)
    }
}

/// Worker → parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The worker is up and serving.
    Ready { pid: u32 },
    /// A call ended.
    Done {
        id: u64,
        outcome: Result<Encoded, RemoteFailure>,
    },
    /// Still alive (sent on a timer, even while a call runs).
    Heartbeat,
    /// A global-storage operation, hosted by the parent.
    Storage { id: u64, op: StorageOp },
    /// A question from the code running call `call`, for whoever waits
    /// for that call in the parent (see `ask_parent`).
    Ask {
        call: u64,
        id: u64,
        question: Vec<u8>,
    },
    /// A message from the running code (`tell` in the worker).
    Message { bytes: Vec<u8> },
    /// Sent instead of `Ready` by a process started as a worker whose
    /// program ran `main` without `init()` and got as far as starting a
    /// worker of its own.
    MissingInit,
}

/// A value, encoded as the call asked, with its Rust type name.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Encoded {
    pub(crate) type_name: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) format: Encoding,
}

/// A call that failed in the worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteFailure {
    pub(crate) message: String,
    pub(crate) retryable: bool,
}

/// One [`StorageBackend`](sk_reg::StorageBackend) operation.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum StorageOp {
    Load {
        key: String,
    },
    Store {
        key: String,
        value: StoredValue,
    },
    Remove {
        key: String,
    },
    CompareAndSwap {
        key: String,
        expected: Option<StoredValue>,
        new: Option<StoredValue>,
    },
    Keys,
}

/// The result of a [`StorageOp`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum StorageReply {
    Value(Option<StoredValue>),
    Done,
    Cas(CasOutcome),
    Keys(Vec<String>),
    Failed(String),
}

/// The sizes in bytes of the frames of one call of `function` with no
/// extra arguments returning `()`: `(call frame, reply frame)`. For
/// benchmarks that compare against a raw exchange of the same bytes.
#[doc(hidden)]
pub fn __call_frame_sizes(function: &SkFunction) -> (usize, usize) {
    use super::frame::{DEFAULT_MAX_FRAME, encode_frame};
    let call = ToWorker::Call {
        id: 1,
        function: Arc::new(function.clone()),
        extra: Args::new(),
        output: Encoding::Internal,
    };
    let done = FromWorker::Done {
        id: 1,
        outcome: Ok(Encoded {
            type_name: std::any::type_name::<()>().to_owned(),
            bytes: Vec::new(),
            format: Encoding::Internal,
        }),
    };
    let size = |frame: Result<Vec<u8>, _>| frame.map_or(0, |f: Vec<u8>| f.len());
    (
        size(encode_frame(&call, DEFAULT_MAX_FRAME)),
        size(encode_frame(&done, DEFAULT_MAX_FRAME)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::{DEFAULT_MAX_FRAME, encode_frame};

    #[sk_core::function(crate = ::sk_core)]
    fn call_ref_probe(x: u32) -> u32 {
        x
    }

    #[test]
    fn a_borrowed_call_encodes_as_the_call_itself() {
        use sk_core::Modify;
        let function = SkFunction::builder("call_ref_probe")
            .build()
            .unwrap()
            .timeout(std::time::Duration::from_secs(3));
        let extra = Args::new().with("x", &7u32).unwrap();
        for output in [Encoding::Internal, Encoding::External] {
            let owned = ToWorker::Call {
                id: 42,
                function: Arc::new(function.clone()),
                extra: extra.clone(),
                output,
            };
            let borrowed = CallRef {
                id: 42,
                function: &function,
                extra: &extra,
                output,
            };
            let bytes = encode_frame(&borrowed, DEFAULT_MAX_FRAME).unwrap();
            assert_eq!(bytes, encode_frame(&owned, DEFAULT_MAX_FRAME).unwrap());
            match sk_cereal::Internal::decode::<ToWorker>(&bytes[4..]).unwrap() {
                ToWorker::Call {
                    id,
                    function: f,
                    extra: e,
                    output: o,
                } => {
                    assert_eq!((id, &*f, &e, o), (42, &function, &extra, output));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
