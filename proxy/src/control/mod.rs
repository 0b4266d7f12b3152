//! The proxy's side of the control plane: the gRPC channel, the certificate manager and the
//! discovery client.
//!
//! Promises: the private key is generated here and never leaves the process; a still-valid
//! certificate is never dropped because renewal failed; the last good config stays in force while
//! the control plane is away; anything that cannot be applied is NACKed with the reason.

mod channel;
pub mod discovery;
pub mod identity;

pub use channel::Channel;

use std::time::Duration;

/// Exponential backoff with full jitter: 0.5 s, 1 s, 2 s … capped at `max`, each randomised to
/// 50–100 % so that proxies restarted together do not retry in lock step.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min,
            min,
            max,
        }
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next.mul_f64(0.5 + 0.5 * unit_random());
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// A random number in [0, 1) from the system RNG (no extra dependency for jitter).
pub fn unit_random() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Reads the bearer credential (re-read each time, so rotation needs no restart).
pub fn read_token(path: &std::path::Path) -> Result<String, std::io::Error> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(8));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(250) && delays[0] <= Duration::from_millis(500));
        assert!(delays[7] >= Duration::from_secs(4) && delays[7] <= Duration::from_secs(8));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }
}
