//! The checks of `telemetry.tracing`'s values (used by [`super::telemetry`] and the bootstrap's
//! flags).
//!
//! Promises: an endpoint that is set is `http://host:port` (the proxy's OTLP client speaks
//! plaintext gRPC), a sampling percentage is a number from 0 to 100; anything else is an error
//! naming the field. Unset fields take Istio's defaults (1 %, reporting on).

use super::{ConfigError, invalid};

/// The sampling percentage `p`, if it is one.
pub fn percent(p: f64) -> Result<f64, ConfigError> {
    if !(0.0..=100.0).contains(&p) {
        return Err(invalid(
            "telemetry.tracing.randomSamplingPercentage",
            format!("{p} is not a percentage from 0 to 100"),
        ));
    }
    Ok(p)
}

/// `""`: none; else an `http://host:port` URL.
pub fn endpoint(e: &str) -> Result<Option<String>, ConfigError> {
    const FIELD: &str = "telemetry.tracing.otlpEndpoint";
    if e.is_empty() {
        return Ok(None);
    }
    let uri: http::Uri = e
        .parse()
        .map_err(|err| invalid(FIELD, format!("{e:?} is not a URL: {err}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(invalid(
                FIELD,
                format!(
                    "{e:?}: https is not supported (the proxy exports OTLP/gRPC in plaintext); use http://"
                ),
            ));
        }
        _ => {
            return Err(invalid(
                FIELD,
                format!("{e:?} must be http://host:port (OTLP/gRPC, usually port 4317)"),
            ));
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid(FIELD, format!("{e:?} has no host")));
    };
    if authority.port_u16().is_none() {
        return Err(invalid(
            FIELD,
            format!("{e:?} has no port (OTLP/gRPC listens on 4317)"),
        ));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid(
            FIELD,
            format!("{e:?}: OTLP/gRPC takes no path; give http://host:port"),
        ));
    }
    Ok(Some(format!("http://{authority}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::trace::Settings;
    use sinew_proto::config::v1 as pb;

    fn msg(yaml: &str) -> pb::ProxyConfig {
        serde_saphyr::from_str(yaml).expect("test yaml")
    }

    fn settings(msg: &pb::ProxyConfig) -> Result<Settings, ConfigError> {
        super::super::telemetry(msg.telemetry.as_ref(), msg.control_plane.as_ref(), &|_| {
            None
        })
        .map(|t| t.tracing)
    }

    #[test]
    fn unset_tracing_is_istios_default() {
        let s = settings(&msg("{}")).unwrap();
        assert_eq!(s.endpoint, None);
        assert_eq!(s.sampling_percent, 1.0);
        assert!(s.report);
    }

    #[test]
    fn tracing_fields_are_read() {
        let s = settings(&msg(
            "telemetry: {tracing: {otlpEndpoint: 'http://10.0.0.1:4317', randomSamplingPercentage: 12.5, disableSpanReporting: true}}",
        ))
        .unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://10.0.0.1:4317"));
        assert_eq!(s.sampling_percent, 12.5);
        assert!(!s.report);
        // An explicit 0 is 0, not the default.
        let zero = settings(&msg("telemetry: {tracing: {randomSamplingPercentage: 0}}")).unwrap();
        assert_eq!(zero.sampling_percent, 0.0);
    }

    #[test]
    fn bad_tracing_values_are_refused_with_the_field() {
        for (yaml, says) in [
            (
                "telemetry: {tracing: {randomSamplingPercentage: 101}}",
                "from 0 to 100",
            ),
            (
                "telemetry: {tracing: {randomSamplingPercentage: -1}}",
                "from 0 to 100",
            ),
            (
                "telemetry: {tracing: {otlpEndpoint: 'https://jaeger:4317'}}",
                "https is not supported",
            ),
            (
                "telemetry: {tracing: {otlpEndpoint: 'jaeger:4317'}}",
                "http://host:port",
            ),
            (
                "telemetry: {tracing: {otlpEndpoint: 'http://jaeger'}}",
                "no port",
            ),
            (
                "telemetry: {tracing: {otlpEndpoint: 'http://jaeger:4317/v1/traces'}}",
                "no path",
            ),
            (
                "telemetry: {tracing: {otlpEndpoint: 'http://ja eger:4317'}}",
                "not a URL",
            ),
        ] {
            let e = settings(&msg(yaml)).unwrap_err().to_string();
            assert!(e.starts_with("telemetry.tracing."), "{yaml}: {e}");
            assert!(e.contains(says), "{yaml}: {e}");
        }
        assert!(percent(f64::NAN).is_err());
    }

    #[test]
    fn the_workload_falls_back_to_the_pods_labels() {
        let s = settings(&msg(
            "controlPlane: {address: 'cp:15012', rootCertFile: r, tokenFile: t, pod: reviews-v2-abc, namespace: shop, labels: {app: reviews, version: v2}}",
        ))
        .unwrap();
        assert_eq!(&*s.workload.canonical_service, "reviews");
        assert_eq!(&*s.workload.canonical_revision, "v2");
        assert_eq!(&*s.pod, "reviews-v2-abc");
        assert_eq!(
            s.resource()[0],
            ("service.name", "reviews.shop".to_string())
        );

        let sent = settings(&msg(
            "telemetry: {workload: {name: reviews-v2, namespace: shop, canonicalService: reviews, canonicalRevision: v2, pod: reviews-v2-abc}}",
        ))
        .unwrap();
        assert_eq!(&*sent.workload.name, "reviews-v2");
        assert_eq!(&*sent.pod, "reviews-v2-abc");
    }
}
