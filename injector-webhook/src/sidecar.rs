//! The proxy container and the volumes it mounts.
//!
//! What it promises:
//! - **Native sidecar** (default): an init container with `restartPolicy: Always` and a startup
//!   probe on `/healthz/ready`, so the kubelet starts the app's containers only once the proxy
//!   has its certificate and first config, and stops the proxy after them (Jobs complete).
//! - **Fallback** (`nativeSidecar: false`, API servers before 1.29): the first regular container,
//!   with a `postStart` hook (`sinew-proxy wait`, polling `/healthz/ready` for up to 60 s) that
//!   returns once the proxy is ready; the kubelet starts the next container only after the hook,
//!   so the app still starts second.
//! - Locked down: UID/GID 1337, non-root, read-only root filesystem (it writes only to its
//!   emptyDir), no privilege escalation, every capability dropped, `RuntimeDefault` seccomp.
//! - The bootstrap config (`SINEW_PROXY_CONFIG`) never holds the pod's name: a pod made by a
//!   controller has only a `generateName` when it is injected. It names `$(SINEW_POD_NAME)` and
//!   `$(SINEW_POD_NAMESPACE)`, which the kubelet expands from the downward-API variables defined
//!   before it; every other `$` in an env value is written `$$` so the kubelet leaves it alone.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ExecAction, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
    SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::contract::*;
use crate::overrides::{Effective, InboundMode};
use crate::settings::{Resources, Settings};

/// The proxy container; `probers` is the `SINEW_APP_PROBERS` JSON when probes were rewritten.
pub fn proxy_container(settings: &Settings, pod: &Effective, probers: Option<String>) -> Container {
    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            api_version: None,
            field_path: path.to_string(),
        }),
        ..EnvVarSource::default()
    };
    let from = |name: &str, path: &str| EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(field(path)),
    };
    let value = |name: &str, value: String| EnvVar {
        name: name.to_string(),
        value: Some(value),
        value_from: None,
    };
    // The downward-API variables first: SINEW_PROXY_CONFIG refers to two of them.
    let mut env = vec![
        from(ENV_POD_NAME, "metadata.name"),
        from(ENV_POD_NAMESPACE, "metadata.namespace"),
        from(ENV_POD_IP, "status.podIP"),
        from(ENV_SERVICE_ACCOUNT, "spec.serviceAccountName"),
        value(ENV_LOG, literal(&pod.log_level)),
        value(ENV_OTLP_ENDPOINT, literal(&settings.tracing.endpoint)),
        value(ENV_TRACE_SAMPLING, settings.tracing.sampling.to_string()),
        value(ENV_PROXY_CONFIG, bootstrap_config(settings, pod)),
    ];
    if let Some(probers) = probers {
        env.push(value(ENV_APP_PROBERS, literal(&probers)));
    }
    let health = |period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(HEALTH_PATH.to_string()),
            port: IntOrString::Int(HEALTH_PORT.into()),
            scheme: Some("HTTP".to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let port = |name: &str, number: u16| ContainerPort {
        name: Some(name.to_string()),
        container_port: number.into(),
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    };
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let (restart_policy, lifecycle) = if pod.native_sidecar {
        (Some("Always".to_string()), None)
    } else {
        // The kubelet starts the next container only when this hook returns.
        let hold = LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(wait_command()),
            }),
            ..LifecycleHandler::default()
        };
        (
            None,
            Some(Lifecycle {
                post_start: Some(hold),
                ..Lifecycle::default()
            }),
        )
    };
    Container {
        name: PROXY_CONTAINER.to_string(),
        image: Some(pod.proxy_image.clone()),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        command: Some(vec!["sinew-proxy".to_string()]),
        args: Some(vec!["run".to_string()]),
        env: Some(env),
        ports: Some(vec![
            port("sinew-metrics", METRICS_PORT),
            port("sinew-health", HEALTH_PORT),
        ]),
        resources: Some(resources(&pod.proxy_resources)),
        restart_policy,
        lifecycle,
        // Ten minutes to become ready (the first certificate and config), then every 15 s.
        startup_probe: Some(health(1, 600)),
        readiness_probe: Some(health(15, 4)),
        security_context: Some(SecurityContext {
            run_as_user: Some(PROXY_UID),
            run_as_group: Some(PROXY_UID),
            run_as_non_root: Some(true),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: None,
                drop: Some(vec!["ALL".to_string()]),
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount(TOKEN_VOLUME, TOKEN_DIR, true),
            mount(ROOT_CERT_VOLUME, ROOT_CERT_DIR, true),
            mount(DATA_VOLUME, DATA_DIR, false),
        ]),
        ..Container::default()
    }
}

