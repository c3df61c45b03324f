//! The questions a part's code asks its run, and how the run answers
//! them: [`Asker`] answers by the rules a `PartContext` reads by —
//! directly for a function part on a thread of the run, or as bytes for a
//! part in a worker process (see `current.rs` for the asking side).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sk_core::{Encoding, Value};

use crate::context::{ContextEnv, output_what};
use crate::coord::Coord;
use crate::error::ReadError;
use crate::store;

/// The part a running part's code belongs to, as its run sees it.
pub(crate) struct Asker<'a> {
    pub(crate) env: &'a dyn ContextEnv,
    pub(crate) part: &'a str,
    pub(crate) coord: Coord,
    pub(crate) iteration: u64,
    pub(crate) attempt: u32,
}

/// What a part's code asks its run.
#[derive(Serialize, Deserialize)]
pub(crate) enum Question<V> {
    Who,
    Output(String),
    OutputAt(Coord),
    Below(String),
    StoreGet(String),
    StoreSet(String, V),
    StoreSwap {
        key: String,
        expected: Option<u64>,
        new: V,
    },
    StoreRemove(String),
    StoreContains(String),
    StoreKeys,
    /// The part's idempotency key.
    Key,
    /// The recorded value of a step of the part.
    Step(String),
    /// Record a step of the part with its value (external format).
    RecordStep(String, Vec<u8>),
}

/// The run's answer.
#[derive(Serialize, Deserialize)]
pub(crate) enum Reply<V> {
    Who(Identity),
    Value(Result<V, ReadError>),
    Below(Result<Vec<(String, Option<V>)>, ReadError>),
    Revision(Result<(V, u64), ReadError>),
    Written(Option<u64>),
    Flag(bool),
    Keys(Vec<String>),
    Key(String),
    /// A step's recorded value (`None`: not recorded), or why it cannot
    /// be read or recorded.
    Step(Result<Option<Vec<u8>>, String>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) part: String,
    pub(crate) coord: Coord,
    pub(crate) iteration: u64,
    pub(crate) attempt: u32,
}

/// A value crossing the process boundary: its type name and its bytes
/// (internal format, or the external bytes of a value read back from a
/// journal).
#[derive(Serialize, Deserialize)]
pub(crate) struct Wire {
    type_name: String,
    encoding: Encoding,
    bytes: Vec<u8>,
}

impl Wire {
    /// `value`'s bytes; `Err` with the encoding error when it does not
    /// encode (a local value).
    fn encode(value: &Value) -> Result<Wire, sk_cereal::CerealError> {
        value.encode_any().map(|(encoding, bytes)| Wire {
            type_name: value.type_name().to_owned(),
            encoding,
            bytes,
        })
    }

    fn of(value: &Value, what: impl FnOnce() -> String) -> Result<Wire, ReadError> {
        Wire::encode(value).map_err(|_| ReadError::LocalOnly { what: what() })
    }

    /// The value again; bytes that do not read are a broken link.
    fn decode(self) -> Result<Value, ReadError> {
        Value::from_any(self.encoding, self.type_name, self.bytes).map_err(|e| {
            ReadError::Unreachable {
                why: format!("a value arrived unreadable: {e}"),
            }
        })
    }

    fn value(self) -> Result<Arc<Value>, ReadError> {
        self.decode().map(Arc::new)
    }
}

impl Asker<'_> {
    fn reader(&self) -> String {
        format!("part \"{}\"", self.part)
    }

    /// Answers `question` by the rules a [`PartContext`](crate::PartContext)
    /// reads by.
    pub(crate) fn respond(&self, question: Question<Value>) -> Reply<Arc<Value>> {
        let store = self.env.store();
        match question {
            Question::Who => Reply::Who(Identity {
                part: self.part.to_owned(),
                coord: self.coord,
                iteration: self.iteration,
                attempt: self.attempt,
            }),
            Question::Output(name) => Reply::Value(self.env.read(self.part, &name)),
            Question::OutputAt(coord) => Reply::Value(match self.env.name_at(coord) {
                Some(name) => self.env.read(self.part, name),
                None => Err(ReadError::Unknown {
                    reader: self.reader(),
                    part: coord.to_string(),
                }),
            }),
            Question::Below(name) => Reply::Below(
                self.env
                    .subtree_latest(&name)
                    .map(|below| {
                        below
                            .into_iter()
                            .map(|(part, value)| (part.to_string(), value))
                            .collect()
                    })
                    .ok_or_else(|| ReadError::Unknown {
                        reader: self.reader(),
                        part: name,
                    }),
            ),
            Question::StoreGet(key) => Reply::Revision(store.get_revision(&key)),
            Question::StoreSet(key, value) => Reply::Written(Some(store.set_value(key, value))),
            Question::StoreSwap { key, expected, new } => {
                Reply::Written(store.compare_and_set(&key, expected, new))
            }
            Question::StoreRemove(key) => Reply::Flag(store.remove(&key)),
            Question::StoreContains(key) => Reply::Flag(store.contains(&key)),
            Question::StoreKeys => Reply::Keys(store.keys()),
            Question::Key => Reply::Key(crate::context::idempotency_key(
                &self.env.run_key(),
                self.iteration,
                self.part,
            )),
            Question::Step(step) => {
                Reply::Step(self.env.recorded_step(self.part, self.iteration, &step))
            }
            Question::RecordStep(step, value) => Reply::Step(
                self.env
                    .record_step(self.part, self.iteration, &step, value)
                    .map(|()| None),
            ),
        }
    }

    /// Answers a question from a part in a worker process: `question` and
    /// the answer in the internal format.
    pub(crate) fn answer(&self, question: &[u8]) -> Result<Vec<u8>, String> {
        let question: Question<Wire> = sk_cereal::Internal::decode(question)
            .map_err(|e| format!("a question the run cannot read: {e}"))?;
        let what = match &question {
            Question::Output(name) => output_what(name),
            Question::OutputAt(coord) => format!("the output of the part at {coord}"),
            Question::StoreGet(key) => store::what(key),
            _ => String::new(),
        };
        let question = question_from_wire(question).map_err(|e| e.to_string())?;
        let reply = self.respond(question);
        let reply = reply_to_wire(reply, what);
        sk_cereal::Internal::encode(&reply).map_err(|e| format!("cannot send the answer: {e}"))
    }
}

