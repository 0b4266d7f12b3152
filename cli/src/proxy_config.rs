//! `sinewctl proxy-config POD`: what one pod's proxy is using right now — its routes, the
//! DestinationRule policy it applies per service and subset, and the health of every endpoint —
//! read from the proxy's own admin API (`GET /config_dump` and `GET /clusters` on
//! 127.0.0.1:15000 inside the pod's network namespace), never from the YAML: the point is to see
//! what the proxy took, not what was meant. istioctl's `proxy-config` is the model.
//!
//! The fetching is here; the reading and the table are in `render` (pure, tested from fixture
//! JSON without a network).

mod render;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;

use crate::state::Run;
use crate::sys;

/// The proxy's admin listener (default `admin.adminAddress`), on the pod's loopback.
const ADMIN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 15000);
/// A config dump of a few thousand services is a few MB: allow it more than a probe's 500 ms.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// `sinewctl proxy-config [-n NS] POD [--service NAME] [--json]`.
pub fn proxy_config(
    run: &Run,
    namespace: &str,
    pod: &str,
    service: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let state = run.load_state()?;
    if !sys::is_root() {
        anyhow::bail!(
            "`sinewctl proxy-config` needs root to reach the proxy inside the pod's network namespace (run it with sudo)"
        );
    }
    let p = state.pod(namespace, pod)?;
    if !p.meshed {
        anyhow::bail!(
            "pod {namespace}/{pod} has no sidecar, so no proxy config to show (its namespace is not labelled sinew-injection=enabled, or the pod opts out with sinew.dev/inject: \"false\")"
        );
    }
    let logs_hint = format!("{} logs -n {namespace} {pod} -c proxy", crate::invoked_as());
    let dump = match sys::http_get(&p.netns, ADMIN, "/config_dump", FETCH_TIMEOUT) {
        Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body).with_context(|| {
            format!(
                "{namespace}/{pod}'s proxy answered /config_dump with something other than JSON"
            )
        })?,
        Ok((status, body)) => anyhow::bail!(
            "{namespace}/{pod}'s proxy answered GET /config_dump with {status}: {} (see `{logs_hint}`)",
            body.trim()
        ),
        Err(e) => anyhow::bail!(
            "cannot reach {namespace}/{pod}'s proxy admin API at {ADMIN} inside the pod: {e} (is its proxy running? see `{logs_hint}`)"
        ),
    };
    // Endpoint health is a separate, newer endpoint: without it the routes and policy are
    // still worth showing, so its absence is a note, not an error.
    let clusters = match sys::http_get(&p.netns, ADMIN, "/clusters", FETCH_TIMEOUT) {
        Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
            .map_err(|e| format!("GET /clusters did not return JSON ({e})")),
        Ok((status, _)) => Err(format!(
            "GET /clusters answered {status}; this proxy may predate it"
        )),
        Err(e) => Err(format!("GET /clusters failed: {e}")),
    };
    if json {
        let out = serde_json::json!({
            "pod": format!("{namespace}/{pod}"),
            "configDump": dump,
            "clusters": clusters.as_ref().ok(),
            "clustersError": clusters.as_ref().err(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let view = render::View::read(&dump, clusters);
    print!("{}", view.render(&format!("{namespace}/{pod}"), service));
    Ok(())
}
