//! An in-process fake Kubernetes API server for `--source kubernetes`: plain HTTP/1.1 on
//! loopback (hyper), serving exactly what the control plane asks for, fast.
//!
//! Promises:
//! - lists of Namespaces, ServiceAccounts, Services, EndpointSlices and Pods (cluster-wide) from
//!   objects rendered once (re-rendered only when the simulation changes one), and an empty
//!   CustomResourceDefinition list (metadata-only); every list carries the current
//!   resourceVersion;
//! - watches that stay open and stream the changes the simulation makes, one JSON event per
//!   line, resourceVersions from one increasing counter; a watch from resourceVersion N gets
//!   every kept event after N (the whole history is kept); without one (or "0") it starts with
//!   ADDED for every object; `timeoutSeconds` ends it, as the real server does;
//! - TokenReview: a token `sim~<namespace>~<service account>~<pod>` is authenticated as that
//!   pod-bound service account when the review asks for the audience `sinew-ca`; anything else is
//!   not authenticated;
//! - Secrets, Leases and ConfigMaps by name: GET (404 when absent), POST (201, 409 when present),
//!   merge PATCH (409 when the patch names another resourceVersion) and PUT;
//! - any other request is answered 404, counted, and printed on stderr as `UNKNOWN REQUEST`:
//!   the summary lists every request the control plane made.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

use super::registry::{NAMESPACE, PORT, vip};

/// The audience the control plane asks TokenReview to confirm.
const AUDIENCE: &str = "sinew-ca";
/// The target port's base in `--change-by port` (as the file registry's).
const PORT_REV_BASE: u32 = 10_000;
/// Pods: 198.18.0.1 upwards, `pods_per_service` per service (below the VIPs at 198.19.0.1).
const POD_BASE: u32 = Ipv4Addr::new(198, 18, 0, 1).to_bits();
const MAX_PODS: usize = 65_534;

