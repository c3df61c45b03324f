//! Suitkaise serialization: a fast internal format, a versioned
//! self-describing external format, and snapshots of live objects.
//!
//! - [`Internal`] — [postcard](https://docs.rs/postcard) bytes for traffic
//!   between processes of the same build: compact and fast, no type
//!   information.
//! - [`External`] — `b"SKCE"` + a protobuf envelope (format version, type
//!   name, payload encoding) + a CBOR payload, for disk and other programs.
//! - [`Format`] — the trait both implement; [`Limits`] bounds decoding.
//! - [`CerealError`] — every failure, typed; errors about a value name its
//!   [`ValuePath`] (`field "inner" > index 3`), and callers add their own
//!   [`Segment`]s with [`CerealError::with_context`].
//! - [`Snapshot`] — live objects that give a serializable state and are
//!   rebuilt from it, encoded with [`Format::encode_snapshot`].
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sk_cereal::{CerealError, External, Format, Internal, Segment};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Size { w: u32, h: u32 }
//!
//! let size = Size { w: 640, h: 480 };
//! let fast = Internal::encode(&size)?;
//! assert_eq!(Internal::decode::<Size>(&fast)?, size);
//!
//! let stable = External::encode_named(&size, "demo.Size")?;
//! assert_eq!(External::decode_named::<Size>(&stable, "demo.Size")?, size);
//!
//! // A value of the wrong shape: the error names where it went wrong.
//! let err = Internal::decode::<Size>(&[0x80])
//!     .unwrap_err()
//!     .with_context(Segment::arg("size"));
//! assert_eq!(err.path().unwrap().to_string(), r#"arg "size" > field "w""#);
//! # Ok::<(), CerealError>(())
//! ```
//!
//! # Modules
//!
//! The modules are private; the items above are re-exported at the root.
//! Each module uses only modules listed before it:
//!
//! | module | holds | uses |
//! |---|---|---|
//! | `path` | [`ValuePath`], [`Segment`]: where a value sits in a larger one | — |
//! | `limits` | [`Limits`] for decoding untrusted input | — |
//! | `envelope` | the external format's magic bytes and protobuf envelope | — |
//! | `snapshot` | the [`Snapshot`] trait | — |
//! | `error` | [`CerealError`], [`BoxError`] | path, envelope |
//! | `format` | the [`Format`] trait | error, snapshot |
//! | `guard` | the path-tracking, depth-bounding `Deserializer` wrapper (failure path) | path |
//! | `bounded` | the depth-bounding `Deserializer` wrapper (fast path) | — |
//! | `track_ser` | the path-tracking `Serializer` wrapper (failure path) | guard, path |
//! | `internal` | [`Internal`] (postcard) | bounded, error, format, guard, limits, path, track_ser |
//! | `external` | [`External`], [`EnvelopeInfo`] (protobuf + CBOR) | envelope, error, format, guard, internal, limits, path, track_ser |
//!
//! Tests of behaviour that spans modules (round trips, hostile input,
//! error paths, the wire fixture, snapshots) are in `src/tests/`.
//!
//! # Decoding untrusted bytes
//!
//! Decoding never panics on bad input and returns a typed [`CerealError`].
//!
//! **Length.** Input longer than [`Limits::max_input_bytes`] (default
//! 256 MiB) is rejected before parsing ([`CerealError::InputTooLarge`]).
//!
//! **Depth.** Nesting is bounded by [`Limits::max_depth`] (default 128) in
//! both formats, so a recursive type such as
//! `enum Tree { Leaf, Node(Box<Tree>) }` fed a million nested levels fails
//! with [`CerealError::DepthLimit`] instead of overflowing the stack.
//! [`Internal`] counts every struct, enum, sequence, map, tuple, option and
//! newtype level through a thin `Deserializer` wrapper (a counter per
//! compound value; see the benchmark in `benches/cereal.rs`); [`External`]
//! uses ciborium's recursion limit, which counts CBOR arrays and maps
//! (structs, enum variants with data, sequences, maps, tuples). At the
//! default depth, decoding fits a 2 MiB thread stack even in debug builds
//! (tested); raise the limit only on threads with a matching stack.
//!
//! **Memory.** Speculative preallocation is capped: serde's
//! `size_hint::cautious` reserves at most 1 MiB per collection whatever
//! length the input declares, postcard checks byte/string lengths against
//! the remaining input before borrowing them, ciborium reads byte and text
//! strings in 4 KiB chunks into a growing buffer, and prost checks field
//! lengths against the remaining input. Beyond that, growth needs real
//! input bytes. So decoding `n` bytes allocates at most about
//! `k·n + max_depth · 1 MiB`, where `k` is the largest ratio, for the target
//! type, of in-memory size to encoded size (e.g. 8 for a `Vec<u64>` of small
//! varints, 1 for `Vec<u8>`), plus the external format's copy of the payload.
//! The tests declare lengths of 4 GiB and `u64::MAX` for `Vec<u8>`,
//! `Vec<String>`, `String` and `HashMap` and check that decoding fails
//! quickly. One caveat: a sequence of zero-sized elements (`Vec<()>`) costs
//! no input per element, so a huge declared length costs CPU time (no
//! memory); avoid such types in untrusted input.
//!
//! # Error paths
//!
//! Encoding and decoding first run without bookkeeping. Only when that
//! fails is the value encoded (or the bytes decoded) again through a
//! path-tracking wrapper (the crate's own, rather than `serde_path_to_error`,
//! whose paths cannot tell a struct field from a map key and name postcard
//! struct fields by index), which names the failing value: `field "w"`,
//! `index 3`, `key "k"`, `variant "V"`, joined with ` > `. Custom messages
//! from `Serialize`/`Deserialize` impls are kept as the error's source even
//! though postcard itself drops them.
//!
//! # External wire format
//!
//! ```text
//! offset 0: 4 bytes  magic, ASCII "SKCE" (0x53 0x4B 0x43 0x45)
//! offset 4: rest     a protobuf (proto3) message `Envelope`, below
//! ```
//!
//! ```proto
//! syntax = "proto3";
//! package suitkaise.cereal;
//!
//! message Envelope {
//!   uint32 format_version   = 1; // 1 for this version
//!   string type_name        = 2; // writer's type name (std::any::type_name or explicit)
//!   string payload_encoding = 3; // "cbor"
//!   bytes  payload          = 4; // the value, CBOR (RFC 8949)
//! }
//! ```
//!
//! The payload is CBOR as written by serde + ciborium: structs are maps keyed
//! by field name, sequences and tuples are arrays, `Option::None` is `null`
//! and `Some(x)` is `x`, unit enum variants are the variant name as a text
//! string, other variants a one-entry map `{ "Variant": data }`, byte
//! buffers marked `serde_bytes` are byte strings. A reader in any language
//! strips the magic, decodes `Envelope`, checks `format_version == 1` and
//! `payload_encoding == "cbor"`, then reads `payload` with any CBOR library.
//! Readers reject newer versions ([`CerealError::UnsupportedVersion`]). A
//! checked-in fixture in the tests pins these bytes.

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_debug_implementations)]

mod bounded;
mod envelope;
mod error;
mod external;
mod format;
mod guard;
mod internal;
mod limits;
mod path;
mod snapshot;
mod track_ser;

#[cfg(test)]
mod tests;

pub use error::{BoxError, CerealError};
pub use external::{EnvelopeInfo, External};
pub use format::Format;
pub use internal::Internal;
pub use limits::Limits;
pub use path::{Segment, ValuePath};
pub use snapshot::Snapshot;
