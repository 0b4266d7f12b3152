//! The sampling decision: an upstream hop's decision is always honoured (so a trace is whole or
//! absent, never holed); without one, `sampling_percent` of requests are sampled at random.

use super::context::Decision;
use std::sync::atomic::{AtomicU64, Ordering};

/// Istio's default `randomSamplingPercentage` (`PILOT_TRACE_SAMPLING`).
pub const DEFAULT_SAMPLING_PERCENT: f64 = 1.0;

/// The random-sampling rate in force, changed in place by config pushes.
#[derive(Debug)]
pub struct Sampler {
    /// A request without a decision is sampled when a uniform `u64` falls below this;
    /// `u64::MAX` is "always" (100 %), 0 is "never".
    threshold: AtomicU64,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new(DEFAULT_SAMPLING_PERCENT)
    }
}

// === impl Sampler ===

impl Sampler {
    pub fn new(percent: f64) -> Self {
        Self {
            threshold: AtomicU64::new(threshold(percent)),
        }
    }

    /// `percent` outside 0–100 (or NaN) is clamped: validation happens at the config's edge.
    pub fn set(&self, percent: f64) {
        self.threshold.store(threshold(percent), Ordering::Relaxed);
    }

    /// The decision for a request: `upstream`'s when there is one, else a random draw.
    pub fn decide(&self, upstream: Option<Decision>) -> Decision {
        self.decide_with(upstream, fastrand::u64(..))
    }

    /// [`Self::decide`] with the random draw given (tests).
    pub fn decide_with(&self, upstream: Option<Decision>, draw: u64) -> Decision {
        if let Some(d) = upstream {
            return d;
        }
        let t = self.threshold.load(Ordering::Relaxed);
        if t == u64::MAX || draw < t {
            Decision::Sampled
        } else {
            Decision::NotSampled
        }
    }
}

fn threshold(percent: f64) -> u64 {
    if percent.is_nan() || percent <= 0.0 {
        0
    } else if percent >= 100.0 {
        u64::MAX
    } else {
        // The share of the u64 range below the threshold is percent/100 (to f64 precision:
        // 1e-15 %, well under any rate anyone sets).
        (percent / 100.0 * u64::MAX as f64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_decision_is_honoured_whatever_the_rate() {
        for percent in [0.0, 1.0, 100.0] {
            let s = Sampler::new(percent);
            for draw in [0, u64::MAX / 2, u64::MAX] {
                assert_eq!(
                    s.decide_with(Some(Decision::Sampled), draw),
                    Decision::Sampled
                );
                assert_eq!(
                    s.decide_with(Some(Decision::NotSampled), draw),
                    Decision::NotSampled
                );
                assert_eq!(s.decide_with(Some(Decision::Debug), draw), Decision::Debug);
            }
        }
    }

    #[test]
    fn zero_percent_never_samples_and_a_hundred_always_does() {
        let never = Sampler::new(0.0);
        let always = Sampler::new(100.0);
        for draw in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            assert_eq!(never.decide_with(None, draw), Decision::NotSampled);
            assert_eq!(always.decide_with(None, draw), Decision::Sampled);
        }
    }

    #[test]
    fn a_fractional_rate_samples_draws_below_its_share_of_the_range() {
        // 0.5 %: draws in the lowest 0.5 % of the range are sampled, the rest are not.
        let s = Sampler::new(0.5);
        let edge = (u64::MAX as f64 * 0.005) as u64;
        assert_eq!(s.decide_with(None, 0), Decision::Sampled);
        assert_eq!(s.decide_with(None, edge - 1024), Decision::Sampled);
        assert_eq!(s.decide_with(None, edge + 4096), Decision::NotSampled);
        assert_eq!(s.decide_with(None, u64::MAX), Decision::NotSampled);
    }

    #[test]
    fn the_default_rate_is_one_percent() {
        let s = Sampler::default();
        let edge = u64::MAX / 100;
        assert_eq!(s.decide_with(None, edge - 4096), Decision::Sampled);
        assert_eq!(s.decide_with(None, edge + 4096), Decision::NotSampled);
    }

    #[test]
    fn a_new_rate_applies_to_the_next_decision() {
        let s = Sampler::new(0.0);
        assert_eq!(s.decide_with(None, 0), Decision::NotSampled);
        s.set(100.0);
        assert_eq!(s.decide_with(None, u64::MAX), Decision::Sampled);
        s.set(f64::NAN);
        assert_eq!(s.decide_with(None, 0), Decision::NotSampled);
    }

    #[test]
    fn the_random_draw_samples_about_the_rate() {
        // 10 % of 20 000 draws: 2 000 expected; ±500 is over 10 standard deviations (σ ≈ 42).
        let s = Sampler::new(10.0);
        let sampled = (0..20_000).filter(|_| s.decide(None).is_sampled()).count();
        assert!((1_500..=2_500).contains(&sampled), "{sampled}");
    }
}
