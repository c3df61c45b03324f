//! The three registry layers and their resolution order.

use std::fmt;

/// One of the three layers of a [`Registry`](crate::Registry).
///
/// A lookup by name checks the layers in [`Layer::RESOLUTION_ORDER`]:
/// user code ([`External`](Layer::External)) shadows framework code
/// ([`Internal`](Layer::Internal)), which shadows the process-wide defaults
/// ([`Global`](Layer::Global)). The derived ordering follows the resolution
/// order, so sorting by layer lists the entry that wins first.
///
/// # Examples
///
/// ```
/// use sk_reg::Layer;
///
/// assert_eq!(Layer::RESOLUTION_ORDER, [Layer::External, Layer::Internal, Layer::Global]);
/// assert!(Layer::External < Layer::Global);
/// assert_eq!(Layer::Internal.to_string(), "internal");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// User code: entries registered by the program that uses Suitkaise.
    External,
    /// Framework code: entries registered by Suitkaise itself.
    Internal,
    /// Process-wide defaults, visible when neither other layer has the name.
    Global,
}

impl Layer {
    /// The order in which a lookup by name checks the layers.
    pub const RESOLUTION_ORDER: [Layer; 3] = [Layer::External, Layer::Internal, Layer::Global];

    /// The lowercase name of the layer, as used in error messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Layer::External => "external",
            Layer::Internal => "internal",
            Layer::Global => "global",
        }
    }

    /// Position of the layer in [`Layer::RESOLUTION_ORDER`].
    pub(crate) const fn index(self) -> usize {
        match self {
            Layer::External => 0,
            Layer::Internal => 1,
            Layer::Global => 2,
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_resolution_order() {
        for (i, layer) in Layer::RESOLUTION_ORDER.iter().enumerate() {
            assert_eq!(layer.index(), i);
        }
    }

    #[test]
    fn ordering_is_resolution_order() {
        let mut layers = [Layer::Global, Layer::External, Layer::Internal];
        layers.sort();
        assert_eq!(layers, Layer::RESOLUTION_ORDER);
    }
}
