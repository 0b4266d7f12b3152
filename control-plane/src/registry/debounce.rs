//! Coalescing bursts of changes, for any source: a directory being saved file by file or a
//! watch delivering a burst of events becomes one re-read and one published generation.
//!
//! Promise: a burst is due once changes have been quiet for `quiet`, or `max_delay` after its
//! first change, whichever comes first, so continuous changes still take effect.

use std::time::Duration;

use tokio::time::Instant;

/// When to re-read after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    /// How often the files are checked. Default 100 ms.
    pub poll_interval: Duration,
    /// Re-read once nothing has changed for this long (an editor's save, or `cp -r`, is several
    /// writes). Default 100 ms.
    pub quiet: Duration,
    /// …but never later than this after the first change, so a file rewritten in a loop still
    /// takes effect. Default 1 s (the design's "within a second").
    pub max_delay: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(100),
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }
}

// === impl Debouncer ===

/// Coalesces a burst of changes into one re-read: due once changes have been quiet for
/// `quiet`, or `max_delay` after the first, whichever comes first.
#[derive(Debug)]
pub(crate) struct Debouncer {
    quiet: Duration,
    max_delay: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debouncer {
    pub(crate) fn new(d: Debounce) -> Self {
        Self {
            quiet: d.quiet,
            max_delay: d.max_delay,
            first: None,
            last: None,
        }
    }

    pub(crate) fn note(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    pub(crate) fn due(&self, now: Instant) -> bool {
        match (self.first, self.last) {
            (Some(first), Some(last)) => {
                now.duration_since(last) >= self.quiet
                    || now.duration_since(first) >= self.max_delay
            }
            _ => false,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.first = None;
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debouncer() -> Debouncer {
        Debouncer::new(Debounce::default())
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_waits_for_a_quiet_period() {
        let mut d = debouncer();
        assert!(!d.due(Instant::now()), "nothing changed");
        d.note(Instant::now());
        tokio::time::advance(Duration::from_millis(60)).await;
        assert!(!d.due(Instant::now()));
        d.note(Instant::now());
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(
            !d.due(Instant::now()),
            "the second change restarted the quiet period"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(d.due(Instant::now()));
        d.reset();
        assert!(!d.due(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_fires_at_max_delay_during_continuous_changes() {
        let mut d = debouncer();
        let start = Instant::now();
        d.note(start);
        while Instant::now().duration_since(start) < Duration::from_millis(950) {
            tokio::time::advance(Duration::from_millis(50)).await;
            d.note(Instant::now());
            assert!(!d.due(Instant::now()), "at {:?}", Instant::now() - start);
        }
        tokio::time::advance(Duration::from_millis(50)).await;
        d.note(Instant::now());
        assert!(
            d.due(Instant::now()),
            "1 s after the first change, even though changes continue"
        );
    }
}
