use crate::registry::testutil::{TempDir, demo, key, parse_files, problems};
use crate::registry::{FileRegistry, TargetPort};

#[test]
fn parses_multi_document_directory_into_snapshot() {
    let snap = parse_files(&demo()).expect("demo is valid");
    assert_eq!(snap.generation(), 1);

    let namespaces: Vec<_> = snap.namespaces().keys().map(String::as_str).collect();
    assert_eq!(namespaces, ["default", "legacy", "shop"]);
    assert!(snap.namespaces()["shop"].injection_enabled);
    assert!(!snap.namespaces()["legacy"].injection_enabled);
    assert!(
        snap.namespaces()["default"].origin.is_none(),
        "default is implicit"
    );

    assert_eq!(
        snap.service_accounts().keys().cloned().collect::<Vec<_>>(),
        [key("shop", "reviews")]
    );

    let services: Vec<_> = snap.services().keys().cloned().collect();
    assert_eq!(
        services,
        [
            key("legacy", "db"),
            key("shop", "ratings"),
            key("shop", "reviews")
        ]
    );
    let reviews = snap.service("shop", "reviews").expect("reviews");
    assert_eq!(
        reviews.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        [9080, 9090, 9100, 53]
    );
    assert_eq!(reviews.ports[0].target_port, TargetPort::Name("web".into()));
    assert_eq!(
        reviews.ports[1].target_port,
        TargetPort::Number(9090),
        "defaults to port"
    );
    assert_eq!(reviews.ports[3].transport, "UDP");
    assert_eq!(
        reviews.selector.as_ref().map(|s| s.len()),
        Some(1),
        "selector kept"
    );
    assert_eq!(reviews.vip, None, "no VIP until assigned");
    assert_eq!(
        reviews.origin.to_string(),
        "demo/app.yaml: document 1 (line 1)"
    );
    let db = snap.service("legacy", "db").expect("db");
    assert_eq!(db.declared_cluster_ip, Some("198.19.0.99".parse().unwrap()));
    assert_eq!(db.vip, db.declared_cluster_ip);

    let pods: Vec<_> = snap.pods().keys().cloned().collect();
    assert_eq!(
        pods,
        [
            key("legacy", "db"),
            key("shop", "ratings"),
            key("shop", "reviews-0"),
            key("shop", "reviews-1"),
        ]
    );
    let ratings = snap.pod("shop", "ratings").expect("ratings");
    assert_eq!(ratings.service_account, "default");
    assert_eq!(ratings.owner, None);
    assert_eq!(ratings.origin.document(), Some(2));

    // Skipped kinds are warnings that say where they were.
    assert_eq!(
        snap.warnings(),
        ["demo/app.yaml: document 7 (line 94): v1 ConfigMap is not used by local mode; skipped"]
    );
}

#[test]
fn deployment_expands_to_indexed_pods_with_template_labels() {
    let snap = parse_files(&demo()).expect("demo is valid");
    for i in 0..2 {
        let pod = snap.pod("shop", &format!("reviews-{i}")).expect("replica");
        assert_eq!(pod.owner.as_deref(), Some("reviews"));
        assert_eq!(pod.service_account, "reviews");
        assert_eq!(pod.labels.get("app").map(String::as_str), Some("reviews"));
        assert_eq!(pod.labels.get("version").map(String::as_str), Some("v1"));
        assert_eq!(
            pod.origin.to_string(),
            "demo/app.yaml: document 2 (line 22)"
        );
        // The full pod is kept for the runner: name, namespace, and the container's command.
        assert_eq!(pod.object.metadata.name.as_deref(), Some(pod.name.as_str()));
        assert_eq!(pod.object.metadata.namespace.as_deref(), Some("shop"));
        let container = &pod.object.spec.as_ref().expect("spec").containers[0];
        assert_eq!(
            container.command.as_deref(),
            Some(
                &[
                    "python3".to_string(),
                    "-m".into(),
                    "http.server".into(),
                    "9080".into()
                ][..]
            )
        );
        assert_eq!(container.working_dir.as_deref(), Some("/srv"));
        assert_eq!(pod.container_port("web"), Some(9080));
    }
    assert!(snap.pod("shop", "reviews-2").is_none());

    let zero = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: idle}
