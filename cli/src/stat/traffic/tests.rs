use super::*;

const INF: f64 = f64::INFINITY;

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn quantiles_interpolate_inside_the_bucket_as_promql_does() {
    // 10 observations ≤ 1, 10 in (1, 2], 20 in (2, 4], none above.
    let b = [(1.0, 10.0), (2.0, 20.0), (4.0, 40.0), (INF, 40.0)];
    // rank 10 → the end of the first bucket, which starts at 0.
    assert!(close(histogram_quantile(0.25, &b), 1.0));
    assert!(close(histogram_quantile(0.125, &b), 0.5));
    // rank 20 → the end of (1, 2].
    assert!(close(histogram_quantile(0.5, &b), 2.0));
    // rank 30 → half way through (2, 4].
    assert!(close(histogram_quantile(0.75, &b), 3.0));
    // rank 39.6 → 2 + 2 × 19.6/20.
    assert!(close(histogram_quantile(0.99, &b), 3.96));
    assert!(close(histogram_quantile(0.0, &b), 0.0));
    assert!(close(histogram_quantile(1.0, &b), 4.0));
}

#[test]
fn a_rank_in_the_inf_bucket_answers_the_highest_finite_bound() {
    let b = [(0.5, 0.0), (1.0, 1.0), (INF, 10.0)];
    assert!(close(histogram_quantile(0.5, &b), 1.0));
    assert!(
        close(histogram_quantile(0.05, &b), 0.75),
        "rank 0.5 of (0.5, 1]"
    );
}

#[test]
fn buckets_in_any_order_and_dipping_counts_are_evened_out() {
    let b = [
        (INF, 40.0),
        (2.0, 20.0),
        (4.0, 39.0),
        (1.0, 10.0),
        (3.0, 18.0),
    ];
    // After sorting, (3, 18) dips below (2, 20) and becomes 20; (4, 39) stays.
    assert!(close(histogram_quantile(0.5, &b), 2.0));
    assert!(
        close(histogram_quantile(0.975, &b), 4.0 + 0.0),
        "39 reached at 4"
    );
}

#[test]
fn no_quantile_without_observations_or_an_inf_bucket() {
    assert_eq!(histogram_quantile(0.5, &[(1.0, 0.0), (INF, 0.0)]), None);
    assert_eq!(histogram_quantile(0.5, &[(1.0, 3.0), (2.0, 5.0)]), None);
    assert_eq!(histogram_quantile(0.5, &[(INF, 5.0)]), None);
    assert_eq!(histogram_quantile(0.5, &[]), None);
    assert_eq!(histogram_quantile(1.5, &[(1.0, 1.0), (INF, 1.0)]), None);
    assert_eq!(
        histogram_quantile(f64::NAN, &[(1.0, 1.0), (INF, 1.0)]),
        None
    );
}

#[test]
fn counters_grow_reset_and_appear() {
    assert_eq!(increase(Some(5.0), 8.0), 3.0);
    assert_eq!(increase(Some(8.0), 8.0), 0.0);
    assert_eq!(
        increase(Some(100.0), 7.0),
        7.0,
        "a reset: 7 since the restart"
    );
    assert_eq!(increase(None, 4.0), 4.0, "a new series started at 0");
    assert_eq!(increase(Some(1.0), f64::NAN), 0.0);
    assert_eq!(increase(Some(f64::NAN), 3.0), 3.0);
    assert_eq!(increase(None, -2.0), 0.0);
}

/// A proxy's answer with Istio's names: `frontend` calls `reviews`, `load` calls `frontend`.
fn metrics(ok_out: u64, fail_out: u64, ok_in: u64, fast_in: u64, opened: u64) -> String {
    format!(
        "# TYPE istio_requests_total counter\n\
istio_requests_total{{reporter=\"source\",source_workload=\"frontend\",source_workload_namespace=\"demo\",destination_workload=\"reviews\",destination_workload_namespace=\"demo\",response_code=\"200\"}} {ok_out}\n\
istio_requests_total{{reporter=\"source\",source_workload=\"frontend\",source_workload_namespace=\"demo\",destination_workload=\"reviews\",destination_workload_namespace=\"demo\",response_code=\"503\"}} {fail_out}\n\
istio_requests_total{{reporter=\"destination\",source_workload=\"load\",source_workload_namespace=\"demo\",destination_workload=\"frontend\",destination_workload_namespace=\"demo\",response_code=\"200\"}} {ok_in}\n\
istio_request_duration_milliseconds_bucket{{reporter=\"destination\",source_workload=\"load\",source_workload_namespace=\"demo\",response_code=\"200\",le=\"1\"}} {fast_in}\n\
istio_request_duration_milliseconds_bucket{{reporter=\"destination\",source_workload=\"load\",source_workload_namespace=\"demo\",response_code=\"200\",le=\"5\"}} {ok_in}\n\
istio_request_duration_milliseconds_bucket{{reporter=\"destination\",source_workload=\"load\",source_workload_namespace=\"demo\",response_code=\"200\",le=\"+Inf\"}} {ok_in}\n\
istio_tcp_connections_opened_total{{reporter=\"destination\",source_workload=\"load\",source_workload_namespace=\"demo\"}} {opened}\n\
istio_tcp_connections_closed_total{{reporter=\"destination\",source_workload=\"load\",source_workload_namespace=\"demo\"}} 1\n\
sinew_requests_total{{direction=\"outbound\",status_class=\"2xx\"}} 999\n"
    )
}

