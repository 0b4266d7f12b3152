use super::*;
use crate::state::PodState;
use std::time::Duration;

/// A console writing into a buffer, and the buffer.
fn console() -> (Console, Arc<Mutex<Vec<u8>>>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    (Console::to(buf.clone()), buf)
}

fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8(std::mem::take(&mut *buf.lock().unwrap())).unwrap()
}

fn how() -> Invocation {
    Invocation {
        me: "sinewctl".into(),
        name_flag: " --name demo".into(),
    }
}

fn pod(name: &str, phase: PodPhase, identity: Option<&str>, ready_ms: Option<u64>) -> PodState {
    PodState {
        namespace: "shop".into(),
        name: name.into(),
        ip: "198.18.0.2".into(),
        meshed: identity.is_some(),
        identity: identity.map(str::to_string),
        phase,
        proxy_ready_ms: ready_ms,
        ..PodState::default()
    }
}

#[test]
fn a_problem_reported_again_is_printed_once() {
    let (mut c, buf) = console();
    c.report("pod shop/a: no free address left".into());
    c.report("pod shop/a: no free address left".into());
    c.report("another".into());
    assert_eq!(
        text(&buf),
        "sinew: pod shop/a: no free address left\nsinew: another\n"
    );
}

#[test]
fn events_clear_the_live_line_only_once_it_is_drawn() {
    let (mut c, buf) = console();
    c.set_live(true);
    c.say("before the summary");
    assert_eq!(text(&buf), "sinew: before the summary\n");
    c.announce(&RunState::default(), 0.5, &how());
    text(&buf);
    c.live_line("12 req/s");
    c.say("pod shop/a deleted");
    assert_eq!(
        text(&buf),
        "\r\x1b[2K12 req/s\r\x1b[2Ksinew: pod shop/a deleted\n"
    );
    c.finish();
    assert_eq!(text(&buf), "\n");
    // Not a terminal: never a control sequence, and nothing to end.
    let (mut plain, buf) = console();
    plain.announce(&RunState::default(), 0.5, &how());
    text(&buf);
    plain.say("x");
    plain.finish();
    assert_eq!(text(&buf), "sinew: x\n");
}

#[test]
fn the_summary_lists_every_pod_and_says_why_some_do_not_run() {
    let (mut c, buf) = console();
    c.set_try_hint(Some(TryHint {
        namespace: "shop".into(),
        pod: "frontend-0".into(),
        url: "http://reviews.shop:9080/".into(),
    }));
    let state = RunState {
        pods: vec![
            pod(
                "frontend-0",
                PodPhase::Running,
                Some("spiffe://cluster.local/ns/shop/sa/frontend"),
                Some(42),
            ),
            pod("legacy", PodPhase::Running, None, None),
            pod(
                "broken",
                PodPhase::Failed("sinew-proxy init: exit status 1".into()),
                Some("spiffe://cluster.local/ns/shop/sa/default"),
                None,
            ),
        ],
        ..RunState::default()
    };
    c.announce(&state, 3.04, &how());
    assert_eq!(
        text(&buf),
        "\
sinew: pod shop/frontend-0 198.18.0.2 spiffe://cluster.local/ns/shop/sa/frontend, proxy ready in 42 ms
sinew: pod shop/legacy 198.18.0.2 not meshed
sinew: pod shop/broken 198.18.0.2 spiffe://cluster.local/ns/shop/sa/default
sinew: 2 of 3 pods running, 3.0 s after start; `sinewctl --name demo status` says why

Try:
  sinewctl --name demo exec -n shop frontend-0 -- curl -s http://reviews.shop:9080/
  sinewctl --name demo logs -n shop frontend-0 -c proxy
  sinewctl --name demo proxy-config -n shop frontend-0   (the routes, policy and endpoint health its proxy uses)
  sinewctl --name demo status
  sinewctl --name demo apply -f FILE      (changes take effect live)
Ctrl-C (or `sinewctl --name demo down`) stops the mesh and removes everything.

"
    );
    assert!(c.announced());
}

#[test]
fn all_pods_running_says_so_and_no_hint_leaves_the_general_commands() {
    let (mut c, buf) = console();
    let state = RunState {
        pods: vec![pod("a", PodPhase::Running, None, None)],
        ..RunState::default()
    };
    let plain = Invocation {
        me: "sinewctl".into(),
        name_flag: String::new(),
    };
    c.announce(&state, 1.26, &plain);
    let out = text(&buf);
    assert!(
        out.contains("sinew: all 1 pods running, 1.3 s after start\n"),
        "{out}"
    );
    assert!(!out.contains("exec"), "{out}");
    assert!(out.contains("\nTry:\n  sinewctl status\n"), "{out}");
}

#[tokio::test(start_paused = true)]
async fn pods_started_after_the_summary_are_announced_again_when_they_run() {
    let (mut c, buf) = console();
    let a: PodKey = ("shop".into(), "a".into());
    let gone: PodKey = ("shop".into(), "gone".into());
    // Before the summary the summary itself tells.
    c.starting(&a, "198.18.0.9", None);
    assert_eq!(text(&buf), "");
    c.announce(&RunState::default(), 0.1, &how());
    text(&buf);
    c.starting(
        &a,
        "198.18.0.9",
        Some("spiffe://cluster.local/ns/shop/sa/a"),
    );
    c.starting(&gone, "198.18.0.10", None);
    assert_eq!(
        text(&buf),
        "sinew: pod shop/a 198.18.0.9 starting (spiffe://cluster.local/ns/shop/sa/a)\n\
         sinew: pod shop/gone 198.18.0.10 starting (not meshed)\n"
    );
    tokio::time::advance(Duration::from_millis(250)).await;
    // `gone` was deleted before it ran: forgotten, never announced.
    c.announce_ready(&BTreeSet::from([a.clone()]), |k| k == &a);
    assert_eq!(
        text(&buf),
        "sinew: pod shop/a ready, 250 ms after it started\n"
    );
    c.announce_ready(&BTreeSet::from([a.clone(), gone.clone()]), |_| true);
    assert_eq!(text(&buf), "", "each pod is announced once");
}

#[test]
fn the_hint_is_a_meshed_pod_calling_a_service_it_is_not_part_of() {
    let snap = Snapshot::from_yaml(
        "t.yaml",
        "\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {sinew-injection: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {selector: {app: reviews}, ports: [{port: 9080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-0, namespace: shop, labels: {app: reviews}}
spec: {containers: [{name: a}]}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend-0, namespace: shop, labels: {app: frontend}}
spec: {containers: [{name: a}]}
",
    )
    .unwrap();
    assert_eq!(
        try_hint(&snap, |p| p.meshed),
        Some(TryHint {
            namespace: "shop".into(),
            pod: "frontend-0".into(),
            url: "http://reviews.shop:9080/".into(),
        })
    );
    let none = Snapshot::from_yaml(
        "t.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: lonely}\nspec: {containers: [{name: a}]}\n",
    )
    .unwrap();
    assert_eq!(try_hint(&none, |p| p.meshed), None);
}

#[test]
fn a_held_file_is_named_with_its_objects_and_the_command_that_applies_it() {
    let line = held_file(
        std::path::Path::new("examples/demo/policy.yaml"),
        &["DestinationRule demo/reviews".into()],
        &how(),
    );
    assert_eq!(
        line,
        format!(
            "examples/demo/policy.yaml is left out (DestinationRule demo/reviews: annotated {}); `sinewctl --name demo apply -f examples/demo/policy.yaml` applies it",
            crate::manifests::SKIP_ON_UP
        )
    );
}