spec:
  replicas: 0
  selector: {matchLabels: {app: idle}}
  template:
    metadata: {labels: {app: idle}}
    spec: {containers: [{name: app}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: one}
spec:
  selector: {matchLabels: {app: one}}
  template:
    metadata: {labels: {app: one}}
    spec: {containers: [{name: app}]}
"#;
    let snap = parse_files(&[("d.yaml", zero)]).expect("valid");
    let pods: Vec<_> = snap.pods().keys().cloned().collect();
    assert_eq!(
        pods,
        [key("default", "one-0")],
        "replicas default to 1; 0 means none"
    );
}

#[test]
fn pod_is_meshed_only_in_injection_enabled_namespace() {
    let snap = parse_files(&demo()).expect("demo is valid");
    assert!(snap.pod("shop", "reviews-0").expect("pod").meshed);
    assert!(snap.pod("shop", "reviews-1").expect("pod").meshed);
    assert!(
        !snap.pod("legacy", "db").expect("pod").meshed,
        "namespace not labelled"
    );
}

#[test]
fn pod_opts_out_with_inject_false_label_or_annotation_or_host_network() {
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {sinew-injection: enabled}\n";
    let pods = r#"apiVersion: v1
kind: Pod
metadata: {name: by-annotation, namespace: shop, annotations: {sinew.dev/inject: "false"}}
spec: {containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: by-label, namespace: shop, labels: {sinew.dev/inject: "false"}}
spec: {containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: shop}
spec: {hostNetwork: true, containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: explicit-true, namespace: shop, labels: {sinew.dev/inject: "true"}}
spec: {containers: [{name: app}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {sinew-injection: disabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: elsewhere, namespace: other}
spec: {containers: [{name: app}]}
"#;
    let snap = parse_files(&[("a.yaml", ns), ("b.yaml", pods)]).expect("valid");
    let meshed = |ns: &str, name: &str| snap.pod(ns, name).expect("pod").meshed;
    assert!(!meshed("shop", "by-annotation"));
    assert!(!meshed("shop", "by-label"));
    assert!(!meshed("shop", "host"));
    assert!(meshed("shop", "explicit-true"));
    assert!(
        !meshed("other", "elsewhere"),
        "only the value `enabled` turns injection on"
    );
}

#[test]
fn local_mode_follows_the_injectors_rule_for_system_and_istio_namespaces() {
    let docs = r#"apiVersion: v1
kind: Namespace
metadata: {name: kube-system, labels: {sinew-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: both, labels: {sinew-injection: enabled, istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: istio-off, labels: {sinew-injection: enabled, istio-injection: disabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: istio-off}
spec: {containers: [{name: app}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: ours, labels: {sinew-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: dns, namespace: kube-system}
spec: {containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: both}
spec: {containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: ours}
spec: {containers: [{name: app}]}
"#;
    let snap = parse_files(&[("a.yaml", docs)]).expect("valid");
    let meshed = |ns: &str, name: &str| snap.pod(ns, name).expect("pod").meshed;
    assert!(!meshed("kube-system", "dns"), "system namespaces never");
    assert!(
        !meshed("both", "app"),
        "Istio injects there: one mesh per pod"
    );
    assert!(meshed("ours", "app"));
    assert!(
        meshed("istio-off", "app"),
        "istio-injection=disabled is not Istio's"
    );
}

#[test]
fn destination_rules_kept_in_all_four_api_versions() {
    let snap = parse_files(&demo()).expect("demo is valid");
    let rules: Vec<_> = snap
        .destination_rules()
        .iter()
        .map(|r| {
            (
                r.api_version.as_str(),
                r.namespace.as_str(),
                r.name.as_str(),
                r.host.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("networking.istio.io/v1", "shop", "reviews", "reviews"),
            (
                "networking.istio.io/v1beta1",
                "shop",
                "ratings",
                "ratings.shop.svc.cluster.local"
            ),
            (
                "networking.istio.io/v1alpha3",
                "default",
                "db",
                "db.legacy.svc.cluster.local"
            ),
            ("sinew.dev/v1alpha1", "shop", "reviews", "reviews"),
        ]
    );
    let [first, .., last] = snap.destination_rules() else {
        panic!("four rules")
    };
    assert_eq!(first.group(), "networking.istio.io");
    assert_eq!(last.group(), "sinew.dev");
    // Document order stands in for creation time.
    assert!(
        snap.destination_rules()
            .windows(2)
            .all(|w| w[0].age < w[1].age)
    );
    assert_eq!(
        first
            .spec
            .pointer("/trafficPolicy/connectionPool/tcp/maxConnections"),
        Some(&serde_json::json!(10))
    );
    assert_eq!(
        last.spec.pointer("/trafficPolicy/retryBudget/percent"),
        Some(&serde_json::json!(20))
    );
    assert_eq!(
        last.origin.to_string(),
        "demo/rules.yaml: document 4 (line 27)"
    );
}

#[test]
fn empty_documents_are_not_counted() {
    let text = "---\n# nothing here\n---\n\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: app}]}\n---\n~\n---\napiVersion: v1\nkind: Pod\nmetadata: {}\n";
    assert_eq!(
        problems(&[("p.yaml", text)]),
        ["p.yaml: document 2 (line 13): Pod: metadata.name is required"]
    );
}

#[test]
fn files_are_read_recursively_in_path_order_skipping_hidden_and_non_yaml() {
    let dir = TempDir::new("walk");
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: app}}]}}\n"
        )
    };
    dir.write("b.yaml", &pod("from-b"));
    dir.write("a/z.yml", &pod("from-a-z"));
    dir.write("a/y.YAML", &pod("from-a-y"));
    dir.write("notes.txt", "not: yaml at all: [");
    dir.write(".hidden.yaml", "not: [valid");
    dir.write(".git/config.yaml", "not: [valid");
    let snap = FileRegistry::load(dir.path()).expect("valid");
    let mut pods: Vec<_> = snap.pods().values().collect();
    pods.sort_by_key(|p| p.origin.clone());
    let names: Vec<_> = pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["from-a-y", "from-a-z", "from-b"]);
    assert_eq!(
        pods[0].origin.file(),
        Some(dir.path().join("a/y.YAML").as_path())
    );
}