#[test]
fn a_window_counts_requests_failures_latency_and_connections_per_direction() {
    let before = Scrape::parse(&metrics(10, 1, 20, 5, 3));
    let after = Scrape::parse(&metrics(28, 3, 40, 15, 4));
    let out = Traffic::between(&before, &after, &Filter::direction(Direction::Outbound));
    assert_eq!((out.requests, out.failures), (20.0, 2.0));
    assert_eq!(
        out.quantile(0.5),
        None,
        "no outbound histogram in this answer"
    );
    let inb = Traffic::between(&before, &after, &Filter::direction(Direction::Inbound));
    assert_eq!((inb.requests, inb.failures, inb.tcp_open), (20.0, 0.0, 3.0));
    // 10 of 20 new requests ≤ 1 ms, the other 10 in (1, 5].
    assert!(close(inb.quantile(0.5), 1.0));
    assert!(close(inb.quantile(0.75), 3.0));

    let s = Stats::of(&out, 10.0);
    assert_eq!(s.rps, 2.0);
    assert_eq!(s.success_rate, Some(0.9));
    let s = Stats::of(&inb, 10.0);
    assert_eq!(s.success_rate, Some(1.0));
    // rank 19.8 → 1 + 4 × 9.8/10.
    assert!(close(s.latency_ms_p99, 4.92));
}

#[test]
fn a_restarted_proxy_counts_from_its_restart() {
    let before = Scrape::parse(&metrics(500, 50, 0, 0, 0));
    let after = Scrape::parse(&metrics(7, 1, 0, 0, 0));
    let out = Traffic::between(&before, &after, &Filter::direction(Direction::Outbound));
    assert_eq!((out.requests, out.failures), (8.0, 1.0));
}

#[test]
fn a_peer_filter_keeps_only_traffic_with_that_workload() {
    let before = Scrape::parse("");
    let after = Scrape::parse(&metrics(4, 1, 6, 0, 0));
    let to = |ns: &str, name: &str| Filter {
        direction: Direction::Outbound,
        peer: Some((ns.into(), name.into())),
    };
    assert_eq!(
        Traffic::between(&before, &after, &to("demo", "reviews")).requests,
        5.0
    );
    assert_eq!(
        Traffic::between(&before, &after, &to("other", "reviews")).requests,
        0.0
    );
    assert_eq!(
        Traffic::between(&before, &after, &to("demo", "load")).requests,
        0.0
    );
    let from = Filter {
        direction: Direction::Inbound,
        peer: Some(("demo".into(), "load".into())),
    };
    assert_eq!(Traffic::between(&before, &after, &from).requests, 6.0);
}

#[test]
fn traffic_sums_across_proxies() {
    let empty = Scrape::parse("");
    let a = Traffic::between(
        &empty,
        &Scrape::parse(&metrics(0, 0, 10, 10, 2)),
        &Filter::direction(Direction::Inbound),
    );
    let b = Traffic::between(
        &empty,
        &Scrape::parse(&metrics(0, 0, 10, 0, 1)),
        &Filter::direction(Direction::Inbound),
    );
    let mut sum = Traffic::default();
    sum.add(&a);
    sum.add(&b);
    assert_eq!((sum.requests, sum.tcp_open), (20.0, 1.0));
    // 10 ≤ 1 ms (from a) and 10 in (1, 5] (from b): the median is the first bucket's end.
    assert!(close(sum.quantile(0.5), 1.0));
}

#[test]
fn an_empty_window_has_no_rate_of_success_and_no_latency() {
    let s = Stats::of(&Traffic::default(), 10.0);
    assert_eq!(s.requests, 0.0);
    assert_eq!(s.rps, 0.0);
    assert_eq!(s.success_rate, None);
    assert_eq!(s.latency_ms_p50, None);
    assert_eq!(Stats::of(&Traffic::default(), 0.0).rps, 0.0);
}

#[test]
fn unreadable_bucket_bounds_are_not_buckets() {
    assert_eq!(parse_le("+Inf"), Some(INF));
    assert_eq!(parse_le("2.5"), Some(2.5));
    assert_eq!(parse_le("-1"), None);
    assert_eq!(parse_le("NaN"), None);
    assert_eq!(parse_le(""), None);
}
