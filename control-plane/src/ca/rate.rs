//! Per-identity token buckets that keep one misbehaving proxy (a renewal loop, a crash loop) from
//! starving the CA for everyone else.
//!
//! Time comes from `tokio::time::Instant`, so tests drive the buckets with paused time.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::RateLimit;

/// Buckets are dropped once full again; pruning runs when the map doubles past this size, so a
/// mesh of N identities costs O(N) memory and amortised O(1) per request.
const PRUNE_FLOOR: usize = 1024;

pub(super) struct RateLimiter {
    burst: f64,
    per_sec: f64,
    state: Mutex<State>,
}

struct State {
    buckets: HashMap<String, Bucket>,
    prune_at: usize,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

// === impl RateLimiter ===

impl RateLimiter {
    pub(super) fn new(limit: RateLimit) -> Self {
        Self {
            burst: f64::from(limit.burst),
            per_sec: f64::from(limit.per_minute) / 60.0,
            state: Mutex::new(State {
                buckets: HashMap::new(),
                prune_at: PRUNE_FLOOR,
            }),
        }
    }

    /// Takes one token for `identity`, or says how long until one is available.
    pub(super) fn acquire(&self, identity: &str) -> Result<(), Duration> {
        let now = Instant::now();
        // The state is plain counters, valid at every point, so a panic elsewhere while holding
        // the lock leaves nothing to repair.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State { buckets, prune_at } = &mut *state;

        // Look up by &str first so the steady state allocates nothing.
        let bucket = match buckets.get_mut(identity) {
            Some(bucket) => {
                let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
                bucket.tokens = (bucket.tokens + elapsed * self.per_sec).min(self.burst);
                bucket.updated = now;
                bucket
            }
            None => {
                if buckets.len() >= *prune_at {
                    self.prune(buckets, now);
                    *prune_at = (buckets.len() * 2).max(PRUNE_FLOOR);
                }
                buckets.entry(identity.to_string()).or_insert(Bucket {
                    tokens: self.burst,
                    updated: now,
                })
            }
        };

        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_sec;
            Err(Duration::from_secs_f64(wait))
        }
    }

    /// A full bucket behaves exactly like a missing one, so dropping it forgets nothing.
    fn prune(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed * self.per_sec < self.burst
        });
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, per_minute: u32) -> RateLimiter {
        RateLimiter::new(RateLimit { burst, per_minute })
    }

    #[tokio::test(start_paused = true)]
    async fn allows_burst_then_refills_at_rate() {
        let rl = limiter(3, 60);
        for _ in 0..3 {
            assert_eq!(rl.acquire("a"), Ok(()));
        }
        assert_eq!(rl.acquire("a"), Err(Duration::from_secs(1)));

        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(rl.acquire("a"), Err(Duration::from_millis(500)));

        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(rl.acquire("a"), Ok(()));
        assert!(rl.acquire("a").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn identities_have_separate_buckets() {
        let rl = limiter(1, 1);
        assert_eq!(rl.acquire("a"), Ok(()));
        assert!(rl.acquire("a").is_err());
        assert_eq!(rl.acquire("b"), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn refill_never_exceeds_burst() {
        let rl = limiter(2, 60);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(rl.acquire("a"), Ok(()));
        assert_eq!(rl.acquire("a"), Ok(()));
        assert!(rl.acquire("a").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn prunes_refilled_buckets_when_many_identities_pass() {
        let rl = limiter(1, 60);
        for i in 0..PRUNE_FLOOR {
            assert_eq!(rl.acquire(&format!("id-{i}")), Ok(()));
        }
        assert_eq!(rl.tracked(), PRUNE_FLOOR);
        // After a second every bucket is full again, so the next new identity prunes them all.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(rl.acquire("newcomer"), Ok(()));
        assert_eq!(rl.tracked(), 1);
        // A pruned identity starts with a full bucket, exactly as if it had been kept.
        assert_eq!(rl.acquire("id-0"), Ok(()));
    }
}
