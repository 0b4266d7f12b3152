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

/// The mesh-wide telemetry defaults `sinewctl up` passes on to the control plane's flags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Telemetry {
    /// Where the proxies send spans (the run's OTLP relay), `--otlp-endpoint`.
    pub otlp_endpoint: Option<String>,
    /// `--trace-sampling`: the percentage of requests without a sampling decision to trace.
    pub trace_sampling: Option<f64>,
    /// Access logs on, in this encoding (`--access-log --access-log-encoding`).
    pub access_log: Option<AccessLogEncoding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogEncoding {
    Text,
    Json,
}

// === impl Telemetry ===

impl Telemetry {
    /// The control plane's flags for these settings (none for what is not set: its defaults).
    pub fn flags(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(url) = &self.otlp_endpoint {
            out.extend(["--otlp-endpoint".to_string(), url.clone()]);
        }
        if let Some(pct) = self.trace_sampling {
            out.extend(["--trace-sampling".to_string(), pct.to_string()]);
        }
        if let Some(encoding) = self.access_log {
            let encoding = match encoding {
                AccessLogEncoding::Text => "text",
                AccessLogEncoding::Json => "json",
            };
            out.extend([
                "--access-log".to_string(),
                "--access-log-encoding".to_string(),
                encoding.to_string(),
            ]);
        }
        out
    }
}

/// `--trace-sampling`: a percentage from 0 to 100 (fractions allowed, as Istio's
/// `randomSamplingPercentage`).
pub fn parse_sampling(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "{s:?}: expected a percentage from 0 to 100, e.g. 1 or 0.5"
        )),
    }
}

/// The control plane as a supervised process in its own network namespace, reading the run's
/// manifests and assignments, with `telemetry`'s flags.
pub fn spec(run: &Run, cp_bin: &Path, cp_dir: &Path, log: &Path, telemetry: &Telemetry) -> Spec {
    let mut argv = vec![
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
    ];
    argv.extend(telemetry.flags());
    Spec {
        name: "control-plane".into(),
        netns: run.control_plane_netns(),
        user: None,
        argv,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_settings_become_the_control_planes_flags() {
        assert!(
            Telemetry::default().flags().is_empty(),
            "unset: its defaults"
        );
        let t = Telemetry {
            otlp_endpoint: Some("http://198.18.0.1:4317".into()),
            trace_sampling: Some(0.5),
            access_log: Some(AccessLogEncoding::Json),
        };
        assert_eq!(
            t.flags(),
            [
                "--otlp-endpoint",
                "http://198.18.0.1:4317",
                "--trace-sampling",
                "0.5",
                "--access-log",
                "--access-log-encoding",
                "json"
            ]
        );
        let t = Telemetry {
            trace_sampling: Some(100.0),
            ..Telemetry::default()
        };
        assert_eq!(t.flags(), ["--trace-sampling", "100"]);
    }

    #[test]
    fn sampling_is_a_percentage() {
        assert_eq!(parse_sampling("1"), Ok(1.0));
        assert_eq!(parse_sampling("0"), Ok(0.0));
        assert_eq!(parse_sampling("100"), Ok(100.0));
        assert_eq!(parse_sampling("0.01"), Ok(0.01));
        for bad in ["", "-1", "100.5", "NaN", "inf", "1%", "ten"] {
            assert!(parse_sampling(bad).is_err(), "{bad:?}");
        }
    }
}