const NAMESPACES: &str = "/api/v1/namespaces";
const SERVICE_ACCOUNTS: &str = "/api/v1/serviceaccounts";
const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
const PODS: &str = "/api/v1/pods";
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// A token the fake TokenReview authenticates as `namespace/service_account`, bound to `pod`.
pub fn token(namespace: &str, service_account: &str, pod: &str) -> String {
    format!("sim~{namespace}~{service_account}~{pod}")
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

pub struct FakeApi {
    pub addr: SocketAddr,
    pub pods_per_service: usize,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct State {
    inner: Mutex<Inner>,
    /// "METHOD path" (namespaces of per-namespace objects as `{ns}`) → count.
    requests: Mutex<BTreeMap<String, u64>>,
    pub unknown: AtomicU64,
}

struct Inner {
    rv: u64,
    kinds: HashMap<&'static str, Kind>,
    /// Secrets, Leases, ConfigMaps: object path → object.
    objects: HashMap<String, Value>,
}

/// One listed and watched kind.
struct Kind {
    list_kind: &'static str,
    api_version: &'static str,
    items: Vec<Value>,
    rendered: Vec<Bytes>,
    /// Every event so far: (resourceVersion, the event's line).
    history: Vec<(u64, Bytes)>,
    events: broadcast::Sender<(u64, Bytes)>,
}

impl Kind {
    fn new(list_kind: &'static str, api_version: &'static str, items: Vec<Value>) -> Self {
        let rendered = items.iter().map(|v| Bytes::from(v.to_string())).collect();
        Self {
            list_kind,
            api_version,
            items,
            rendered,
            history: Vec::new(),
            events: broadcast::channel(1 << 17).0,
        }
    }

    /// Stamps item `i` with `rv`, re-renders it and tells the watchers.
    fn modified(&mut self, i: usize, rv: u64) {
        self.items[i]["metadata"]["resourceVersion"] = json!(rv.to_string());
        let obj = Bytes::from(self.items[i].to_string());
        let line = event_line("MODIFIED", &obj);
        self.rendered[i] = obj;
        self.history.push((rv, line.clone()));
        let _ = self.events.send((rv, line));
    }
}

fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

pub fn pod_ip(pods_per_service: usize, svc: usize, replica: usize) -> Ipv4Addr {
    Ipv4Addr::from_bits(POD_BASE + (svc * pods_per_service + replica) as u32)
}

/// The cluster's objects for `services` services with `pods_per_service` pods each, all at
/// revision 0, resourceVersions 1.. (returned: the last one used).
fn objects(services: usize, pps: usize, rev_in_port: bool) -> (HashMap<&'static str, Kind>, u64) {
    let mut rv = 0u64;
    let mut next = || {
        rv += 1;
        rv.to_string()
    };
    let namespaces = [NAMESPACE, "sinew-system"]
        .iter()
        .map(|ns| {
            let labels = if *ns == NAMESPACE {
                json!({"sinew-injection": "enabled", "kubernetes.io/metadata.name": ns})
            } else {
                json!({"kubernetes.io/metadata.name": ns})
            };
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": format!("ns-{ns}"), "resourceVersion": next(), "labels": labels},
                "status": {"phase": "Active"}})
        })
        .collect();
    let mut sas = Vec::with_capacity(services);
    let mut svcs = Vec::with_capacity(services);
    let mut slices = Vec::with_capacity(services);
    let mut pods = Vec::with_capacity(services * pps);
    for s in 0..services {
        let name = format!("svc-{s}");
        sas.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": format!("sa-{s}"), "resourceVersion": next()}}));
        let target = if rev_in_port {
            PORT_REV_BASE
        } else {
            u32::from(PORT)
        };
        let ip = vip(s).to_string();
        svcs.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": format!("svc-{s}"), "resourceVersion": next()},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "selector": {"app": name},
                "ports": [{"name": "http", "port": PORT, "targetPort": target, "protocol": "TCP"}]}}));
        let endpoints: Vec<Value> = (0..pps)
            .map(|r| {
                json!({"addresses": [pod_ip(pps, s, r).to_string()],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "targetRef": {"kind": "Pod", "namespace": NAMESPACE, "name": format!("{name}-{r}"), "uid": format!("pod-{s}-{r}")}})
            })
            .collect();
        slices.push(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-abcde"), "namespace": NAMESPACE, "uid": format!("eps-{s}"), "resourceVersion": next(),
                "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": format!("svc-{s}"), "controller": true}]},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": target, "protocol": "TCP"}],
            "endpoints": endpoints}));
        for r in 0..pps {
            let labels = if rev_in_port {
                json!({"app": name})
            } else {
                json!({"app": name, "rev": "0"})
            };
            let ip = pod_ip(pps, s, r).to_string();
            pods.push(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{name}-{r}"), "namespace": NAMESPACE, "uid": format!("pod-{s}-{r}"),
                    "resourceVersion": next(), "labels": labels},
                "spec": {"serviceAccountName": name, "nodeName": "node-1",
                    "containers": [
                        {"name": "app", "image": "example/app:1", "ports": [{"containerPort": target, "name": "http", "protocol": "TCP"}]},
                        {"name": "sinew-proxy", "image": "sinew/proxy:dev"}]},
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.0.1"}}));
        }
    }
    let kinds = HashMap::from([
        (NAMESPACES, Kind::new("NamespaceList", "v1", namespaces)),
        (SERVICE_ACCOUNTS, Kind::new("ServiceAccountList", "v1", sas)),
        (SERVICES, Kind::new("ServiceList", "v1", svcs)),
        (
            SLICES,
            Kind::new("EndpointSliceList", "discovery.k8s.io/v1", slices),
        ),
        (PODS, Kind::new("PodList", "v1", pods)),
        (
            CRDS,
            Kind::new("PartialObjectMetadataList", "meta.k8s.io/v1", Vec::new()),
        ),
    ]);
    (kinds, rv)
}

// === impl FakeApi ===

impl FakeApi {
    /// Listens on 127.0.0.1 with the objects of `services` services × `pods_per_service` pods.
    pub async fn start(
        services: usize,
        pods_per_service: usize,
        rev_in_port: bool,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            pods_per_service >= 1 && services * pods_per_service <= MAX_PODS,
            "--services × --pods-per-service must be 1..={MAX_PODS}"
        );
        let (kinds, rv) = objects(services, pods_per_service, rev_in_port);
        let state = Arc::new(State {
            inner: Mutex::new(Inner {
                rv,
                kinds,
                objects: HashMap::new(),
            }),
            requests: Mutex::new(BTreeMap::new()),
            unknown: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let st = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(&st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            pods_per_service,
            state,
            server,
        })
    }

