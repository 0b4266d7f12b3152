//! The proxy image (the Dockerfile's `proxy` target) against what the injector puts in a pod:
//! the commands it runs are on the image's PATH and accepted by this binary, the UID it sets is
//! the image's and the one `init` exempts, and the image carries what those commands need. No
//! container runtime here: the Dockerfile is read, and the binary it copies is this one.

use serde_json::{Value, json};
use sinew_injector::contract::PROXY_UID;
use std::process::Command;

/// The PATH a container gets when its image sets none (containerd's and Docker's default; the
/// Debian images set none).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One stage of the Dockerfile: its base image and its instructions, continuation lines joined.
struct Stage {
    base: String,
    instructions: Vec<String>,
}

fn proxy_stage() -> Stage {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Dockerfile");
    let text = std::fs::read_to_string(path).expect("the Dockerfile");
    let mut joined = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && pending.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                joined.push(std::mem::take(&mut pending));
            }
        }
    }
    let mut stage: Option<Stage> = None;
    for line in joined {
        if let Some(from) = line.strip_prefix("FROM ") {
            if stage.is_some() {
                break;
            }
            if let Some((base, "proxy")) = from.split_once(" AS ") {
                stage = Some(Stage {
                    base: base.to_string(),
                    instructions: Vec::new(),
                });
            }
        } else if let Some(s) = &mut stage {
            s.instructions.push(line);
        }
    }
    stage.expect("the Dockerfile has a stage `proxy`")
}

/// The instructions of `stage` that start with `keyword`.
fn instructions<'a>(stage: &'a Stage, keyword: &str) -> Vec<&'a str> {
    stage
        .instructions
        .iter()
        .filter_map(|i| i.strip_prefix(keyword)?.strip_prefix(' '))
        .collect()
}

/// A pod injected in the fallback mode (which has every command: init, run and the hook),
/// with interception annotations.
fn injected_pod() -> Value {
    let settings = sinew_injector::Settings::from_yaml("nativeSidecar: false\n").expect("valid");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "annotations": {
            "traffic.sidecar.istio.io/includeInboundPorts": "8080,9090",
            "traffic.sidecar.istio.io/excludeOutboundPorts": "5432",
            "traffic.sidecar.istio.io/excludeOutboundIPRanges": "169.254.169.254/32",
        }},
        "spec": {"containers": [{"name": "web", "image": "web:1"}]}
    });
    match sinew_injector::inject_object(&pod, &settings) {
        sinew_injector::Injected::Changed { object, .. } => object,
        other => panic!("the pod is injected: {other:?}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("a list of strings: {e}: {v}"))
}

#[test]
fn every_command_the_injector_writes_is_the_binary_the_image_puts_on_its_path() {
    let stage = proxy_stage();
    assert!(
        stage.base.starts_with("debian:"),
        "the default PATH below is Debian's: {}",
        stage.base
    );
    assert!(
        instructions(&stage, "ENV")
            .iter()
            .all(|e| !e.starts_with("PATH")),
        "the stage keeps the default PATH"
    );
    let copied: Vec<&str> = instructions(&stage, "COPY")
        .into_iter()
        .filter(|c| c.contains("sinew-proxy"))
        .collect();
    let [copy] = copied[..] else {
        panic!("one COPY of the binary: {copied:?}");
    };
    let target = copy.split_whitespace().last().expect("a destination");
    let (dir, file) = target.rsplit_once('/').expect("an absolute path");
    assert!(
        DEFAULT_PATH.split(':').any(|d| d == dir),
        "{dir} on {DEFAULT_PATH}"
    );

    let pod = injected_pod();
    let init = &pod["spec"]["initContainers"][0];
    let proxy = &pod["spec"]["containers"][0];
    assert_eq!(
        (init["name"].as_str(), proxy["name"].as_str()),
        (Some("sinew-init"), Some("sinew-proxy"))
    );
    let hook = strings(&proxy["lifecycle"]["postStart"]["exec"]["command"]);
    for command in [strings(&init["command"]), strings(&proxy["command"]), hook] {
        assert_eq!(command[0], file, "{command:?} runs {target}");
    }
}

#[test]
fn the_image_runs_as_the_uid_the_injector_sets_and_init_exempts() {
    let stage = proxy_stage();
    assert_eq!(
        instructions(&stage, "USER"),
        [format!("{PROXY_UID}:{PROXY_UID}")]
    );
    let pod = injected_pod();
    let security = &pod["spec"]["containers"][0]["securityContext"];
    assert_eq!(security["runAsUser"], PROXY_UID);
    assert_eq!(security["runAsGroup"], PROXY_UID);
    assert_eq!(
        security["runAsNonRoot"], true,
        "numeric USER: the kubelet can check it"
    );
    // The init container runs as root (iptables) by its own securityContext, not the image's.
    assert_eq!(
        pod["spec"]["initContainers"][0]["securityContext"]["runAsUser"],
        0
    );
}

#[test]
fn the_injected_init_command_is_accepted_by_this_binary_and_exempts_the_proxys_uid() {
    let pod = injected_pod();
    let init = &pod["spec"]["initContainers"][0];
    let args = strings(&init["args"]);
    assert_eq!(args[0], "init");
    let out = Command::new(env!("CARGO_BIN_EXE_sinew-proxy"))
        .args(&args)
        .arg("--dry-run")
        .output()
        .expect("the binary runs");
    let rules = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for rule in [
        format!("-A SINEW_OUTPUT -m owner --uid-owner {PROXY_UID} -j RETURN"),
        "-A SINEW_INBOUND -p tcp -m tcp --dport 9090 -j SINEW_IN_REDIRECT".to_string(),
        "-A SINEW_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN".to_string(),
        "-A SINEW_OUTPUT -d 169.254.169.254/32 -j RETURN".to_string(),
    ] {
        assert!(
            rules.lines().any(|l| l == rule),
            "{rule:?} in the rules of {args:?}:\n{rules}"
        );
    }
}

#[test]
fn the_image_has_iptables_for_init_and_the_system_roots_tls_origination_reads() {
    let stage = proxy_stage();
    let installs: Vec<&str> = instructions(&stage, "RUN")
        .iter()
        .flat_map(|r| r.split("&&"))
        .filter_map(|c| c.trim().strip_prefix("apt-get install"))
        .flat_map(str::split_whitespace)
        .filter(|w| !w.starts_with('-'))
        .collect();
    // `init` runs iptables and iptables-restore (PATH: /usr/sbin).
    assert!(installs.contains(&"iptables"), "{installs:?}");
    // A DestinationRule with `tls.mode: SIMPLE` and no `caCertificates` verifies against the
    // system bundle, which Debian's ca-certificates writes.
    assert_eq!(
        sinew_proxy::tls::originate::SYSTEM_BUNDLE,
        "/etc/ssl/certs/ca-certificates.crt"
    );
    assert!(installs.contains(&"ca-certificates"), "{installs:?}");
}
