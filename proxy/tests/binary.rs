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
        .env_remove("SINEW_LOG")
        .output()
        .expect("the binary runs")
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
