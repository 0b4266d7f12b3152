//! gRPC status codes by name, as Istio's VirtualService `fault.abort.grpcStatus` writes them:
//! one table for the control plane's validation and the proxy's fault layer.

/// The status names, indexed by code (0 `OK` … 16 `UNAUTHENTICATED`).
pub const STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The code of a status written as its name (any case) or its number (0–16).
pub fn status_code(name: &str) -> Option<u8> {
    match STATUS_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
    {
        Some(i) => u8::try_from(i).ok(),
        None => name
            .parse::<u8>()
            .ok()
            .filter(|c| usize::from(*c) < STATUS_NAMES.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_map_to_their_codes() {
        assert_eq!(status_code("OK"), Some(0));
        assert_eq!(status_code("unavailable"), Some(14));
        assert_eq!(status_code("UNAUTHENTICATED"), Some(16));
        assert_eq!(status_code("16"), Some(16));
        assert_eq!(status_code("17"), None);
        assert_eq!(status_code("NOPE"), None);
        assert_eq!(status_code(""), None);
    }
}
