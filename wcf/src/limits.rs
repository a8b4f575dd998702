//! The named limits every decoder in this crate checks before it allocates,
//! with the defaults .NET uses (wcf/PROTOCOL.md §12.1 and §4).

/// Bounds applied to everything read off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest Via URI in a preamble (CoreWCF `MaxViaSize`, 2048).
    pub max_via: usize,
    /// Longest content type in an ExtensibleEncoding record (256).
    pub max_content_type: usize,
    /// Longest fault URI or upgrade protocol name (256).
    pub max_fault: usize,
    /// Largest SizedEnvelope, and largest total of one UnsizedEnvelope
    /// (`MaxReceivedMessageSize`, 65536 by default).
    pub max_message: usize,
    /// Largest in-band session dictionary per direction (`MaxSessionSize`, 2048).
    pub max_session: usize,
    /// Deepest element nesting accepted by the binary XML reader.
    pub max_depth: usize,
    /// Most items in one binary XML array record.
    pub max_array_items: usize,
}

impl Limits {
    /// The .NET defaults.
    pub const DEFAULT: Limits = Limits {
        max_via: 2048,
        max_content_type: 256,
        max_fault: 256,
        max_message: 65536,
        max_session: 2048,
        max_depth: 128,
        max_array_items: 65536,
    };

    /// The defaults with a different maximum message size.
    #[must_use]
    pub const fn with_max_message(mut self, max_message: usize) -> Self {
        self.max_message = max_message;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