impl<V> Question<V> {
    /// The same question with its value (if any) mapped by `f`, which is
    /// given the store key the value is for.
    fn try_map<W, E>(self, f: impl FnOnce(&str, V) -> Result<W, E>) -> Result<Question<W>, E> {
        Ok(match self {
            Question::StoreSet(key, new) => {
                let new = f(&key, new)?;
                Question::StoreSet(key, new)
            }
            Question::StoreSwap { key, expected, new } => Question::StoreSwap {
                new: f(&key, new)?,
                key,
                expected,
            },
            Question::Who => Question::Who,
            Question::Output(name) => Question::Output(name),
            Question::OutputAt(coord) => Question::OutputAt(coord),
            Question::Below(name) => Question::Below(name),
            Question::StoreGet(key) => Question::StoreGet(key),
            Question::StoreRemove(key) => Question::StoreRemove(key),
            Question::StoreContains(key) => Question::StoreContains(key),
            Question::StoreKeys => Question::StoreKeys,
            Question::Key => Question::Key,
            Question::Step(step) => Question::Step(step),
            Question::RecordStep(step, value) => Question::RecordStep(step, value),
        })
    }
}

fn question_from_wire(question: Question<Wire>) -> Result<Question<Value>, ReadError> {
    question.try_map(|_, wire| wire.decode())
}

pub(crate) fn question_to_wire(question: Question<Value>) -> Result<Question<Wire>, ReadError> {
    // Only serializable values are written (`RunStore::set`, `update`):
    // one that does not encode failed to serialize. They go in the
    // external format when they can: internal bytes carry no type to
    // re-encode from, and a journaled run records the store's values in
    // the external format.
    question.try_map(|key, value| {
        let external = value.encode_external().map(|bytes| Wire {
            type_name: value.type_name().to_owned(),
            encoding: Encoding::External,
            bytes,
        });
        external
            .or_else(|_| Wire::encode(&value))
            .map_err(|e| ReadError::Unreachable {
                why: format!("cannot send the value for \"{key}\": {e}"),
            })
    })
}

impl<V> Reply<V> {
    /// The same reply with each value mapped by `f`: a value `f` cannot
    /// map makes the reply its error, and a descendant's is left out.
    fn try_map<W>(self, mut f: impl FnMut(V) -> Result<W, ReadError>) -> Reply<W> {
        match self {
            Reply::Value(value) => Reply::Value(value.and_then(&mut f)),
            Reply::Revision(got) => {
                Reply::Revision(got.and_then(|(v, revision)| Ok((f(v)?, revision))))
            }
            Reply::Below(below) => Reply::Below(below.map(|below| {
                below
                    .into_iter()
                    .map(|(part, v)| (part, v.and_then(|v| f(v).ok())))
                    .collect()
            })),
            Reply::Who(who) => Reply::Who(who),
            Reply::Written(revision) => Reply::Written(revision),
            Reply::Flag(flag) => Reply::Flag(flag),
            Reply::Keys(keys) => Reply::Keys(keys),
            Reply::Key(key) => Reply::Key(key),
            Reply::Step(step) => Reply::Step(step),
        }
    }
}

/// `reply` for the wire; a value that cannot cross is `what`'s
/// [`ReadError::LocalOnly`] (a descendant's is left out).
fn reply_to_wire(reply: Reply<Arc<Value>>, what: String) -> Reply<Wire> {
    reply.try_map(|v| Wire::of(&v, || what.clone()))
}

pub(crate) fn reply_from_wire(reply: Reply<Wire>) -> Reply<Arc<Value>> {
    reply.try_map(Wire::value)
}
