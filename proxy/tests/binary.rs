//! The `sinew-proxy` binary itself: what an operator sees when start-up fails.

use sinew_proxy::testing::{TempDir, TestCa};
use std::path::Path;
use std::process::{Command, Output};

fn run(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sinew-proxy"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .env_remove("SINEW_CONFIG")
        .env_remove("SINEW_PROXY_CONFIG")
        .env_remove("SINEW_LOG")
        .output()
        .expect("the binary runs")
}

/// `sinew-proxy run` with `args` and the bootstrap config in env `SINEW_PROXY_CONFIG`.
fn run_with_env_config(args: &[&str], json: &str) -> Output {
    run_with_env(args, &[("SINEW_PROXY_CONFIG", json)])
}

fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sinew-proxy"))
        .arg("run")
        .args(args)
        .env_remove("SINEW_CONFIG")
        .env_remove("SINEW_PROXY_CONFIG")
        .env_remove("SINEW_APP_PROBERS")
        .env_remove("SINEW_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs")
}

/// Exit status 1 and exactly one line on stderr, which is returned.
fn one_line_failure(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("sinew-proxy: "), "{stderr}");
    stderr
}

/// Exit status 1 and one line on stderr that names `path` and carries the OS error once.
fn assert_one_line_naming(out: &Output, path: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("sinew-proxy: "), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    let os_error = std::fs::read(path).unwrap_err().to_string();
    assert_eq!(
        stderr.matches(&os_error).count(),
        1,
        "the OS error exactly once: {stderr}"
    );
}

#[test]
fn a_missing_certificate_file_stops_start_up_with_one_line_naming_it() {
    let dir = TempDir::new("binary-cert");
    // Key and bundle exist: only the certificate is missing.
    let files = TestCa::new("binary").write_workload(
        dir.path(),
        "app",
        "spiffe://cluster.local/ns/default/sa/app",
    );
    let cert = dir.path().join("missing").join("cert.pem");
    let config = dir.path().join("proxy.yaml");
    std::fs::write(
        &config,
        format!(
            "tls: {{certFile: '{}', keyFile: '{}', trustBundleFile: '{}'}}\n\
             listeners: [{{name: in, address: '127.0.0.1:0', direction: INBOUND, appPort: 8080}}]\n\
             admin: {{adminAddress: '127.0.0.1:0', healthAddress: '127.0.0.1:0', metricsAddress: '127.0.0.1:0'}}\n",
            cert.display(),
            files.key.display(),
            files.bundle.display(),
        ),
    )
    .unwrap();
    let out = run(&config);
    assert_one_line_naming(&out, &cert);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate file"),
        "says which file it is: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_missing_config_file_stops_start_up_with_one_line_naming_it() {
    let dir = TempDir::new("binary-config");
    let config = dir.path().join("missing.yaml");
    assert_one_line_naming(&run(&config), &config);
}

#[test]
fn the_config_in_sinew_proxy_config_is_the_one_the_proxy_starts_with() {
    let dir = TempDir::new("binary-env");
    let files = TestCa::new("binary-env").write_workload(
        dir.path(),
        "app",
        "spiffe://cluster.local/ns/default/sa/app",
    );
    let cert = dir.path().join("absent-cert.pem");
    // Valid as a config; start-up then fails on the certificate it names, which proves the
    // proxy went on with this config.
    let json = format!(
        r#"{{"tls": {{"certFile": "{}", "keyFile": "{}", "trustBundleFile": "{}"}},
            "listeners": [{{"address": "127.0.0.1:0", "direction": "INBOUND", "appPort": 8080}}],
            "admin": {{"adminAddress": "127.0.0.1:0", "healthAddress": "127.0.0.1:0", "metricsAddress": "127.0.0.1:0"}}}}"#,
        cert.display(),
        files.key.display(),
        files.bundle.display(),
    );
    assert_one_line_naming(&run_with_env_config(&[], &json), &cert);
}

#[test]
fn a_malformed_sinew_proxy_config_stops_start_up_naming_the_field() {
    let out = run_with_env_config(
        &[],
        r#"{"controlPlane": {"address": "cp:15012", "rootCertFile": 7}}"#,
    );
    let line = one_line_failure(&out);
    assert!(line.contains("SINEW_PROXY_CONFIG"), "{line}");
    assert!(line.contains("controlPlane.rootCertFile"), "{line}");

    let out = run_with_env_config(&[], r#"{"listeners": [{"address": "localhost"}]}"#);
    let line = one_line_failure(&out);
    assert!(line.contains("listeners[0].address"), "{line}");
}

#[test]
fn a_config_file_and_sinew_proxy_config_together_are_refused() {
    let dir = TempDir::new("binary-both");
    let file = dir.path().join("proxy.yaml");
    std::fs::write(&file, "{}\n").unwrap();
    let out = run_with_env_config(&["--config", &file.display().to_string()], "{}");
    let line = one_line_failure(&out);
    assert!(line.contains("not both"), "{line}");
}

#[test]
fn a_malformed_sinew_app_probers_stops_start_up_naming_the_entry() {
    let out = run_with_env(
        &[],
        &[
            ("SINEW_PROXY_CONFIG", "{}"),
            (
                "SINEW_APP_PROBERS",
                r#"{"/app-health/web/readyz": {"tcpSocket": {"port": 8080}},
                    "/app-health/web/livez": {"httpGet": {"port": "http"}}}"#,
            ),
        ],
    );
    let line = one_line_failure(&out);
    assert!(
        line.contains(r#"SINEW_APP_PROBERS["/app-health/web/livez"]: httpGet.port"#),
        "{line}"
    );
}