/// The fallback's `postStart` hook: `sinew-proxy wait` on the proxy's own readiness (the same
/// port and path as the native sidecar's startup probe).
pub fn wait_command() -> Vec<String> {
    vec![
        "sinew-proxy".to_string(),
        "wait".to_string(),
        format!("--url=http://127.0.0.1:{HEALTH_PORT}{HEALTH_PATH}"),
        format!("--timeout-seconds={WAIT_TIMEOUT_SECONDS}"),
    ]
}

/// The volumes the proxy mounts.
pub fn volumes() -> Vec<Volume> {
    vec![
        Volume {
            name: TOKEN_VOLUME.to_string(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(TOKEN_AUDIENCE.to_string()),
                        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                        path: TOKEN_PATH.to_string(),
                    }),
                    ..VolumeProjection::default()
                }]),
                default_mode: None,
            }),
            ..Volume::default()
        },
        Volume {
            name: ROOT_CERT_VOLUME.to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: ROOT_CERT_CONFIG_MAP.to_string(),
                items: Some(vec![KeyToPath {
                    key: ROOT_CERT_KEY.to_string(),
                    path: ROOT_CERT_KEY.to_string(),
                    mode: None,
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: DATA_VOLUME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ]
}

/// Requests and limits as a container's `resources`.
pub fn resources(r: &Resources) -> ResourceRequirements {
    let list = |cpu: &Option<crate::quantity::Quantity>,
                memory: &Option<crate::quantity::Quantity>| {
        let mut out = BTreeMap::new();
        if let Some(cpu) = cpu {
            out.insert("cpu".to_string(), KubeQuantity(cpu.as_str().to_string()));
        }
        if let Some(memory) = memory {
            out.insert(
                "memory".to_string(),
                KubeQuantity(memory.as_str().to_string()),
            );
        }
        (!out.is_empty()).then_some(out)
    };
    ResourceRequirements {
        requests: list(&r.requests.cpu, &r.requests.memory),
        limits: list(&r.limits.cpu, &r.limits.memory),
        claims: None,
    }
}

/// `SINEW_PROXY_CONFIG`: the bootstrap `ProxyConfig` in protobuf JSON.
fn bootstrap_config(settings: &Settings, pod: &Effective) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Bootstrap {
        control_plane: ControlPlane,
        mesh_address_ranges: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        inbound_mode: Option<&'static str>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ControlPlane {
        address: String,
        root_cert_file: &'static str,
        identity: String,
        token_file: &'static str,
        pod: String,
        namespace: String,
    }
    let config = Bootstrap {
        control_plane: ControlPlane {
            address: literal(&settings.control_plane_address),
            root_cert_file: ROOT_CERT_FILE,
            identity: literal(&settings.control_plane_identity),
            token_file: TOKEN_FILE,
            pod: format!("$({ENV_POD_NAME})"),
            namespace: format!("$({ENV_POD_NAMESPACE})"),
        },
        mesh_address_ranges: settings
            .mesh_address_ranges
            .iter()
            .map(|r| literal(r))
            .collect(),
        inbound_mode: pod.inbound_mode.map(|m| match m {
            InboundMode::Permissive => "PERMISSIVE",
            InboundMode::Strict => "STRICT",
        }),
    };
    serde_json::to_string(&config).expect("invariant: string fields serialise")
}

/// `s` as the kubelet should pass it on: it expands `$(NAME)` in env values and reduces `$$` to
/// `$`, so every `$` is doubled.
pub fn literal(s: &str) -> String {
    s.replace('$', "$$")
}

/// What the kubelet makes of an env value, given the variables defined before it (for tests of
/// the round trip; Kubernetes' `expansion.Expand`).
pub fn kubelet_expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    expand_with(s, |name| vars.get(name).map(String::as_str))
}