#[test]
fn assignments_file_inside_the_directory_is_not_a_manifest() {
    let dir = TempDir::new("exclude");
    dir.write(
        "pods.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: app}]}\n",
    );
    let file = dir.write(
        "assignments.yaml",
        "pods:\n- {namespace: default, name: a, ip: 198.18.0.7}\n",
    );
    let snap = FileRegistry::load_with_assignments(dir.path(), Some(&file)).expect("valid");
    assert_eq!(
        snap.pod("default", "a").and_then(|p| p.ip),
        Some("198.18.0.7".parse().unwrap())
    );
    // Without being told, it is just a bad manifest.
    let err = FileRegistry::load(dir.path()).expect_err("not a manifest");
    assert!(err.to_string().contains("apiVersion is required"), "{err}");
}

#[test]
fn service_without_port_names_file_document_line_and_reason() {
    let text = r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: shop
spec:
  ports:
  - name: http
    targetPort: 9080
"#;
    assert_eq!(
        problems(&[("examples/demo/app.yaml", text)]),
        [
            "examples/demo/app.yaml: document 2 (line 6): Service \"reviews\": spec.ports[0].port is required"
        ]
    );
}

#[test]
fn syntax_error_reports_the_yaml_library_line() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: app}]}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: b\n  labels: [unclosed\n";
    let got = problems(&[("bad.yaml", text)]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("bad.yaml: document 2 (line 10): invalid YAML: "),
        "{got:?}"
    );
}

#[test]
fn type_error_reports_the_yaml_library_line() {
    let text = "# leading comment\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\nspec:\n  ports:\n  - port: eighty\n";
    let got = problems(&[("svc.yaml", text)]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0],
        "svc.yaml: document 1 (line 9): Service \"reviews\": spec.ports[0].port: expected an integer, got \"eighty\""
    );
}

#[test]
fn duplicate_yaml_keys_are_rejected_like_kubectl_does() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\nspec: {containers: [{name: app}]}\n";
    let got = problems(&[("dup.yaml", text)]);
    assert!(
        got[0].starts_with("dup.yaml: document 1 (line 5): "),
        "{got:?}"
    );
    assert!(got[0].contains("name"), "{got:?}");
}

#[test]
fn documents_without_api_version_or_kind_are_rejected() {
    let text = "kind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: {name: a}\n---\napiVersion: 1\nkind: Pod\n---\n- a list\n";
    assert_eq!(
        problems(&[("x.yaml", text)]),
        [
            "x.yaml: document 1 (line 1): apiVersion is required",
            "x.yaml: document 2 (line 4): kind is required",
            "x.yaml: document 3 (line 7): apiVersion must be a string, not a number",
            "x.yaml: document 4 (line 10): expected a mapping with apiVersion and kind, found a sequence",
        ]
    );
}

