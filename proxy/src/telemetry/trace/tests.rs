use super::*;
use http::HeaderValue;

fn settings(percent: f64) -> Settings {
    Settings {
        sampling_percent: percent,
        ..Settings::default()
    }
}

#[test]
fn a_request_without_context_starts_a_trace_and_gets_a_request_id() {
    let tracer = Tracer::disabled();
    tracer.configure(&settings(100.0));
    let mut h = HeaderMap::new();
    let span = tracer.start(SpanKind::Client, &mut h);
    assert!(span.is_sampled());
    let tp = h["traceparent"].to_str().unwrap().to_string();
    assert_eq!(tp.len(), 55);
    assert_eq!(&tp[3..35], span.trace_id().unwrap());
    assert_eq!(&tp[36..52], span.span_id());
    assert!(tp.ends_with("-01"));
    assert_eq!(h["x-request-id"].len(), 36);
    // Without an endpoint the span records nothing.
    assert!(span.recording.is_none());
}

#[test]
fn the_next_hop_is_a_child_of_this_one() {
    let tracer = Tracer::disabled();
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    let span = tracer.start(SpanKind::Server, &mut h);
    assert_eq!(span.trace_id().unwrap(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span.context.parent_span_id, Some(0x00f067aa0ba902b7));
    assert_ne!(span.span_id(), "00f067aa0ba902b7");
    assert_eq!(
        h["traceparent"],
        format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", span.span_id())
    );
}

#[test]
fn an_unsampled_parent_stays_unsampled_at_a_hundred_percent() {
    let tracer = Tracer::disabled();
    tracer.configure(&settings(100.0));
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
    );
    let span = tracer.start(SpanKind::Server, &mut h);
    assert!(!span.is_sampled());
    assert!(h["traceparent"].to_str().unwrap().ends_with("-00"));
}

#[test]
fn zero_percent_samples_nothing_new() {
    let tracer = Tracer::disabled();
    tracer.configure(&settings(0.0));
    for _ in 0..100 {
        let mut h = HeaderMap::new();
        assert!(!tracer.start(SpanKind::Client, &mut h).is_sampled());
    }
}

#[test]
fn the_resource_names_the_service_istios_way() {
    let mut s = Settings::default();
    assert_eq!(
        s.resource(),
        vec![("service.name", "sinew-proxy".to_string())]
    );
    s.workload.name = "reviews-v2".into();
    s.workload.namespace = "shop".into();
    s.workload.canonical_service = "reviews".into();
    s.workload.canonical_revision = "v2".into();
    s.pod = "reviews-v2-7d9f-abcde".into();
    assert_eq!(
        s.resource(),
        vec![
            ("service.name", "reviews.shop".to_string()),
            ("service.version", "v2".to_string()),
            ("k8s.namespace.name", "shop".to_string()),
            ("k8s.pod.name", "reviews-v2-7d9f-abcde".to_string()),
        ]
    );
}

#[test]
fn propagation_values_are_mostly_never_indexed_and_repeating_headers_are_left_alone() {
    // Unique per request: HPACK must not churn its dynamic table with them, but one in 64 is
    // indexed to keep the names in the table. Seeded: the same draws every run.
    fastrand::seed(12);
    let tracer = Tracer::disabled();
    let (mut indexed, starts) = ([0; 3], 640);
    for _ in 0..starts {
        let mut h = http::HeaderMap::new();
        h.insert(
            "b3",
            http::HeaderValue::from_static("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        );
        h.insert("x-request-id", http::HeaderValue::from_static("kept-id"));
        h.insert("user-agent", http::HeaderValue::from_static("curl/8"));
        let _span = tracer.start(SpanKind::Client, &mut h);
        for (n, name) in ["traceparent", "b3", "x-request-id"].iter().enumerate() {
            indexed[n] += usize::from(!h[*name].is_sensitive());
        }
        assert_eq!(h["x-request-id"], "kept-id");
        assert!(!h["user-agent"].is_sensitive());
    }
    for (n, name) in ["traceparent", "b3", "x-request-id"].iter().enumerate() {
        // 10 expected; far from both "never" and "often".
        assert!(
            (1..=30).contains(&indexed[n]),
            "{name}: {} of {starts} indexed",
            indexed[n]
        );
    }
    // A generated id too.
    let generated = (0..starts)
        .filter(|_| {
            let mut h = http::HeaderMap::new();
            let _span = tracer.start(SpanKind::Server, &mut h);
            h["x-request-id"].is_sensitive()
        })
        .count();
    assert!((starts - 30..starts).contains(&generated), "{generated}");
}
