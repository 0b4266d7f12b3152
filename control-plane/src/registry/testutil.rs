//! Test helpers: a scratch directory that removes itself, and manifest writing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed on drop (also when the test fails).
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sinew-registry-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("test setup: create temp dir");
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to `rel` (creating parent directories) and returns the full path.
    pub(crate) fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("test setup: create dirs");
        }
        std::fs::write(&path, text).expect("test setup: write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Parses `(path, text)` files as if they were a directory in this order, without touching the
/// disk (so error messages have stable paths).
pub(crate) fn parse_files(files: &[(&str, &str)]) -> Result<super::Snapshot, super::RegistryError> {
    let mut parsed = super::object::Parsed::default();
    let mut order = 0;
    for (path, text) in files {
        super::file::parse_file(Path::new(path), text, &mut order, &mut parsed);
    }
    super::model::build(parsed, super::model::Acceptance::AllOrNothing)
}

/// The problems of an invalid set of files, as displayed.
pub(crate) fn problems(files: &[(&str, &str)]) -> Vec<String> {
    match parse_files(files) {
        Ok(_) => panic!("expected the manifests to be rejected"),
        Err(e) => {
            assert!(!e.problems().is_empty(), "not a manifest problem: {e}");
            e.problems().iter().map(ToString::to_string).collect()
        }
    }
}

pub(crate) fn key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_string(), name.to_string())
}

/// A meshed namespace, an unmeshed one, and a service account.
pub(crate) const DEMO_NS: &str = r#"# Namespaces of the demo.
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    sinew-injection: enabled
---
apiVersion: v1
kind: Namespace
metadata:
  name: legacy
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: reviews
  namespace: shop
"#;

/// Services, a Deployment, pods in and out of the mesh, and a kind the registry skips.
pub(crate) const DEMO_APP: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: shop
spec:
  selector:
    app: reviews
  ports:
  - name: http
    port: 9080
    targetPort: web
  - name: grpc-api
    port: 9090
  - name: metrics
    port: 9100
    appProtocol: tcp
  - name: dns
    port: 53
    protocol: UDP
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels:
      app: reviews
  template:
    metadata:
      labels:
        app: reviews
        version: v1
    spec:
      serviceAccountName: reviews
      containers:
      - name: app
        command: ["python3", "-m", "http.server", "9080"]
        workingDir: /srv
        ports:
        - name: web
          containerPort: 9080
---
apiVersion: v1
kind: Pod
metadata:
  name: ratings
  namespace: shop
  labels:
    app: ratings
  annotations:
    sinew.dev/inject: "false"
spec:
  containers:
  - name: app
    command: ["ratings"]
---
apiVersion: v1
kind: Service
metadata:
  name: ratings
  namespace: shop
spec:
  selector: {app: ratings}
  ports:
  - port: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: db
  namespace: legacy
  labels: {app: db}
spec:
  containers:
  - name: db
    command: ["db"]
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: legacy
spec:
  clusterIP: 198.19.0.99
  selector: {app: db}
  ports:
  - name: tcp-db
    port: 5432
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
"#;

/// One DestinationRule per accepted API version.
pub(crate) const DEMO_RULES: &str = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: shop
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: ratings
  namespace: shop
spec:
  host: ratings.shop.svc.cluster.local
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: db
spec:
  host: db.legacy.svc.cluster.local
---
apiVersion: sinew.dev/v1alpha1
kind: DestinationRule
metadata:
  name: reviews
  namespace: shop
spec:
  host: reviews
  trafficPolicy:
    retryBudget: {percent: 20}
"#;

/// The demo as a directory-like list of files.
pub(crate) fn demo() -> Vec<(&'static str, &'static str)> {
    vec![
        ("demo/app.yaml", DEMO_APP),
        ("demo/namespaces.yaml", DEMO_NS),
        ("demo/rules.yaml", DEMO_RULES),
    ]
}