#[test]
fn duplicate_objects_name_both_places() {
    let svc =
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec: {ports: [{port: 80}]}\n";
    let pod =
        "apiVersion: v1\nkind: Pod\nmetadata: {name: reviews}\nspec: {containers: [{name: app}]}\n";
    let got = problems(&[("a.yaml", svc), ("b.yaml", &format!("{pod}---\n{svc}"))]);
    assert_eq!(
        got,
        [
            "b.yaml: document 2 (line 6): Service \"reviews\" in namespace \"default\" is already defined at a.yaml: document 1 (line 1)"
        ]
    );

    // Same name in another namespace, or another kind, is fine; each Istio version is the same
    // kind, but sinew.dev's is a different one.
    let dr = |v: &str| {
        format!(
            "apiVersion: {v}\nkind: DestinationRule\nmetadata: {{name: r}}\nspec: {{host: reviews}}\n"
        )
    };
    let got = problems(&[(
        "r.yaml",
        &[
            dr("networking.istio.io/v1"),
            dr("sinew.dev/v1alpha1"),
            dr("networking.istio.io/v1beta1"),
        ]
        .join("---\n"),
    )]);
    assert_eq!(
        got,
        [
            "r.yaml: document 3 (line 11): DestinationRule \"r\" (networking.istio.io) in namespace \"default\" is already defined at r.yaml: document 1 (line 1)"
        ]
    );
}

#[test]
fn deployment_pods_colliding_with_a_pod_are_rejected() {
    let text = r#"apiVersion: v1
kind: Pod
metadata: {name: web-1}
spec: {containers: [{name: app}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app}]}
"#;
    assert_eq!(
        problems(&[("d.yaml", text)]),
        [
            "d.yaml: document 2 (line 6): Pod \"web-1\" (replica of Deployment \"web\") in namespace \"default\" is already defined at d.yaml: document 1 (line 1)"
        ]
    );
}

#[test]
fn undeclared_namespace_and_service_account_are_rejected() {
    let text = r#"apiVersion: v1
kind: Pod
metadata: {name: a, namespace: shop}
spec: {containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b}
spec: {serviceAccountName: reviews, containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c}
spec: {serviceAccount: default, containers: [{name: app}]}
"#;
    assert_eq!(
        problems(&[("p.yaml", text)]),
        [
            "p.yaml: document 1 (line 1): Pod \"a\": namespace \"shop\" is not declared (add a v1 Namespace document named \"shop\")",
            "p.yaml: document 2 (line 6): Pod \"b\": service account \"reviews\" is not declared in namespace \"default\" (add a v1 ServiceAccount document)",
        ]
    );
}

#[test]
fn deployment_selector_must_match_template() {
    let dep = |selector: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  selector: {selector}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: app}}]}}\n"
        )
    };
    assert_eq!(
        problems(&[("d.yaml", &dep("{matchLabels: {app: api}}"))]),
        [
            "d.yaml: document 1 (line 1): Deployment \"web\": spec.selector does not match spec.template.metadata.labels (the Deployment would not own its own pods)"
        ]
    );
    assert_eq!(
        problems(&[("d.yaml", &dep("{}"))]),
        [
            "d.yaml: document 1 (line 1): Deployment \"web\": spec.selector is required (an empty selector would select every pod)"
        ]
    );
    let got = problems(&[(
        "d.yaml",
        &dep("{matchExpressions: [{key: app, operator: Is, values: [web]}]}"),
    )]);
    assert!(
        got[0].contains("spec.selector.matchExpressions[0]: unknown operator \"Is\""),
        "{got:?}"
    );
    assert!(
        parse_files(&[(
            "d.yaml",
            &dep("{matchExpressions: [{key: app, operator: In, values: [web]}]}")
        )])
        .is_ok()
    );
}

