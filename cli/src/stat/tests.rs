use super::*;

fn pod(ns: &str, name: &str, meshed: bool) -> PodState {
    PodState {
        namespace: ns.into(),
        name: name.into(),
        netns: format!("sinew-t.{ns}.{name}"),
        meshed,
        ..Default::default()
    }
}

fn query(kind: Kind) -> Query {
    Query {
        kind,
        name: None,
        namespace: Some("demo".into()),
        from: None,
        to: None,
        window: Duration::from_secs(10),
        watch: false,
        output: Output::Table,
    }
}

/// `frontend-0` and `frontend-1` from the frontend Deployment, a bare meshed pod, an unmeshed one,
/// and a pod in another namespace.
fn pods() -> Vec<PodState> {
    vec![
        pod("demo", "frontend-0", true),
        pod("demo", "frontend-1", true),
        pod("demo", "loadgen-0", true),
        pod("demo", "legacy-0", false),
        pod("other", "frontend-0", true),
    ]
}

fn owner(p: &PodState) -> Option<String> {
    p.name
        .strip_suffix("-0")
        .or_else(|| p.name.strip_suffix("-1"))
        .filter(|n| *n == "frontend")
        .map(str::to_string)
}

#[test]
fn deployments_group_their_pods_and_leave_bare_pods_out() {
    let g = groups(&pods(), owner, &query(Kind::Deploy));
    assert_eq!(
        g,
        [Group {
            namespace: "demo".into(),
            name: "frontend".into(),
            pods: vec![
                ("sinew-t.demo.frontend-0".into(), true),
                ("sinew-t.demo.frontend-1".into(), true)
            ],
        }]
    );
    let mut all = query(Kind::Deploy);
    all.namespace = None;
    let names: Vec<_> = groups(&pods(), owner, &all)
        .into_iter()
        .map(|g| (g.namespace, g.name))
        .collect();
    assert_eq!(
        names,
        [
            ("demo".into(), "frontend".into()),
            ("other".into(), "frontend".into())
        ]
    );
}

#[test]
fn pods_and_namespaces_are_their_own_groups() {
    let mut q = query(Kind::Pod);
    let names: Vec<_> = groups(&pods(), owner, &q)
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["frontend-0", "frontend-1", "legacy-0", "loadgen-0"]);
    q.name = Some("legacy-0".into());
    let g = groups(&pods(), owner, &q);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].pods, [("sinew-t.demo.legacy-0".to_string(), false)]);

    let ns = groups(&pods(), owner, &query(Kind::Namespace));
    let sizes: Vec<_> = ns.iter().map(|g| (g.name.as_str(), g.pods.len())).collect();
    assert_eq!(
        sizes,
        [("demo", 4), ("other", 1)],
        "-n does not narrow namespaces"
    );
}

fn requests(reporter: &str, code: &str, n: u64, peer: &str) -> String {
    let (mine, theirs) = if reporter == "source" {
        ("source", "destination")
    } else {
        ("destination", "source")
    };
    format!(
        "istio_requests_total{{reporter=\"{reporter}\",{mine}_workload=\"me\",{theirs}_workload=\"{peer}\",{theirs}_workload_namespace=\"demo\",response_code=\"{code}\"}} {n}\n"
    )
}

fn scrapes(entries: &[(&str, String)]) -> HashMap<String, Scrape> {
    entries
        .iter()
        .map(|(netns, text)| (netns.to_string(), Scrape::parse(text)))
        .collect()
}

#[test]
fn rows_sum_a_groups_pods_per_direction() {
    let g = groups(&pods(), owner, &query(Kind::Deploy));
    let before = scrapes(&[
        (
            "sinew-t.demo.frontend-0",
            requests("destination", "200", 10, "loadgen"),
        ),
        ("sinew-t.demo.frontend-1", String::new()),
    ]);
    let after = scrapes(&[
        (
            "sinew-t.demo.frontend-0",
            requests("destination", "200", 30, "loadgen")
                + &requests("source", "503", 5, "ratings"),
        ),
        (
            "sinew-t.demo.frontend-1",
            requests("destination", "200", 18, "loadgen")
                + &requests("destination", "500", 2, "loadgen")
                + &requests("source", "200", 15, "ratings"),
        ),
    ]);
    let rows = rows(&g, &before, &after, 10.0, &filters(&query(Kind::Deploy)));
    assert_eq!(rows.len(), 2);
    let (inb, out) = (&rows[0], &rows[1]);
    assert_eq!(
        (inb.direction, out.direction),
        (Direction::Inbound, Direction::Outbound)
    );
    assert_eq!((inb.meshed_pods, inb.pods), (2, 2));
    assert_eq!(inb.stats.requests, 40.0);
    assert_eq!(inb.stats.rps, 4.0);
    assert_eq!(inb.stats.success_rate, Some(0.95));
    assert_eq!(out.stats.requests, 20.0);
    assert_eq!(out.stats.success_rate, Some(0.75));
}

