//! Contract tests of the Kubernetes source against a scripted API server (tower-test, paused
//! time): the requests it makes, in order, and what it publishes for each answer.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::*;
use crate::cluster::mock::{self, ApiServer, Exchange};
use crate::registry::entry::{EndpointEntry, Endpoints};

const NAMESPACES: &str = "/api/v1/namespaces";
const SERVICE_ACCOUNTS: &str = "/api/v1/serviceaccounts";
const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
const PODS: &str = "/api/v1/pods";
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const SINEW_RULES: &str = "/apis/sinew.dev/v1alpha1/destinationrules";
const ISTIO_RULES_V1: &str = "/apis/networking.istio.io/v1/destinationrules";
const ISTIO_RULES_V1BETA1: &str = "/apis/networking.istio.io/v1beta1/destinationrules";

// === a scripted API server ===

/// A small API server over the mock: collections by path with one resourceVersion counter (as
/// etcd has), lists answered from them, watches parked until an event is queued. A path with no
/// collection answers 404 (a kind whose CRD is not installed, a version not served).
#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    logged: watch::Sender<usize>,
}

#[derive(Default)]
struct State {
    rv: u64,
    collections: HashMap<String, BTreeMap<(String, String), Value>>,
    /// Events not yet delivered, by path.
    queued: HashMap<String, Vec<Value>>,
    watches: HashMap<String, Exchange>,
    /// Lists not answered until released.
    held: HashSet<String>,
    held_lists: Vec<(String, Exchange)>,
    /// Codes the next lists of a path fail with.
    list_failures: HashMap<String, VecDeque<u16>>,
    /// Every request: when, and its request line.
    log: Vec<(Instant, String, Option<String>)>,
}

impl Fake {
    fn start(initial: &[(&str, Vec<Value>)]) -> (kube::Client, Fake) {
        let (client, api) = mock::client();
        let mut state = State {
            rv: 100,
            ..State::default()
        };
        for path in [NAMESPACES, SERVICE_ACCOUNTS, SERVICES, SLICES, PODS, CRDS] {
            state.collections.insert(path.to_string(), BTreeMap::new());
        }
        for (path, objects) in initial {
            let collection = state.collections.entry(path.to_string()).or_default();
            for object in objects {
                state.rv += 1;
                let mut object = object.clone();
                object["metadata"]["resourceVersion"] = json!(state.rv.to_string());
                collection.insert(key_of(&object), object);
            }
        }
        let fake = Fake {
            state: Arc::new(Mutex::new(state)),
            wake: Arc::new(Notify::new()),
            logged: watch::channel(0).0,
        };
        tokio::spawn(fake.clone().serve(api));
        (client, fake)
    }

