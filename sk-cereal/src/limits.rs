//! Decoding limits for untrusted input.

/// Bounds applied while decoding bytes that may come from an untrusted peer.
///
/// | limit | default | effect |
/// |---|---|---|
/// | [`max_input_bytes`](Limits::max_input_bytes) | 256 MiB | longer input is rejected before any parsing |
/// | [`max_depth`](Limits::max_depth) | 128 | deeper nesting of sequences, maps, structs, enums and options is rejected |
///
/// # Examples
///
/// ```
/// use sk_cereal::Limits;
/// let limits = Limits::default().with_max_input_bytes(1024).with_max_depth(16);
/// assert_eq!(limits.max_input_bytes, 1024);
/// assert_eq!(limits.max_depth, 16);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted input, in bytes.
    pub max_input_bytes: usize,
    /// Deepest accepted nesting of compound values.
    pub max_depth: usize,
}

impl Limits {
    /// Default longest input: 256 MiB.
    pub const DEFAULT_MAX_INPUT_BYTES: usize = 256 * 1024 * 1024;
    /// Default deepest nesting: 128 levels.
    pub const DEFAULT_MAX_DEPTH: usize = 128;

    /// The default limits.
    pub const fn new() -> Self {
        Self {
            max_input_bytes: Self::DEFAULT_MAX_INPUT_BYTES,
            max_depth: Self::DEFAULT_MAX_DEPTH,
        }
    }

    /// Sets the longest accepted input.
    #[must_use]
    pub const fn with_max_input_bytes(mut self, max_input_bytes: usize) -> Self {
        self.max_input_bytes = max_input_bytes;
        self
    }

    /// Sets the deepest accepted nesting.
    #[must_use]
    pub const fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}