#[test]
fn object_checks_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: Reviews}\nspec: {ports: [{port: 80}]}\n",
            "Service \"Reviews\": metadata.name must be a DNS label starting with a letter",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {}\n",
            "Service \"s\": spec.ports is required",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 70000}]}\n",
            "Service \"s\": spec.ports[0].port must be between 1 and 65535, not 70000",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{name: a, port: 80}, {port: 81}]}\n",
            "Service \"s\": spec.ports[1].name is required when a Service has more than one port",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{name: a, port: 80}, {name: b, port: 80}]}\n",
            "Service \"s\": spec.ports[1]: port 80/TCP is listed twice",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, targetPort: \"8080\"}]}\n",
            "Service \"s\": spec.ports[0].targetPort \"8080\" is neither a port number nor a valid port name",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.0.0.300, ports: [{port: 80}]}\n",
            "Service \"s\": spec.clusterIP \"10.0.0.300\" is not an IP address (or None for a headless service)",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n",
            "Pod \"p\": spec.containers is required",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{command: [x]}]}\n",
            "Pod \"p\": spec.containers[0].name is required",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, ports: [{name: web}]}]}\n",
            "Pod \"p\": spec.containers[0].ports[0].containerPort is required",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a}]}\nstatus: {podIP: nope}\n",
            "Pod \"p\": status.podIP \"nope\" is not an IP address",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
            "Deployment \"d\": spec is required",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: -1, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: a}]}}}\n",
            "Deployment \"d\": spec.replicas must not be negative, not -1",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}}}\n",
            "Deployment \"d\": spec.template.spec.containers is required",
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop.v1}\n",
            "Namespace \"shop.v1\": metadata.name must be a DNS label",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {trafficPolicy: {}}\n",
            "DestinationRule \"r\": spec.host is required",
        ),
        (
            "apiVersion: sinew.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: 7}\n",
            "DestinationRule \"r\": spec.host must be a string, not a number",
        ),
        (
            "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: r}\n",
            "DestinationRule \"r\": spec is required",
        ),
        (
            "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nspec: {host: a}\n",
            "DestinationRule: metadata.name is required",
        ),
    ];
    for (text, want) in cases {
        let got = problems(&[("o.yaml", text)]);
        assert_eq!(got.len(), 1, "{text}: {got:?}");
        let prefix = "o.yaml: document 1 (line 1): ";
        assert!(
            got[0].starts_with(&format!("{prefix}{want}")),
            "for\n{text}\nwant {want}\ngot  {}",
            got[0]
        );
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let a = "apiVersion: v1\nkind: Pod\nmetadata: {}\n";
    let b = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{name: x}]}\n";
    let err = parse_files(&[("a.yaml", a), ("b.yaml", b)]).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "2 problems in the manifests:\n  a.yaml: document 1 (line 1): Pod: metadata.name is required\n  b.yaml: document 1 (line 1): Service \"s\": spec.ports[0].port is required"
    );
}

#[test]
fn headless_service_may_omit_ports_and_never_has_a_vip() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: h}\nspec: {clusterIP: None, selector: {app: h}}\n";
    let snap = parse_files(&[("h.yaml", text)]).expect("valid");
    let svc = snap.service("default", "h").expect("service");
    assert!(svc.headless);
    assert_eq!(svc.vip, None);
}

#[cfg(unix)]
#[test]
fn configmap_style_symlinks_are_followed_but_directory_links_are_not() {
    let dir = TempDir::new("symlinks");
    dir.write(
        "..2024_01_01/pods.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: linked}\nspec: {containers: [{name: app}]}\n",
    );
    std::os::unix::fs::symlink("..2024_01_01", dir.path().join("..data")).expect("link");
    std::os::unix::fs::symlink("..data/pods.yaml", dir.path().join("pods.yaml")).expect("link");
    // A loop would hang a walker that followed directory links.
    std::os::unix::fs::symlink(".", dir.path().join("loop.yaml")).expect("link");
    std::os::unix::fs::symlink("missing.yaml", dir.path().join("dangling.yaml")).expect("link");
    let snap = FileRegistry::load(dir.path()).expect("valid");
    let pods: Vec<_> = snap.pods().keys().cloned().collect();
    assert_eq!(
        pods,
        [key("default", "linked")],
        "read once, through the visible link"
    );
}

// === strict validation (kubectl --validate=strict) ===

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: frontend}\nspec:\n  REPLICAS\n  selector: {matchLabels: {app: f}}\n  template:\n    metadata: {labels: {app: f}}\n    spec:\n      containers:\n      - name: app\n        comand: [sleep, '1']\n";

#[test]
fn unknown_fields_are_errors_naming_the_field_and_its_line() {
    let text = DEPLOYMENT.replace("REPLICAS", "replica: 3");
    assert_eq!(
        problems(&[("d.yaml", &text)]),
        [
            "d.yaml: document 1 (line 5): Deployment \"frontend\": spec.replica: unknown field; did you mean replicas?",
            "d.yaml: document 1 (line 12): Deployment \"frontend\": spec.template.spec.containers[0].comand: unknown field; did you mean command?",
        ]
    );
}