    async fn serve(self, mut api: ApiServer) {
        loop {
            tokio::select! {
                biased;
                () = self.wake.notified() => self.flush(),
                ex = api.next() => self.answer(ex),
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn answer(&self, ex: Exchange) {
        let mut s = self.lock();
        s.log.push((Instant::now(), ex.line(), ex.accept.clone()));
        self.logged.send_modify(|n| *n += 1);
        if ex.method == http::Method::PATCH {
            s.patch_status(ex);
            drop(s);
            self.flush();
            return;
        }
        let path = ex.path.clone();
        let watch = ex
            .query
            .as_deref()
            .is_some_and(|q| q.contains("watch=true"));
        if watch {
            s.watches.insert(path, ex);
            drop(s);
            self.flush();
            return;
        }
        if let Some(code) = s.list_failures.get_mut(&path).and_then(VecDeque::pop_front) {
            return ex.fail(code, "Scripted");
        }
        if s.held.contains(&path) {
            s.held_lists.push((path, ex));
            return;
        }
        s.list(ex);
    }

    /// Delivers queued events to parked watches and released lists.
    fn flush(&self) {
        let mut s = self.lock();
        let ready: Vec<String> = s
            .watches
            .keys()
            .filter(|p| s.queued.get(*p).is_some_and(|q| !q.is_empty()))
            .cloned()
            .collect();
        for path in ready {
            let events = s.queued.remove(&path).unwrap_or_default();
            if let Some(ex) = s.watches.remove(&path) {
                ex.respond_events(&events);
            }
        }
        let held = std::mem::take(&mut s.held_lists);
        for (path, ex) in held {
            if s.held.contains(&path) {
                s.held_lists.push((path, ex));
            } else {
                s.list(ex);
            }
        }
    }

    /// Applies a change and queues its watch event.
    fn event(&self, path: &str, type_: &str, object: Value) {
        self.lock().event(path, type_, object);
        self.wake.notify_one();
    }

    /// Changes a collection without telling any watch (what an outage hides).
    fn silently(&self, path: &str, change: impl FnOnce(&mut BTreeMap<(String, String), Value>)) {
        let mut s = self.lock();
        s.rv += 1;
        change(s.collections.entry(path.to_string()).or_default());
    }

    /// The path's watch ends with an `ERROR` event carrying `code` (410: resourceVersion too old).
    fn watch_error(&self, path: &str, code: u16) {
        self.lock()
            .queued
            .entry(path.to_string())
            .or_default()
            .push(json!({
                "type": "ERROR",
                "object": { "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                            "reason": if code == 410 { "Expired" } else { "InternalError" },
                            "message": format!("scripted {code}") },
            }));
        self.wake.notify_one();
    }

    fn fail_lists(&self, path: &str, codes: &[u16]) {
        self.lock()
            .list_failures
            .entry(path.to_string())
            .or_default()
            .extend(codes);
    }

    fn hold(&self, path: &str) {
        self.lock().held.insert(path.to_string());
    }

    fn release(&self, path: &str) {
        self.lock().held.remove(path);
        self.wake.notify_one();
    }

    /// Every status patch: its request line.
    fn patches(&self) -> Vec<String> {
        self.lock()
            .log
            .iter()
            .filter(|(_, line, _)| line.starts_with("PATCH "))
            .map(|(_, line, _)| line.clone())
            .collect()
    }

    /// The request lines for `path`, in order.
    fn requests(&self, path: &str) -> Vec<(Instant, String)> {
        self.lock()
            .log
            .iter()
            .filter(|(_, line, _)| line.split('?').next() == Some(&format!("GET {path}")))
            .map(|(at, line, _)| (*at, line.clone()))
            .collect()
    }

    /// Waits until `path` has been requested `n` times (fails after a minute of paused time: the
    /// source stopped asking).
    async fn requested(&self, path: &str, n: usize) {
        let mut logged = self.logged.subscribe();
        let wait = async {
            while self.requests(path).len() < n {
                logged.changed().await.unwrap();
            }
        };
        if tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .is_err()
        {
            panic!(
                "{path} requested {} times, not {n}: {:#?}",
                self.requests(path).len(),
                self.lock()
                    .log
                    .iter()
                    .map(|(_, l, _)| l)
                    .collect::<Vec<_>>()
            );
        }
    }
}

impl State {
    fn event(&mut self, path: &str, type_: &str, object: Value) -> Value {
        self.rv += 1;
        let mut object = object;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let collection = self.collections.entry(path.to_string()).or_default();
        if type_ == "DELETED" {
            collection.remove(&key_of(&object));
        } else {
            collection.insert(key_of(&object), object.clone());
        }
        self.queued
            .entry(path.to_string())
            .or_default()
            .push(json!({ "type": type_, "object": object.clone() }));
        object
    }

    /// `PATCH <group-version>/namespaces/<ns>/<plural>/<name>/status`, a merge patch of
    /// `status` with an optional resourceVersion precondition; the watch sees the change.
    fn patch_status(&mut self, ex: Exchange) {
        let Some((prefix, rest)) = ex.path.split_once("/namespaces/") else {
            return ex.fail(404, "NotFound");
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let [namespace, plural, name, "status"] = parts[..] else {
            return ex.fail(404, "NotFound");
        };
        let path = format!("{prefix}/{plural}");
        let key = (namespace.to_string(), name.to_string());
        let Some(current) = self
            .collections
            .get(&path)
            .and_then(|c| c.get(&key))
            .cloned()
        else {
            return ex.fail(404, "NotFound");
        };
        let precondition = &ex.body["metadata"]["resourceVersion"];
        if !precondition.is_null() && *precondition != current["metadata"]["resourceVersion"] {
            return ex.fail(409, "Conflict");
        }
        let mut next = current;
        if let Some(fields) = ex.body["status"].as_object() {
            for (field, value) in fields {
                next["status"][field] = value.clone();
            }
        }
        let written = self.event(&path, "MODIFIED", next);
        ex.respond(200, written);
    }

    fn list(&mut self, ex: Exchange) {
        let Some(collection) = self.collections.get(&ex.path) else {
            // What an API server answers for a path it does not serve.
            return ex.fail(404, "NotFound");
        };
        let items: Vec<&Value> = collection.values().collect();
        ex.respond(
            200,
            json!({ "kind": "List", "apiVersion": "v1",
                    "metadata": { "resourceVersion": self.rv.to_string() }, "items": items }),
        );
    }
}

fn key_of(object: &Value) -> (String, String) {
    let meta = &object["metadata"];
    (
        meta["namespace"].as_str().unwrap_or_default().to_string(),
        meta["name"].as_str().unwrap().to_string(),
    )
}

// === objects ===

fn namespace(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } })
}

fn service(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "namespace": "shop" },
            "spec": { "selector": { "app": name }, "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }] } })
}

fn pod(name: &str, ip: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": "shop", "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "app" }] },
            "status": { "podIP": ip } })
}

