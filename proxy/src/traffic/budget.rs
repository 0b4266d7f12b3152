//! Limits on retries per destination: `connectionPool.http.maxRetries` (concurrent retries) and
//! `trafficPolicy.retryBudget` (concurrent retries as a share of active requests), with the
//! counters the metrics read.
//!
//! Promise: a retry is attempted only while holding a [`RetryPermit`]; a permit is refused (and
//! counted) when either limit would be exceeded, and never blocks.

use crate::config::ConfigError;
use sinew_proto::config::v1 as pb;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Istio's `retryBudget.percent` default.
pub const DEFAULT_BUDGET_PERCENT: f64 = 20.0;
/// Istio's `retryBudget.minRetryConcurrency` default.
pub const DEFAULT_MIN_RETRY_CONCURRENCY: u32 = 3;

/// One destination's retry limits and live counts. Shared (`Arc`) by every request to that
/// destination; owned by the per-service cache so it survives config pushes.
#[derive(Debug, Default)]
pub struct RetryBudget {
    /// `maxRetries`; `None` is Istio's default (2^32-1: unlimited).
    max_retries: Option<usize>,
    /// `(percent, minRetryConcurrency)` when a `retryBudget` is set.
    budget: Option<(f64, usize)>,
    /// Requests in flight through the retry layer to this destination.
    active: AtomicUsize,
    /// Retries in flight (backing off or being sent).
    retrying: AtomicUsize,
    stats: RetryStats,
}

/// Counters for metrics (Envoy's `upstream_rq_retry`, `upstream_rq_retry_overflow`, …).
#[derive(Debug, Default)]
pub struct RetryStats {
    /// Retries attempted.
    pub retries: AtomicU64,
    /// Retries not attempted because `maxRetries` retries were already in flight.
    pub overflows: AtomicU64,
    /// Retries not attempted because the retry budget was spent.
    pub budget_exhausted: AtomicU64,
    /// Requests that failed with every allowed retry used (flag URX).
    pub limit_exceeded: AtomicU64,
}

/// Why a retry may not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryRefused {
    /// `maxRetries` concurrent retries already in flight.
    MaxRetries,
    /// The retry budget is spent.
    Budget,
}

/// Held while a request is in flight: it counts towards the budget's base.
#[derive(Debug)]
pub struct ActiveRequest(Arc<RetryBudget>);

/// Held while a retry is in flight.
#[derive(Debug)]
pub struct RetryPermit(Arc<RetryBudget>);

// === impl RetryBudget ===

impl RetryBudget {
    /// No limits (Istio's defaults without a DestinationRule).
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// `max_retries` 0 means unlimited (as Istio, which only overrides Envoy's thresholds when
    /// the DestinationRule's value is > 0).
    pub fn new(max_retries: u32, budget: Option<(f64, u32)>) -> Self {
        Self {
            max_retries: (max_retries > 0).then_some(max_retries as usize),
            budget: budget.map(|(p, m)| (p, m as usize)),
            ..Self::default()
        }
    }

    /// From `trafficPolicy.retryBudget` (at `field`) and `connectionPool.http.maxRetries`.
    pub fn from_proto(
        field: &str,
        budget: Option<&pb::RetryBudget>,
        max_retries: u32,
    ) -> Result<Self, ConfigError> {
        let budget = match budget {
            None => None,
            Some(b) => {
                let percent = b.percent.unwrap_or(DEFAULT_BUDGET_PERCENT);
                if !(0.0..=100.0).contains(&percent) {
                    return Err(ConfigError::Invalid {
                        field: format!("{field}.percent"),
                        reason: format!("{percent} is not a percentage (0-100)"),
                    });
                }
                let min = b
                    .min_retry_concurrency
                    .unwrap_or(DEFAULT_MIN_RETRY_CONCURRENCY);
                Some((percent, min))
            }
        };
        Ok(Self::new(max_retries, budget))
    }

    pub fn stats(&self) -> &RetryStats {
        &self.stats
    }

