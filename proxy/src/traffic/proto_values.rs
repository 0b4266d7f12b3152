//! Reading traffic-policy proto values: durations and the error that names the field.
//!
//! Promises: a duration is either unset (the caller's default), or positive and whole; anything
//! else is a [`ConfigError::Invalid`] naming the proto field path.

use crate::config::ConfigError;
pub(crate) use crate::config::invalid;
use std::time::Duration;

/// A duration that must be positive when set (Istio: ≥ 1 ms).
pub(crate) fn positive(
    field: &str,
    d: &Option<pbjson_types::Duration>,
) -> Result<Option<Duration>, ConfigError> {
    d.as_ref().map(|d| at_least_1ms(field, d)).transpose()
}

/// A set duration of at least 1 ms, as istiod's webhook requires.
pub(crate) fn at_least_1ms(
    field: &str,
    d: &pbjson_types::Duration,
) -> Result<Duration, ConfigError> {
    match non_negative(field, &Some(*d))? {
        Some(d) if d >= Duration::from_millis(1) => Ok(d),
        _ => Err(invalid(field, "must be at least 1ms")),
    }
}

/// A duration that may be zero (`idleTimeout: 0s` disables) but not negative.
pub(crate) fn non_negative(
    field: &str,
    d: &Option<pbjson_types::Duration>,
) -> Result<Option<Duration>, ConfigError> {
    match d {
        None => Ok(None),
        Some(d) if d.seconds < 0 || d.nanos < 0 => Err(invalid(field, "must not be negative")),
        Some(d) if d.nanos >= 1_000_000_000 => Err(invalid(field, "nanos must be below 1s")),
        Some(d) => Ok(Some(Duration::new(d.seconds as u64, d.nanos as u32))),
    }
}

/// A percent, 0–100.
pub(crate) fn percent(field: &str, p: u32) -> Result<u32, ConfigError> {
    match p {
        0..=100 => Ok(p),
        _ => Err(invalid(field, format!("{p} is not a percent (0-100)"))),
    }
}