fn slice(name: &str, service: &str, endpoints: Value) -> Value {
    json!({ "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": name, "namespace": "shop",
                          "labels": { "kubernetes.io/service-name": service } },
            "addressType": "IPv4",
            "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
            "endpoints": endpoints })
}

fn crd(name: &str) -> Value {
    json!({ "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": { "name": name } })
}

fn rule(api_version: &str, name: &str, spec: Value) -> Value {
    json!({ "apiVersion": api_version, "kind": "DestinationRule",
            "metadata": { "name": name, "namespace": "shop", "generation": 1,
                          "creationTimestamp": "2026-01-01T00:00:00Z" },
            "spec": spec })
}

fn valid_spec() -> Value {
    json!({ "host": "web", "subsets": [{ "name": "v1", "labels": { "version": "v1" } }] })
}

fn invalid_spec() -> Value {
    json!({ "host": "web", "trafficPolicy": { "loadBalancer": { "simple": "FASTEST" } } })
}

/// A cluster with one namespace, one Service and one pod, no CRDs.
fn cluster() -> Vec<(&'static str, Vec<Value>)> {
    vec![
        (NAMESPACES, vec![namespace("shop")]),
        (SERVICES, vec![service("web")]),
        (PODS, vec![pod("web-0", "10.0.0.1")]),
    ]
}

fn options() -> KubeSourceOptions {
    KubeSourceOptions::default()
}

/// The next published snapshot.
async fn next(rx: &mut watch::Receiver<Arc<Snapshot>>) -> Arc<Snapshot> {
    rx.changed().await.expect("the source stopped");
    rx.borrow_and_update().clone()
}

/// With the clock paused, time only moves once every task is idle: after this, the source has
/// done everything the requests so far lead to.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(5)).await;
}

fn services_of(snapshot: &Snapshot) -> Vec<String> {
    snapshot.services().keys().map(|(_, n)| n.clone()).collect()
}

fn rules_of(snapshot: &Snapshot) -> Vec<(String, String)> {
    snapshot
        .destination_rules()
        .iter()
        .map(|r| (r.api_version.clone(), r.name.clone()))
        .collect()
}

// === tests ===

#[tokio::test(start_paused = true)]
async fn lists_then_watches_from_the_list_resource_version() {
    let (client, fake) = Fake::start(&cluster());
    let (rx, _handle) = spawn(client, options()).await.unwrap();
    assert_eq!(services_of(&rx.borrow()), ["web"]);
    fake.requested(SERVICES, 2).await;
    let lines: Vec<String> = fake
        .requests(SERVICES)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    // The list's resourceVersion is the fake's counter when it answered: 103 (three objects).
    assert_eq!(
        lines,
        [
            format!("GET {SERVICES}?&limit=500"),
            format!(
                "GET {SERVICES}?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=103"
            ),
        ]
    );
    // CRDs are listed metadata-only: their specs are large and never read.
    let crd_accept = fake
        .lock()
        .log
        .iter()
        .find(|(_, line, _)| line.starts_with(&format!("GET {CRDS}?")))
        .and_then(|(_, _, accept)| accept.clone());
    assert!(
        crd_accept
            .as_deref()
            .is_some_and(|a| a.contains("as=PartialObjectMetadataList")),
        "{crd_accept:?}"
    );

    // A watch event moves the next watch on to its resourceVersion.
    fake.event(SERVICES, "ADDED", service("api"));
    fake.requested(SERVICES, 3).await;
    let (_, third) = fake.requests(SERVICES).pop().unwrap();
    assert!(third.ends_with("resourceVersion=104"), "{third}");
}