#[test]
fn a_value_of_the_wrong_type_names_the_field_the_type_and_the_value() {
    let text = DEPLOYMENT
        .replace("REPLICAS", "replicas: two")
        .replace("comand", "command");
    assert_eq!(
        problems(&[("d.yaml", &text)]),
        [
            "d.yaml: document 1 (line 5): Deployment \"frontend\": spec.replicas: expected an integer, got \"two\""
        ]
    );
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: {port: 80}\n";
    assert_eq!(
        problems(&[("s.yaml", text)]),
        [
            "s.yaml: document 1 (line 5): Service \"web\": spec.ports: expected a list, got a mapping"
        ]
    );
}

const RULE: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web}\nspec:\n  host: web\n  trafficPolicy:\n    loadBalancer:\n      simple: SIMPLE\n    tls: {mode: ISTIO_MUTUAL}\n";

#[test]
fn an_unknown_destination_rule_enum_value_is_an_error_listing_the_allowed_ones() {
    let text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{}",
        RULE.replace("SIMPLE", "ROUND_ROBBIN")
    );
    assert_eq!(
        problems(&[("x.yaml", &text)]),
        [
            "x.yaml: document 2 (line 12): DestinationRule \"web\": spec.trafficPolicy.loadBalancer.simple: unknown value \"ROUND_ROBBIN\"; expected one of UNSPECIFIED, LEAST_REQUEST, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_CONN"
        ]
    );
    let text = RULE
        .replace("SIMPLE", "ROUND_ROBIN")
        .replace("ISTIO_MUTUAL", "istio_mutual");
    assert_eq!(
        problems(&[("x.yaml", &text)]),
        [
            "x.yaml: document 1 (line 9): DestinationRule \"web\": spec.trafficPolicy.tls.mode: unknown value \"istio_mutual\"; expected one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL"
        ],
        "names are case-sensitive, as in Istio"
    );
}

#[test]
fn destination_rule_enums_accept_istio_names_and_numbers_and_keep_the_spec_as_written() {
    let snap =
        parse_files(&[("x.yaml", &RULE.replace("SIMPLE", "ROUND_ROBIN"))]).expect("a valid rule");
    assert_eq!(
        snap.destination_rules()[0]
            .spec
            .pointer("/trafficPolicy/loadBalancer/simple"),
        Some(&serde_json::json!("ROUND_ROBIN"))
    );
    parse_files(&[("x.yaml", &RULE.replace("SIMPLE", "4"))])
        .expect("protobuf number of ROUND_ROBIN");
    let got = problems(&[("x.yaml", &RULE.replace("SIMPLE", "9"))]);
    assert!(
        got[0].contains("simple: unknown value 9; expected one of"),
        "{got:?}"
    );
}

#[test]
fn a_destination_rule_value_of_the_wrong_type_names_the_field() {
    let text = RULE.replace("SIMPLE", "RANDOM").replace(
        "    tls: {mode: ISTIO_MUTUAL}",
        "    connectionPool:\n      tcp: {maxConnections: ten}",
    );
    assert_eq!(
        problems(&[("x.yaml", &text)]),
        [
            "x.yaml: document 1 (line 10): DestinationRule \"web\": spec.trafficPolicy.connectionPool.tcp.maxConnections: expected an integer, got \"ten\""
        ]
    );
}

#[test]
fn an_unknown_destination_rule_field_is_an_error_at_its_line() {
    let text = RULE.replace("simple: SIMPLE", "simple: RANDOM\n      simpel: RANDOM");
    assert_eq!(
        problems(&[("x.yaml", &text)]),
        [
            "x.yaml: document 1 (line 9): DestinationRule \"web\": spec.trafficPolicy.loadBalancer.simpel: unknown field; did you mean simple?"
        ]
    );
}

#[test]
fn a_misspelt_kind_of_a_known_group_is_an_error_and_an_unused_kind_a_warning() {
    let text = "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: frontend}\n";
    assert_eq!(
        problems(&[("d.yaml", text)]),
        [
            "d.yaml: document 1 (line 1): apiVersion apps/v1 has no kind \"Deploymnet\"; did you mean Deployment?"
        ]
    );
    let text = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: web}\nspec: {selector: {istio: ingress}}\n";
    let snap = parse_files(&[("v.yaml", text)]).expect("stored, not run");
    assert_eq!(
        snap.warnings(),
        [
            "v.yaml: document 1 (line 1): networking.istio.io/v1 Gateway is not used by local mode; skipped"
        ]
    );
}
