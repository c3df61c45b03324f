//! The wire layout of the external format: the magic bytes and the
//! protobuf envelope that wraps the CBOR payload (see the crate docs,
//! section *External wire format*).

/// The four bytes every external encoding starts with.
pub(crate) const MAGIC: &[u8; 4] = b"SKCE";

/// The protobuf envelope (see the crate docs for its `.proto` text).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Envelope {
    #[prost(uint32, tag = "1")]
    pub(crate) format_version: u32,
    #[prost(string, tag = "2")]
    pub(crate) type_name: String,
    #[prost(string, tag = "3")]
    pub(crate) payload_encoding: String,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) payload: Vec<u8>,
}