#[tokio::test(start_paused = true)]
async fn the_first_snapshot_waits_for_every_kind() {
    let (client, fake) = Fake::start(&cluster());
    fake.hold(PODS);
    let started = tokio::spawn(spawn(client, options()));
    fake.requested(PODS, 1).await;
    fake.requested(SERVICES, 2).await;
    settle().await;
    assert!(
        !started.is_finished(),
        "published before the Pod list completed"
    );
    fake.release(PODS);
    let (rx, _handle) = started.await.unwrap().unwrap();
    let first = rx.borrow().clone();
    assert_eq!(first.generation(), 1);
    // The first snapshot has the pods: no proxy is ever told its endpoints vanished.
    assert!(first.pod("shop", "web-0").is_some());
}

#[tokio::test(start_paused = true)]
async fn start_up_fails_naming_the_kinds_not_listed() {
    let (client, fake) = Fake::start(&cluster());
    fake.hold(SLICES);
    let options = KubeSourceOptions {
        sync_timeout: Duration::from_secs(10),
        ..options()
    };
    let err = spawn(client, options).await.unwrap_err().to_string();
    assert!(err.contains("EndpointSlice"), "{err}");
    assert!(!err.contains("Pod,"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_410_during_a_watch_relists_and_an_object_deleted_meanwhile_disappears() {
    let mut objects = cluster();
    objects[1].1.push(service("api"));
    let (client, fake) = Fake::start(&objects);
    let (mut rx, handle) = spawn(client, options()).await.unwrap();
    assert_eq!(services_of(&rx.borrow()), ["api", "web"]);
    fake.requested(SERVICES, 2).await;

    // While the watch is broken, "api" is deleted; the API server then says the watch's
    // resourceVersion is too old.
    fake.silently(SERVICES, |c| {
        c.remove(&("shop".into(), "api".into()));
    });
    fake.watch_error(SERVICES, 410);
    let next = next(&mut rx).await;
    assert_eq!(services_of(&next), ["web"]);
    assert_eq!(next.generation(), 2);
    let lines: Vec<String> = fake
        .requests(SERVICES)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(
        lines[2],
        format!("GET {SERVICES}?&limit=500"),
        "a fresh list, not a watch"
    );
    assert_eq!(handle.metrics().snapshot()["Service"].relists, 1);
}

#[tokio::test(start_paused = true)]
async fn watch_errors_back_off_doubling_and_are_counted() {
    let (client, fake) = Fake::start(&cluster());
    let (_rx, handle) = spawn(client, options()).await.unwrap();
    fake.requested(SERVICES, 2).await;
    // The watch breaks and the next two lists fail.
    fake.fail_lists(SERVICES, &[500, 500]);
    let broken = Instant::now();
    fake.watch_error(SERVICES, 410);
    fake.requested(SERVICES, 5).await;
    let times: Vec<Instant> = fake
        .requests(SERVICES)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    // 0.8 s, 1.6 s, 3.2 s, each with up to as much again of jitter (kube-rs's default
    // backoff): it grows while nothing succeeds.
    let gaps = [times[2] - broken, times[3] - times[2], times[4] - times[3]];
    for (gap, least) in gaps.iter().zip([800, 1600, 3200]) {
        let least = Duration::from_millis(least);
        assert!(
            *gap >= least && *gap < least * 2,
            "{gaps:?}: the backoff must double from 800 ms"
        );
    }
    fake.requested(SERVICES, 6).await;
    let counters = &handle.metrics().snapshot()["Service"];
    // The 410 and the two failed lists.
    assert_eq!(counters.watch_errors, 3);
    assert_eq!(counters.relists, 1);
    assert_eq!(counters.last_error, None, "cleared by the list that worked");
    let mut text = String::new();
    handle.metrics().render(&mut text);
    assert!(
        text.contains("sinew_cp_kube_watch_errors_total{kind=\"Service\"} 3"),
        "{text}"
    );

    // After a list that worked, the next failure starts again from 0.8 s.
    let broken = Instant::now();
    fake.watch_error(SERVICES, 500);
    fake.requested(SERVICES, 7).await;
    let (again, _) = fake.requests(SERVICES).pop().unwrap();
    let gap = again - broken;
    assert!(
        gap >= Duration::from_millis(800) && gap < Duration::from_millis(1600),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_missing_crd_is_an_empty_kind_and_appears_and_disappears_with_its_crd() {
    let (client, fake) = Fake::start(&cluster());
    let (mut rx, handle) = spawn(client, options()).await.unwrap();
    assert!(rx.borrow().destination_rules().is_empty());
    // Not an error, and nothing asked of a kind that is not installed.
    assert_eq!(handle.last_error(), None);
    assert!(fake.requests(SINEW_RULES).is_empty());

    fake.silently(SINEW_RULES, |c| {
        let mut r = rule("sinew.dev/v1alpha1", "web", valid_spec());
        r["metadata"]["resourceVersion"] = json!("150");
        c.insert(("shop".into(), "web".into()), r);
    });
    fake.event(CRDS, "ADDED", crd("destinationrules.sinew.dev"));
    let next = next(&mut rx).await;
    assert_eq!(
        rules_of(&next),
        [("sinew.dev/v1alpha1".to_string(), "web".to_string())]
    );

    fake.event(CRDS, "DELETED", crd("destinationrules.sinew.dev"));
    let gone = self::next(&mut rx).await;
    assert!(gone.destination_rules().is_empty());
}

#[tokio::test(start_paused = true)]
async fn falls_back_to_v1beta1_when_v1_is_not_served() {
    let mut objects = cluster();
    objects.push((CRDS, vec![crd("destinationrules.networking.istio.io")]));
    objects.push((
        ISTIO_RULES_V1BETA1,
        vec![rule("networking.istio.io/v1beta1", "web", valid_spec())],
    ));
    let (client, fake) = Fake::start(&objects);
    let (rx, _handle) = spawn(client, options()).await.unwrap();
    // The first snapshot waited for the custom kind too.
    assert_eq!(
        rules_of(&rx.borrow()),
        [("networking.istio.io/v1beta1".to_string(), "web".to_string())]
    );
    assert_eq!(
        fake.requests(ISTIO_RULES_V1)[0].1,
        format!("GET {ISTIO_RULES_V1}?&limit=1")
    );
    assert_eq!(
        fake.requests(ISTIO_RULES_V1BETA1)[0].1,
        format!("GET {ISTIO_RULES_V1BETA1}?&limit=1")
    );
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_events_is_one_generation() {
    let (client, fake) = Fake::start(&cluster());
    let (mut rx, _handle) = spawn(client, options()).await.unwrap();
    fake.requested(PODS, 2).await;
    // Ten pods, 10 ms apart: each its own watch response, all within the 30 ms quiet time.
    for i in 1..=10 {
        fake.event(
            PODS,
            "ADDED",
            pod(&format!("web-{i}"), &format!("10.0.0.{}", i + 1)),
        );
        fake.requested(PODS, 2 + i).await;
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    let next = next(&mut rx).await;
    assert_eq!(next.generation(), 2);
    assert_eq!(next.pods().len(), 11);
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_relist_publishes_nothing() {
    let (client, fake) = Fake::start(&cluster());
    let (mut rx, handle) = spawn(client, options()).await.unwrap();
    fake.requested(SERVICES, 2).await;
    fake.watch_error(SERVICES, 410);
    fake.requested(SERVICES, 4).await;
    settle().await;
    assert_eq!(handle.metrics().snapshot()["Service"].relists, 1);
    // The next snapshot is the next change's, at generation 2: the re-list published none.
    fake.event(SERVICES, "ADDED", service("api"));
    let next = next(&mut rx).await;
    assert_eq!(next.generation(), 2);
    assert_eq!(services_of(&next), ["api", "web"]);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_destination_rule_keeps_its_last_accepted_version_and_is_listed_as_refused() {
    let mut objects = cluster();
    objects.push((CRDS, vec![crd("destinationrules.sinew.dev")]));
    objects.push((
        SINEW_RULES,
        vec![rule("sinew.dev/v1alpha1", "web", valid_spec())],
    ));
    let (client, fake) = Fake::start(&objects);
    let (rx, handle) = spawn(client, options()).await.unwrap();
    let before = rx.borrow().destination_rules()[0].spec.clone();
    let mut policy = handle.policy();
    assert!(policy.borrow_and_update().refused.is_empty());
    fake.requested(SINEW_RULES, 3).await;

    fake.event(
        SINEW_RULES,
        "MODIFIED",
        rule("sinew.dev/v1alpha1", "web", invalid_spec()),
    );
    policy.changed().await.unwrap();
    let view = policy.borrow_and_update().clone();
    assert_eq!(view.refused.len(), 1, "{:?}", view.refused);
    let refused = &view.refused[0];
    assert_eq!(
        refused.origin.to_string(),
        "DestinationRule.sinew.dev shop/web"
    );
    assert!(refused.kept_previous);
    assert!(
        refused.reasons.iter().any(|r| r.contains("FASTEST")),
        "{:?}",
        refused.reasons
    );
    // The view carries the object as stored (the status writer compares with it).
    assert_eq!(view.objects.len(), 1);
    assert_eq!(view.objects[0].object.data["spec"], invalid_spec());
    // The accepted version stays in force: the snapshot did not change.
    assert_eq!(rx.borrow().generation(), 1);
    assert_eq!(rx.borrow().destination_rules()[0].spec, before);
    assert_eq!(handle.rejected(), view.refused);
}

#[tokio::test(start_paused = true)]
async fn a_rule_carrying_status_conditions_is_still_accepted_and_pod_churn_does_not_wake_the_status_writer()
 {
    let mut objects = cluster();
    objects.push((CRDS, vec![crd("destinationrules.sinew.dev")]));
    let mut with_status = rule("sinew.dev/v1alpha1", "web", valid_spec());
    with_status["status"] = json!({ "conditions": [{ "type": "Accepted", "status": "True" }] });
    objects.push((SINEW_RULES, vec![with_status]));
    let (client, fake) = Fake::start(&objects);
    let (mut rx, handle) = spawn(client, options()).await.unwrap();
    assert_eq!(rules_of(&rx.borrow()).len(), 1);
    assert!(handle.rejected().is_empty(), "{:?}", handle.rejected());

    let mut policy = handle.policy();
    policy.borrow_and_update();
    fake.requested(PODS, 2).await;
    fake.event(PODS, "ADDED", pod("web-1", "10.0.0.2"));
    assert_eq!(next(&mut rx).await.generation(), 2);
    assert!(
        !policy.has_changed().unwrap(),
        "a pod change woke the status writer"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_invalid_rule_is_left_out_and_the_rest_still_applies() {
    let mut objects = cluster();
    objects.push((CRDS, vec![crd("destinationrules.sinew.dev")]));
    objects.push((
        SINEW_RULES,
        vec![
            rule("sinew.dev/v1alpha1", "good", valid_spec()),
            rule("sinew.dev/v1alpha1", "bad", invalid_spec()),
        ],
    ));
    let (client, _fake) = Fake::start(&objects);
    let (rx, handle) = spawn(client, options()).await.unwrap();
    assert_eq!(
        rules_of(&rx.borrow()),
        [("sinew.dev/v1alpha1".to_string(), "good".to_string())]
    );
    let refused = handle.rejected();
    assert_eq!(refused.len(), 1);
    assert!(!refused[0].kept_previous);
}

// === with the status writer ===

/// The source and the status writer together, as the control plane runs them: the writer's
/// input is the source's [`PolicyView`], and its own write comes back through the source's watch.
#[tokio::test(start_paused = true)]
async fn an_invalid_rule_is_marked_once_and_the_echo_of_that_write_causes_no_other() {
    let mut objects = cluster();
    objects.push((CRDS, vec![crd("destinationrules.sinew.dev")]));
    objects.push((
        SINEW_RULES,
        vec![rule("sinew.dev/v1alpha1", "web", valid_spec())],
    ));
    let (client, fake) = Fake::start(&objects);
    let (_rx, handle) = spawn(client.clone(), options()).await.unwrap();
    let (_leader_tx, leader) = watch::channel(true);
    crate::cluster::status::spawn(client, handle.policy(), leader);
    // Accepted=True written once, its echo watched.
    fake.requested(SINEW_RULES, 4).await;
    settle().await;
    let patch =
        "PATCH /apis/sinew.dev/v1alpha1/namespaces/shop/destinationrules/web/status?".to_string();
    assert_eq!(fake.patches(), std::slice::from_ref(&patch));

    fake.event(
        SINEW_RULES,
        "MODIFIED",
        rule("sinew.dev/v1alpha1", "web", invalid_spec()),
    );
    // The change, our patch of it, and the watch of its echo.
    fake.requested(SINEW_RULES, 6).await;
    settle().await;
    assert_eq!(fake.patches(), [patch.clone(), patch]);
    let stored =
        fake.lock().collections[SINEW_RULES][&("shop".to_string(), "web".to_string())].clone();
    let conditions = stored["status"]["conditions"].as_array().unwrap().clone();
    let accepted = conditions.iter().find(|c| c["type"] == "Accepted").unwrap();
    assert_eq!(accepted["status"], "False");
    assert!(
        accepted["message"].as_str().unwrap().contains("FASTEST"),
        "{accepted}"
    );
    // The echo reached the source: the view it sends the writer holds our conditions.
    let view = handle.policy().borrow().clone();
    assert_eq!(
        view.objects[0].object.data["status"]["conditions"],
        json!(conditions)
    );
}

// === EndpointSlice conditions ===

fn endpoints_of(endpoints: Value) -> Vec<EndpointEntry> {
    let slice: k8s_openapi::api::discovery::v1::EndpointSlice =
        serde_json::from_value(slice("web-abc", "web", endpoints)).unwrap();
    assemble::slice_endpoints(&slice).collect()
}

#[test]
fn absent_endpoint_conditions_take_the_api_defaults() {
    let e = endpoints_of(json!([{ "addresses": ["10.0.0.1"] }]));
    assert_eq!(e.len(), 1);
    assert!(e[0].ready, "ready absent = true");
    assert!(e[0].serving, "serving absent = true");
    assert!(!e[0].terminating, "terminating absent = false");
    assert_eq!(e[0].ports, [(Some("http".to_string()), 8080)]);
}

#[test]
fn endpoint_conditions_are_carried_as_listed() {
    let e = endpoints_of(json!([
        { "addresses": ["10.0.0.1"], "conditions": { "ready": false, "serving": true, "terminating": true },
          "targetRef": { "kind": "Pod", "namespace": "shop", "name": "web-0" } },
        { "addresses": ["10.0.0.2"], "conditions": { "ready": false, "serving": false } },
        { "addresses": ["10.0.0.3"], "conditions": { "ready": false } },
    ]));
    let conditions: Vec<(bool, bool, bool)> = e
        .iter()
        .map(|e| (e.ready, e.serving, e.terminating))
        .collect();
    assert_eq!(
        conditions,
        [
            (false, true, true),
            (false, false, false),
            (false, true, false)
        ]
    );
    assert_eq!(e[0].pod, Some(("shop".to_string(), "web-0".to_string())));
    assert_eq!(e[1].pod, None);
}

#[tokio::test(start_paused = true)]
async fn a_services_slices_replace_its_selector_endpoints_and_follow_their_changes() {
    let mut objects = cluster();
    objects.push((
        SLICES,
        vec![slice(
            "web-abc",
            "web",
            json!([{ "addresses": ["10.0.0.1"], "conditions": { "ready": true } }]),
        )],
    ));
    let (client, fake) = Fake::start(&objects);
    let (mut rx, _handle) = spawn(client, options()).await.unwrap();
    let ips = |s: &Snapshot| -> Vec<(String, bool, bool)> {
        match &s.service("shop", "web").unwrap().endpoints {
            Endpoints::Slices(e) => e
                .iter()
                .map(|e| (e.ip.to_string(), e.ready, e.terminating))
                .collect(),
            Endpoints::FromSelector => panic!("slices ignored"),
        }
    };
    assert_eq!(ips(&rx.borrow()), [("10.0.0.1".to_string(), true, false)]);
    fake.requested(SLICES, 2).await;
    fake.event(
        SLICES,
        "MODIFIED",
        slice(
            "web-abc",
            "web",
            json!([{ "addresses": ["10.0.0.1"], "conditions": { "ready": false, "serving": true, "terminating": true } }]),
        ),
    );
    let next = next(&mut rx).await;
    assert_eq!(ips(&next), [("10.0.0.1".to_string(), false, true)]);
}