#[test]
fn a_pod_missing_from_a_scrape_contributes_nothing() {
    let g = groups(&pods(), owner, &query(Kind::Deploy));
    let before = scrapes(&[("sinew-t.demo.frontend-0", String::new())]);
    let after = scrapes(&[
        (
            "sinew-t.demo.frontend-0",
            requests("destination", "200", 3, "x"),
        ),
        (
            "sinew-t.demo.frontend-1",
            requests("destination", "200", 1000, "x"),
        ),
    ]);
    let rows = rows(&g, &before, &after, 1.0, &filters(&query(Kind::Deploy)));
    assert_eq!(rows[0].stats.requests, 3.0);
}

#[test]
fn from_and_to_show_only_their_side_and_peer() {
    let mut q = query(Kind::Pod);
    assert_eq!(filters(&q).len(), 2);
    q.to = Some(("demo".into(), "ratings".into()));
    assert_eq!(
        filters(&q),
        [Filter {
            direction: Direction::Outbound,
            peer: Some(("demo".into(), "ratings".into()))
        }]
    );
    q.to = None;
    q.from = Some(("demo".into(), "loadgen".into()));
    let f = filters(&q);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].direction, Direction::Inbound);

    let g = groups(&pods(), owner, &query(Kind::Pod));
    let after = scrapes(&[(
        "sinew-t.demo.frontend-0",
        requests("destination", "200", 3, "loadgen") + &requests("destination", "200", 4, "other"),
    )]);
    let before = scrapes(&[("sinew-t.demo.frontend-0", String::new())]);
    let rows = rows(&g, &before, &after, 1.0, &f);
    assert_eq!(rows[0].name, "frontend-0");
    assert_eq!(rows[0].stats.requests, 3.0);
}

#[test]
fn the_table_reads_like_linkerds() {
    let row = |name: &str, direction, success, p50| Row {
        namespace: "demo".into(),
        name: name.into(),
        direction,
        meshed_pods: 1,
        pods: 1,
        stats: Stats {
            requests: 20.0,
            rps: 2.0,
            success_rate: success,
            latency_ms_p50: p50,
            latency_ms_p95: Some(12.4),
            latency_ms_p99: Some(24.6),
            tcp_connections: 3.0,
        },
    };
    let rows = [
        row("frontend", Direction::Inbound, Some(0.9512), Some(1.25)),
        row("frontend", Direction::Outbound, None, None),
    ];
    assert_eq!(
        table(&rows, Kind::Deploy),
        "NAMESPACE  NAME      MESHED  DIRECTION  SUCCESS  RPS     LATENCY_P50  LATENCY_P95  LATENCY_P99  TCP_CONN\n\
         demo       frontend  1/1     inbound    95.12%   2.0rps  1.2ms        12ms         25ms         3\n\
         demo       frontend  1/1     outbound   -        2.0rps  -            12ms         25ms         3\n"
    );
    assert!(table(&rows, Kind::Namespace).starts_with("NAME  "));
    let json = serde_json::to_value(&rows[0]).unwrap();
    assert_eq!(json["direction"], "inbound");
    assert_eq!(json["successRate"], 0.9512);
    assert_eq!(json["latencyMsP99"], 24.6);
    assert_eq!(json["meshedPods"], 1);
}

#[test]
fn windows_and_peers_parse_or_say_why_not() {
    assert_eq!(parse_window("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_window("1m"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_window("1500ms"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_window("2.5"), Ok(Duration::from_millis(2500)));
    for bad in [
        "", "s", "10h", "-1s", "0s", "999ms", "2h", "1e400s", "1.2.3s", "NaNs",
    ] {
        assert!(parse_window(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        parse_peer("ratings", "demo"),
        Ok(("demo".into(), "ratings".into()))
    );
    assert_eq!(
        parse_peer("shop/web", "demo"),
        Ok(("shop".into(), "web".into()))
    );
    assert_eq!(
        parse_peer("deploy/web", "demo"),
        Ok(("demo".into(), "web".into()))
    );
    assert_eq!(
        parse_peer("shop/deploy/web", "demo"),
        Ok(("shop".into(), "web".into()))
    );
    for bad in ["", "/", "a/b/c", "Web", "a b", "x/\u{e9}", "deploy/"] {
        assert!(parse_peer(bad, "demo").is_err(), "{bad:?}");
    }
}

#[test]
fn the_live_line_counts_each_request_once_at_its_caller() {
    let before = scrapes(&[("a", String::new()), ("b", String::new())]);
    let after = scrapes(&[
        (
            "a",
            requests("source", "200", 18, "b") + &requests("source", "503", 2, "b"),
        ),
        // b's inbound view of the same requests is not counted again.
        ("b", requests("destination", "200", 18, "a")),
    ]);
    assert_eq!(
        live_line(&before, &after, 2.0, 5),
        "10.0 req/s across the mesh, success 90.0%, p50 -, p99 -, 5 pods"
    );
}