    /// Retries in flight right now.
    pub fn retries_in_flight(&self) -> usize {
        self.retrying.load(Ordering::Acquire)
    }

    /// Counts a request as active until the returned guard drops.
    pub fn track(self: &Arc<Self>) -> ActiveRequest {
        self.active.fetch_add(1, Ordering::AcqRel);
        ActiveRequest(self.clone())
    }

    /// A permit for one retry, or why not (counted in [`RetryStats`]).
    pub fn try_retry(self: &Arc<Self>) -> Result<RetryPermit, RetryRefused> {
        let mut current = self.retrying.load(Ordering::Acquire);
        loop {
            if self.max_retries.is_some_and(|max| current >= max) {
                self.stats.overflows.fetch_add(1, Ordering::Relaxed);
                return Err(RetryRefused::MaxRetries);
            }
            if let Some((percent, min)) = self.budget {
                // Envoy: the limit on concurrent retries is `percent` of active requests, but
                // never below `minRetryConcurrency`.
                let active = self.active.load(Ordering::Acquire) as f64;
                let allowed = ((active * percent / 100.0) as usize).max(min);
                if current >= allowed {
                    self.stats.budget_exhausted.fetch_add(1, Ordering::Relaxed);
                    return Err(RetryRefused::Budget);
                }
            }
            match self.retrying.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    return Ok(RetryPermit(self.clone()));
                }
                Err(now) => current = now,
            }
        }
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for RetryPermit {
    fn drop(&mut self) {
        self.0.retrying.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_retries_caps_concurrent_retries_and_frees_on_drop() {
        let b = Arc::new(RetryBudget::new(2, None));
        let p1 = b.try_retry().unwrap();
        let _p2 = b.try_retry().unwrap();
        assert_eq!(b.try_retry().unwrap_err(), RetryRefused::MaxRetries);
        assert_eq!(b.stats().overflows.load(Ordering::Relaxed), 1);
        drop(p1);
        assert!(b.try_retry().is_ok());
        assert_eq!(b.stats().retries.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn budget_allows_min_concurrency_then_percent_of_active() {
        let b = Arc::new(RetryBudget::new(0, Some((20.0, 3))));
        // 10 active: 20 % is 2, below the minimum of 3.
        let active: Vec<_> = (0..10).map(|_| b.track()).collect();
        let permits: Vec<_> = (0..3).map(|_| b.try_retry().unwrap()).collect();
        assert_eq!(b.try_retry().unwrap_err(), RetryRefused::Budget);
        assert_eq!(b.stats().budget_exhausted.load(Ordering::Relaxed), 1);
        // 25 active: 20 % is 5.
        let more: Vec<_> = (0..15).map(|_| b.track()).collect();
        let p4 = b.try_retry().unwrap();
        let p5 = b.try_retry().unwrap();
        assert_eq!(b.try_retry().unwrap_err(), RetryRefused::Budget);
        drop((active, more, permits, p4, p5));
        assert_eq!(b.retries_in_flight(), 0);
    }

    #[test]
    fn no_limits_without_destination_rule() {
        let b = Arc::new(RetryBudget::unlimited());
        let permits: Vec<_> = (0..1000).map(|_| b.try_retry().unwrap()).collect();
        assert_eq!(b.retries_in_flight(), permits.len());
    }

    #[test]
    fn budget_defaults_and_validation() {
        let b =
            RetryBudget::from_proto("p.retryBudget", Some(&pb::RetryBudget::default()), 0).unwrap();
        assert_eq!(b.budget, Some((20.0, 3)));
        assert_eq!(b.max_retries, None);
        let bad = pb::RetryBudget {
            percent: Some(120.0),
            ..Default::default()
        };
        let err = RetryBudget::from_proto("p.retryBudget", Some(&bad), 0).unwrap_err();
        assert!(
            err.to_string().starts_with("p.retryBudget.percent:"),
            "{err}"
        );
    }
}
