//! The control plane as local mode runs it: a supervised process in its own network namespace
//! on the bridge, reading the run's manifests and assignments, and the wait for it to serve.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::process::{RestartPolicy, Spec};
use crate::state::{
    CONTROL_PLANE_GRPC_PORT, CONTROL_PLANE_IP, CONTROL_PLANE_MONITORING_PORT, POD_CIDR, Run,
    VIP_CIDR,
};
use crate::sys;

/// How long the control plane gets to answer `/ready`.
const START: Duration = Duration::from_secs(30);

/// The control plane as a supervised process in its own network namespace, reading the run's
/// manifests and assignments.
pub fn spec(run: &Run, cp_bin: &Path, cp_dir: &Path, log: &Path) -> Spec {
    Spec {
        name: "control-plane".into(),
        netns: run.control_plane_netns(),
        user: None,
        argv: vec![
            cp_bin.display().to_string(),
            "serve".into(),
            "--registry".into(),
            run.manifests().display().to_string(),
            "--assignments".into(),
            run.assignments().display().to_string(),
            "--state-dir".into(),
            cp_dir.display().to_string(),
            "--listen".into(),
            SocketAddr::new(CONTROL_PLANE_IP.into(), CONTROL_PLANE_GRPC_PORT).to_string(),
            "--monitoring".into(),
            SocketAddr::new(CONTROL_PLANE_IP.into(), CONTROL_PLANE_MONITORING_PORT).to_string(),
            "--service-cidr".into(),
            VIP_CIDR.into(),
            "--pod-cidr".into(),
            POD_CIDR.into(),
        ],
        env: vec![
            ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("NO_COLOR".into(), "1".into()),
        ],
        cwd: PathBuf::from("/"),
        log: log.to_path_buf(),
        restart: RestartPolicy::Always,
    }
}

/// Waits for the control plane's `/ready` and its trust bundle.
pub async fn wait_ready(netns: &str, trust_bundle: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + START;
    let addr = SocketAddr::new(CONTROL_PLANE_IP.into(), CONTROL_PLANE_MONITORING_PORT);
    loop {
        let ns = netns.to_string();
        let ready = tokio::task::spawn_blocking(move || {
            sys::http_get(&ns, addr, "/ready", Duration::from_millis(500))
                .is_ok_and(|(status, _)| status == 200)
        })
        .await
        .unwrap_or(false);
        if ready && trust_bundle.exists() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no answer on {addr}/ready within {START:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