    /// A kubeconfig for this server (any bearer token is accepted).
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\n\
                 clusters: [{{name: sim, cluster: {{server: \"http://{}\"}}}}]\n\
                 users: [{{name: sim, user: {{token: sim-control-plane}}}}]\n\
                 contexts: [{{name: sim, context: {{cluster: sim, user: sim}}}}]\n\
                 current-context: sim\n",
                self.addr
            ),
        )?;
        Ok(())
    }

    /// An object written through the API (a Secret, Lease or ConfigMap), by path.
    pub fn object(&self, path: &str) -> Option<Value> {
        lock(&self.state.inner).objects.get(path).cloned()
    }

    /// Services `svcs` move to revision `rev`, as one burst of watch events: their pods get the
    /// label `rev: "<rev>"`, or (`by_port`) the Service's targetPort and its EndpointSlice's port
    /// become 10000 + rev.
    pub fn change(&self, svcs: &[usize], rev: u32, by_port: bool) {
        let mut inner = lock(&self.state.inner);
        let pps = self.pods_per_service;
        for &s in svcs {
            if by_port {
                let port = PORT_REV_BASE + rev;
                inner.rv += 1;
                let rv = inner.rv;
                if let Some(k) = inner.kinds.get_mut(SERVICES) {
                    k.items[s]["spec"]["ports"][0]["targetPort"] = json!(port);
                    k.modified(s, rv);
                }
                inner.rv += 1;
                let rv = inner.rv;
                if let Some(k) = inner.kinds.get_mut(SLICES) {
                    k.items[s]["ports"][0]["port"] = json!(port);
                    k.modified(s, rv);
                }
            } else {
                for r in 0..pps {
                    inner.rv += 1;
                    let rv = inner.rv;
                    if let Some(k) = inner.kinds.get_mut(PODS) {
                        k.items[s * pps + r]["metadata"]["labels"]["rev"] = json!(rev.to_string());
                        k.modified(s * pps + r, rv);
                    }
                }
            }
        }
    }

    /// Every request so far ("METHOD path" → count) and how many were unknown.
    pub fn requests(&self) -> (BTreeMap<String, u64>, u64) {
        (
            lock(&self.state.requests).clone(),
            self.state.unknown.load(Ordering::SeqCst),
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// === the HTTP side ===

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut rsp = Response::new(Full::new(body.into()).boxed_unsync());
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    rsp
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    full(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code})
        .to_string(),
    )
}

/// `/api/v1/namespaces/{ns}/(secrets|configmaps)[/name]` or
/// `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/name]`: (namespace, resource, name).
fn named(path: &str) -> Option<(&str, &str, Option<&str>)> {
    let rest = path
        .strip_prefix("/api/v1/namespaces/")
        .or_else(|| path.strip_prefix("/apis/coordination.k8s.io/v1/namespaces/"))?;
    let mut parts = rest.split('/');
    let ns = parts.next()?;
    let resource = parts.next()?;
    let name = parts.next();
    if parts.next().is_some() || !matches!(resource, "secrets" | "configmaps" | "leases") {
        return None;
    }
    let coordination = path.starts_with("/apis/coordination.k8s.io/");
    if coordination != (resource == "leases") {
        return None;
    }
    Some((ns, resource, name))
}

async fn handle(st: &State, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let key = match named(&path) {
        Some((_, resource, name)) => format!(
            "{method} {}/{{ns}}/{resource}{}",
            if resource == "leases" {
                "/apis/coordination.k8s.io/v1/namespaces"
            } else {
                "/api/v1/namespaces"
            },
            name.map(|n| format!("/{n}")).unwrap_or_default()
        ),
        None if watching => format!("{method} {path} (watch)"),
        None => format!("{method} {path}"),
    };
    *lock(&st.requests).entry(key).or_default() += 1;

    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return status(400, "BadRequest", &format!("cannot read the body: {e}")),
    };
    if method == Method::GET && lock(&st.inner).kinds.contains_key(path.as_str()) {
        return if watching {
            watch(st, &path, &query)
        } else {
            list(st, &path)
        };
    }
    if method == Method::POST && path == TOKEN_REVIEWS {
        return review(&body);
    }
    if let Some((ns, resource, name)) = named(&path) {
        return object(st, &method, &path, ns, resource, name, &body);
    }
    st.unknown.fetch_add(1, Ordering::SeqCst);
    eprintln!(
        "fake API server: UNKNOWN REQUEST {method} {}",
        req_uri(&path, &query)
    );
    status(404, "NotFound", "the fake API server does not serve this")
}

fn req_uri(path: &str, query: &HashMap<String, String>) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{path}?{}", q.join("&"))
}

fn list(st: &State, path: &str) -> Response<Body> {
    let inner = lock(&st.inner);
    let Some(kind) = inner.kinds.get(path) else {
        return status(404, "NotFound", "no such kind");
    };
    let size: usize = kind.rendered.iter().map(|b| b.len() + 1).sum();
    let mut out = Vec::with_capacity(size + 256);
    out.extend_from_slice(
        format!(
            "{{\"apiVersion\":\"{}\",\"kind\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{}\"}},\"items\":[",
            kind.api_version, kind.list_kind, inner.rv
        )
        .as_bytes(),
    );
    for (i, item) in kind.rendered.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}");
    full(StatusCode::OK, out)
}

