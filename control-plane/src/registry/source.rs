//! What any running source tells the monitoring server, whichever source it is: whether its
//! latest input is in force and which generation is published. The Kubernetes source adds more
//! (watch state per kind) later.

/// The status of a running registry source, shareable as `Arc<dyn SourceStatus>`.
pub trait SourceStatus: Send + Sync {
    /// Why the source's latest input is not in force, if it is not (the last good snapshot is
    /// still published); `None` once it is.
    fn last_error(&self) -> Option<String>;

    /// The generation of the snapshot currently published.
    fn generation(&self) -> u64;
}
