//! Every pod the injector makes is valid for a Kubernetes 1.33 API server: each injected fixture
//! (native sidecar and fallback, with and without per-pod annotations) and each workload kind
//! `kube-inject` rewrites is written out and checked by `kubernetes-validate --strict -k 1.33.0`
//! (PyPI; the schemas are the API server's OpenAPI, unknown fields refused).
//!
//! The validator runs in the Python venv `scripts/test.sh` builds (`SINEW_PY_TOOLS` in
//! scripts/lib/bootstrap.sh): `SINEW_TEST_PYTHON` names its python, else
//! `target/py-venv/bin/python` is used. A test that cannot find the validator fails, saying how
//! to get it. `SINEW_INJECTED_DIR=DIR` keeps the files written there, to look at.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sinew_injector::{Injected, Settings, inject_object};

mod support;
use support::*;

/// The Kubernetes version the injected objects must be valid for.
const KUBERNETES: &str = "1.33.0";
const PYTHON_ENV: &str = "SINEW_TEST_PYTHON";
const DEFAULT_PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/py-venv/bin/python");

#[test]
fn every_injected_pod_is_valid_for_kubernetes_1_33() {
    let python = validator();
    let dir = OutDir::new("pods");
    let mut written = Vec::new();
    let overrides = json!({
        "sinew.dev/proxy-cpu": "100m", "sinew.dev/proxy-memory-limit": "1Gi",
        "sidecar.istio.io/proxyMemory": "64Mi", "sinew.dev/log-level": "debug",
        "sinew.dev/inbound-mode": "STRICT",
        "traffic.sidecar.istio.io/includeInboundPorts": "9080",
        "traffic.sidecar.istio.io/excludeInboundPorts": "15090",
        "traffic.sidecar.istio.io/excludeOutboundPorts": "5432,6379",
        "traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/8",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "169.254.169.254"
    });
    for file in [
        "deployment-pod.json",
        "job-pod.json",
        "init-and-probes-pod.json",
    ] {
        for native in [true, false] {
            let settings = Settings::from_yaml(&format!(
                "nativeSidecar: {native}\nmeshAddressRanges: [10.96.0.0/12, 10.244.0.0/16]\n\
                 tracing: {{endpoint: 'http://jaeger.sinew-system:4317', sampling: 0.25}}\n"
            ))
            .expect("valid settings");
            let (_, pod, _) = injected(file, &settings);
            written.push(dir.write(&format!("{}-native-{native}", stem(file)), &pod));

            let mut review = fixture(file);
            let annotations = &mut review["request"]["object"]["metadata"]["annotations"];
            if annotations.is_null() {
                *annotations = json!({});
            }
            for (k, v) in overrides.as_object().expect("an object") {
                annotations[k] = v.clone();
            }
            let (_, pod, _) = injected_review(&review, &settings);
            written.push(dir.write(&format!("{}-overridden-native-{native}", stem(file)), &pod));
        }
    }
    assert_eq!(written.len(), 12);
    validate(&python, &written).unwrap_or_else(|out| panic!("invalid for {KUBERNETES}:\n{out}"));
}

#[test]
fn every_workload_kube_inject_rewrites_is_valid_for_kubernetes_1_33() {
    let python = validator();
    let dir = OutDir::new("workloads");
    let pod = fixture("init-and-probes-pod.json")["request"]["object"].clone();
    let template = json!({"metadata": {"labels": pod["metadata"]["labels"], "annotations": pod["metadata"]["annotations"]},
                          "spec": pod["spec"]});
    let selector = json!({"matchLabels": pod["metadata"]["labels"]});
    let mut job_template = template.clone();
    job_template["spec"]["restartPolicy"] = json!("OnFailure");
    let objects = [
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop"},
               "spec": {"replicas": 2, "selector": selector, "template": template}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "api", "namespace": "shop"},
               "spec": {"serviceName": "api", "selector": selector, "template": template}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "api", "namespace": "shop"},
               "spec": {"selector": selector, "template": template}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "api", "namespace": "shop"},
               "spec": {"selector": selector, "template": template}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "api", "namespace": "shop"},
               "spec": {"template": job_template}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "api", "namespace": "shop"},
               "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": job_template}}}}),
    ];
    let mut written = Vec::new();
    for object in &objects {
        let Injected::Changed { object: out, .. } = inject_object(object, &Settings::default())
        else {
            panic!("{} not injected", object["kind"]);
        };
        let kind = out["kind"].as_str().unwrap_or_default().to_lowercase();
        written.push(dir.write(&kind, &out));
    }
    validate(&python, &written).unwrap_or_else(|out| panic!("invalid for {KUBERNETES}:\n{out}"));
}

#[test]
fn the_validator_is_strict_so_a_pass_means_something() {
    // The checks above can fail: a misspelt field in an injected pod is refused.
    let python = validator();
    let dir = OutDir::new("refused");
    let (_, mut pod, _) = injected("job-pod.json", &Settings::default());
    pod["spec"]["initContainers"][1]["restartPolicyy"] = json!("Always");
    let unknown = dir.write("unknown-field", &pod);
    let out = validate(&python, &[unknown]).expect_err("refused");
    assert!(out.contains("restartPolicyy"), "{out}");
}

/// Runs the validator on `files`: `Err` with its output when any is invalid.
fn validate(python: &Path, files: &[PathBuf]) -> Result<(), String> {
    let out = Command::new(python)
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--quiet",
            "-k",
            KUBERNETES,
        ])
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(text)
    }
}

/// The python that has kubernetes-validate, or a failure saying how to get one.
fn validator() -> PathBuf {
    let python = std::env::var_os(PYTHON_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PYTHON));
    let works = Command::new(&python)
        .args(["-c", "import kubernetes_validate"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        works,
        "kubernetes-validate is not available to {} ({PYTHON_ENV}, else target/py-venv): run \
         scripts/test.sh once (it builds that venv with the test tools of scripts/lib/bootstrap.sh), \
         or set {PYTHON_ENV} to a python with kubernetes-validate",
        python.display()
    );
    python
}

/// Where the files go: `SINEW_INJECTED_DIR/<name>` (kept), else a temporary directory (removed).
struct OutDir {
    path: PathBuf,
    keep: bool,
}

impl OutDir {
    fn new(name: &str) -> OutDir {
        let (base, keep) = match std::env::var_os("SINEW_INJECTED_DIR") {
            Some(dir) => (PathBuf::from(dir), true),
            None => (
                std::env::temp_dir().join(format!("sinew-injected-{}", std::process::id())),
                false,
            ),
        };
        let path = base.join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        OutDir { path, keep }
    }

    /// Writes `object` as `<name>.yaml` (JSON is YAML) and returns the path. A pod with only a
    /// `generateName` gets a name, as the API server gives it one before validating (and the
    /// validator's messages need one).
    fn write(&self, name: &str, object: &Value) -> PathBuf {
        let path = self.path.join(format!("{name}.yaml"));
        let mut object = object.clone();
        let meta = &mut object["metadata"];
        if meta.get("name").is_none() {
            let prefix = meta["generateName"]
                .as_str()
                .unwrap_or("unnamed-")
                .to_string();
            meta["name"] = json!(format!("{prefix}x7k2p"));
        }
        let text = serde_json::to_string_pretty(&object).expect("JSON");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn stem(file: &str) -> &str {
    file.trim_end_matches(".json")
}
