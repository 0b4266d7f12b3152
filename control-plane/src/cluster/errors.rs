//! What a failed API call means: `kube::Error` reduced to the few cases callers act on.
//!
//! Classified by the HTTP **code**, not the `reason`: API servers and fakes disagree on reasons
//! (kmock answers a duplicate create with 409 and reason "Object Already Exists", not
//! "AlreadyExists"), and a path the server does not serve (a CRD not installed) comes back as
//! plain text, which kube turns into a `Status` with the code and reason "Failed to parse error
//! data". Only when a JSON `Status` carries no code does its reason decide.

use kube::core::Status;

/// A failed API call, by what the caller should do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiFailure {
    /// 404: the object (or the whole kind) does not exist.
    NotFound,
    /// 409: on a create, the object already exists; on a write that carried a
    /// `resourceVersion`, someone else wrote first. Re-read and decide again.
    Conflict,
    /// 410: a watch's resourceVersion is too old; re-list.
    Gone,
    /// 401: the API server does not accept our own credentials.
    Unauthorized,
    /// 403: RBAC does not grant this verb on this resource.
    Forbidden,
    /// 400 or 422: the API server refused what we sent (a bug on our side, or a schema).
    Invalid,
    /// 429, 5xx, or no answer at all (connection refused, reset, timeout): try again later.
    Unavailable,
    /// Anything else (an unexpected code, a response we could not decode).
    Other,
}

/// The failure class of `error`.
pub fn classify(error: &kube::Error) -> ApiFailure {
    match error {
        kube::Error::Api(status) => classify_status(status),
        // No HTTP answer: the server is down, restarting or unreachable.
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            ApiFailure::Unavailable
        }
        _ => ApiFailure::Other,
    }
}

fn classify_status(status: &Status) -> ApiFailure {
    match status.code {
        404 => ApiFailure::NotFound,
        409 => ApiFailure::Conflict,
        410 => ApiFailure::Gone,
        401 => ApiFailure::Unauthorized,
        403 => ApiFailure::Forbidden,
        400 | 422 => ApiFailure::Invalid,
        429 | 500..=599 => ApiFailure::Unavailable,
        0 => match status.reason.as_str() {
            "NotFound" => ApiFailure::NotFound,
            "AlreadyExists" | "Conflict" => ApiFailure::Conflict,
            "Expired" | "Gone" => ApiFailure::Gone,
            "Unauthorized" => ApiFailure::Unauthorized,
            "Forbidden" => ApiFailure::Forbidden,
            "Invalid" | "BadRequest" => ApiFailure::Invalid,
            "TooManyRequests" | "ServiceUnavailable" | "InternalError" | "Timeout"
            | "ServerTimeout" => ApiFailure::Unavailable,
            _ => ApiFailure::Other,
        },
        _ => ApiFailure::Other,
    }
}

// === impl ApiFailure ===

impl ApiFailure {
    /// A short label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Gone => "gone",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Invalid => "invalid",
            Self::Unavailable => "unavailable",
            Self::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Status::failure("test", reason).with_code(code).boxed())
    }

    #[test]
    fn the_code_decides_whatever_the_reason_says() {
        assert_eq!(
            classify(&api(404, "Failed to parse error data")),
            ApiFailure::NotFound
        );
        // kmock's reason for a duplicate create.
        assert_eq!(
            classify(&api(409, "Object Already Exists")),
            ApiFailure::Conflict
        );
        assert_eq!(classify(&api(409, "AlreadyExists")), ApiFailure::Conflict);
        assert_eq!(classify(&api(410, "Expired")), ApiFailure::Gone);
        assert_eq!(classify(&api(403, "NotFound")), ApiFailure::Forbidden);
        assert_eq!(classify(&api(401, "")), ApiFailure::Unauthorized);
        assert_eq!(classify(&api(422, "Invalid")), ApiFailure::Invalid);
        assert_eq!(classify(&api(503, "")), ApiFailure::Unavailable);
        assert_eq!(
            classify(&api(429, "TooManyRequests")),
            ApiFailure::Unavailable
        );
        assert_eq!(classify(&api(418, "NotFound")), ApiFailure::Other);
    }

    #[test]
    fn a_status_without_a_code_is_classified_by_its_reason() {
        assert_eq!(classify(&api(0, "AlreadyExists")), ApiFailure::Conflict);
        assert_eq!(classify(&api(0, "NotFound")), ApiFailure::NotFound);
        assert_eq!(classify(&api(0, "Expired")), ApiFailure::Gone);
        assert_eq!(classify(&api(0, "Something new")), ApiFailure::Other);
    }

    #[test]
    fn no_answer_at_all_is_unavailable() {
        let refused = kube::Error::Service("connection refused".into());
        assert_eq!(classify(&refused), ApiFailure::Unavailable);
        let decode = kube::Error::SerdeError(serde_json::from_str::<u8>("x").unwrap_err());
        assert_eq!(classify(&decode), ApiFailure::Other);
    }
}