/// Kubernetes' `$(NAME)` expansion (commands, args and env values): `$$` is a literal `$`, and a
/// name `lookup` does not know stays as written. Local mode's runner expands with this too.
pub fn expand_with<'a>(s: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(end) = tail.strip_prefix("$(").and_then(|t| t.find(')')) {
            match lookup(&tail[2..2 + end]) {
                Some(v) => out.push_str(v),
                None => out.push_str(&tail[..3 + end]),
            }
            rest = &tail[3 + end..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The environment a container's process gets from the kubelet: each `valueFrom.fieldRef` from
/// `field` (given its field path), each `value` with `$(NAME)` expanded from the variables
/// defined before it. For tests that run the proxy with what a pod would give it.
pub fn kubelet_env(
    container: &serde_json::Value,
    field: impl Fn(&str) -> String,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default().to_string();
        let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some(path) => field(path),
            None => kubelet_expand(e["value"].as_str().unwrap_or_default(), &vars),
        };
        vars.insert(name, value);
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_survives_the_kubelets_expansion() {
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        for s in [
            "plain",
            "$(A)",
            "$$(A)",
            "cost $5",
            "$",
            "a$",
            "$(",
            "{\"k\":\"$(A)\"}",
        ] {
            assert_eq!(kubelet_expand(&literal(s), &vars), s, "{s:?}");
        }
        assert_eq!(kubelet_expand("$(A)-$(B)", &vars), "x-$(B)");
    }

    #[test]
    fn the_trace_sampling_percentage_reaches_the_proxy_unconverted() {
        for (yaml, env) in [
            ("0", "0"),
            ("-0.0", "0"),
            ("0.25", "0.25"),
            ("1.0", "1"),
            ("12.5", "12.5"),
            ("100", "100"),
        ] {
            let settings = Settings::from_yaml(&format!("tracing: {{sampling: {yaml}}}\n"))
                .unwrap_or_else(|e| panic!("{yaml}: {e}"));
            let pod = crate::overrides::effective(&settings, &BTreeMap::new(), &mut Vec::new())
                .expect("no overrides");
            let container = proxy_container(&settings, &pod, None);
            let sampling = container
                .env
                .iter()
                .flatten()
                .find(|e| e.name == "SINEW_TRACE_SAMPLING")
                .and_then(|e| e.value.as_deref());
            assert_eq!(sampling, Some(env), "{yaml}");
        }
    }

    #[test]
    fn the_bootstrap_config_names_the_pod_through_the_downward_api() {
        let settings = Settings::from_yaml("meshAddressRanges: [10.96.0.0/12]\n").expect("valid");
        let pod = crate::overrides::effective(&settings, &BTreeMap::new(), &mut Vec::new())
            .expect("no overrides");
        let json: serde_json::Value =
            serde_json::from_str(&bootstrap_config(&settings, &pod)).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "controlPlane": {
                    "address": "sinew-control-plane.sinew-system.svc:15012",
                    "rootCertFile": "/var/run/sinew/root-cert/root-cert.pem",
                    "identity": "spiffe://cluster.local/ns/sinew-system/sa/sinew-control-plane",
                    "tokenFile": "/var/run/sinew/token/token",
                    "pod": "$(SINEW_POD_NAME)",
                    "namespace": "$(SINEW_POD_NAMESPACE)",
                },
                "meshAddressRanges": ["10.96.0.0/12"],
            })
        );
    }
}