fn watch(st: &State, path: &str, query: &HashMap<String, String>) -> Response<Body> {
    let from: u64 = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") => 0,
        Some(v) => match v.parse() {
            Ok(v) => v,
            Err(_) => return status(400, "BadRequest", "invalid resourceVersion"),
        },
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs);
    let (backlog, mut events) = {
        let inner = lock(&st.inner);
        let Some(kind) = inner.kinds.get(path) else {
            return status(404, "NotFound", "no such kind");
        };
        let backlog: Vec<Bytes> = if from == 0 {
            kind.rendered
                .iter()
                .map(|o| event_line("ADDED", o))
                .collect()
        } else {
            kind.history
                .iter()
                .filter(|(rv, _)| *rv > from)
                .map(|(_, l)| l.clone())
                .collect()
        };
        (backlog, kind.events.subscribe())
    };
    let (tx, rx) = mpsc::channel::<Bytes>(4096);
    tokio::spawn(async move {
        let forward = async {
            for line in backlog {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            loop {
                match events.recv().await {
                    Ok((rv, line)) if rv > from => {
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Lagged: end the watch; the client resumes from its last resourceVersion.
                    Err(_) => return,
                }
            }
        };
        match timeout {
            Some(t) => {
                let _ = tokio::time::timeout(t, forward).await;
            }
            None => forward.await,
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(line)), rx))
    });
    let mut rsp = Response::new(StreamBody::new(stream).boxed_unsync());
    rsp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    rsp
}

/// TokenReview: `sim~ns~sa~pod` with the audience `sinew-ca` requested.
fn review(body: &[u8]) -> Response<Body> {
    let Ok(review) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "the TokenReview is not JSON");
    };
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let audiences: Vec<&str> = review["spec"]["audiences"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let parts: Vec<&str> = token.split('~').collect();
    let status = match parts.as_slice() {
        ["sim", ns, sa, pod] if audiences.contains(&AUDIENCE) => json!({
            "authenticated": true,
            "audiences": [AUDIENCE],
            "user": {
                "username": format!("system:serviceaccount:{ns}:{sa}"),
                "uid": format!("uid-{ns}-{sa}"),
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
                "extra": {
                    "authentication.kubernetes.io/pod-name": [pod],
                    "authentication.kubernetes.io/pod-uid": [format!("uid-{pod}")],
                },
            },
        }),
        ["sim", ..] => json!({"authenticated": false, "error": "token audiences are invalid"}),
        _ => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    full(
        StatusCode::CREATED,
        json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null}, "spec": review["spec"], "status": status})
        .to_string(),
    )
}

/// Secrets, Leases and ConfigMaps: a map from path to object.
fn object(
    st: &State,
    method: &Method,
    path: &str,
    ns: &str,
    resource: &str,
    name: Option<&str>,
    body: &[u8],
) -> Response<Body> {
    let mut inner = lock(&st.inner);
    let parsed = || serde_json::from_slice::<Value>(body).ok();
    match (method, name) {
        (&Method::GET, Some(name)) => match inner.objects.get(path) {
            Some(obj) => full(StatusCode::OK, obj.to_string()),
            None => status(404, "NotFound", &format!("{resource} \"{name}\" not found")),
        },
        (&Method::POST, None) => {
            let Some(mut obj) = parsed() else {
                return status(400, "BadRequest", "the body is not JSON");
            };
            let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) else {
                return status(422, "Invalid", "metadata.name is required");
            };
            let at = format!("{path}/{name}");
            if inner.objects.contains_key(&at) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("{resource} \"{name}\" already exists"),
                );
            }
            inner.rv += 1;
            obj["metadata"]["namespace"] = json!(ns);
            obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
            obj["metadata"]["uid"] = json!(format!("uid-{}", inner.rv));
            let out = obj.to_string();
            inner.objects.insert(at, obj);
            full(StatusCode::CREATED, out)
        }
        (&Method::PATCH | &Method::PUT, Some(name)) => {
            let Some(patch) = parsed() else {
                return status(400, "BadRequest", "the body is not JSON");
            };
            inner.rv += 1;
            let rv = inner.rv;
            let Some(current) = inner.objects.get_mut(path) else {
                return status(404, "NotFound", &format!("{resource} \"{name}\" not found"));
            };
            if let Some(want) = patch["metadata"]["resourceVersion"].as_str()
                && Some(want) != current["metadata"]["resourceVersion"].as_str()
            {
                return status(409, "Conflict", "the object has been modified");
            }
            if *method == Method::PUT {
                *current = patch;
            } else {
                merge(current, &patch);
            }
            current["metadata"]["resourceVersion"] = json!(rv.to_string());
            full(StatusCode::OK, current.to_string())
        }
        _ => {
            st.unknown.fetch_add(1, Ordering::SeqCst);
            eprintln!("fake API server: UNKNOWN REQUEST {method} {path}");
            status(405, "MethodNotAllowed", "not served by the fake API server")
        }
    }
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in fields {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}
