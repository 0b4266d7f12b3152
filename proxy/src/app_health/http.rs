//! The kubelet's `httpGet` probe, run from inside the pod.
//!
//! Kubelet semantics, kept: `GET` with the probe's headers, `User-Agent: kube-probe/<version>`
//! and `Accept: */*` unless the probe sets them, one connection per probe (`Connection:
//! close`), HTTPS without certificate verification; a status from 200 to 399 passes; a redirect
//! to the same host is followed (at most 10), one to another host passes as it is (not
//! followed); the body is never read.

use super::{Failure, USER_AGENT_PREFIX};
use crate::app_health::spec::HttpGet;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Go's http client (the kubelet's) gives up after this many redirects.
const MAX_REDIRECTS: usize = 10;
/// Room for the response head: a probe answer needs little, and the app is not trusted to keep
/// it small.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Where one request of the probe goes.
#[derive(Clone, Debug, PartialEq)]
struct Target {
    https: bool,
    port: u16,
    /// The Host header's host (without the port).
    host: String,
    path: PathAndQuery,
}

/// Runs the probe; Ok when the app passes it. `user_agent` is the kubelet's own, when it sent
/// one that says `kube-probe/…`.
pub async fn probe(
    spec: &HttpGet,
    user_agent: &HeaderValue,
    tls: &Arc<rustls::ClientConfig>,
    default_host: &str,
) -> Result<(), Failure> {
    let mut target = Target {
        https: spec.https,
        port: spec.port,
        host: spec
            .host
            .clone()
            .unwrap_or_else(|| default_host.to_string()),
        path: spec.path.clone(),
    };
    for _ in 0..=MAX_REDIRECTS {
        let rsp = get(&target, spec, user_agent, tls).await?;
        let status = rsp.status();
        if status.is_redirection()
            && let Some(next) = rsp
                .headers()
                .get(header::LOCATION)
                .and_then(|l| redirect(&target, l))
        {
            // Another host: the kubelet stops and judges the redirect itself (a 3xx passes).
            if !same_host(&next.host, &target.host) {
                return Ok(());
            }
            target = next;
            continue;
        }
        return judge(status, &target);
    }
    Err(Failure::new(format!(
        "stopped after {MAX_REDIRECTS} redirects ({})",
        target.url()
    )))
}

/// 200–399 pass; the app's own status otherwise.
fn judge(status: StatusCode, target: &Target) -> Result<(), Failure> {
    if (200..400).contains(&status.as_u16()) {
        Ok(())
    } else {
        Err(Failure {
            status: Some(status),
            reason: format!("GET {}: {status}", target.url()),
        })
    }
}

/// One request on a connection of its own, closed as soon as the response head is in.
async fn get(
    target: &Target,
    spec: &HttpGet,
    user_agent: &HeaderValue,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<http::Response<hyper::body::Incoming>, Failure> {
    let addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), target.port);
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| Failure::new(format!("GET {}: connect to {addr}: {e}", target.url())))?;
    let _ = tcp.set_nodelay(true);
    let req = request(target, spec, user_agent)?;
    if target.https {
        // No SNI for an address (as Go does); the name otherwise.
        let name =
            rustls::pki_types::ServerName::try_from(target.host.clone()).unwrap_or_else(|_| {
                rustls::pki_types::ServerName::from(std::net::IpAddr::from(Ipv4Addr::LOCALHOST))
            });
        let io = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::new(format!("GET {}: TLS handshake: {e}", target.url())))?;
        send(io, req, target).await
    } else {
        send(tcp, req, target).await
    }
}

async fn send<I>(
    io: I,
    req: Request<Empty<Bytes>>,
    target: &Target,
) -> Result<http::Response<hyper::body::Incoming>, Failure>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let failed = |e: hyper::Error| Failure::new(format!("GET {}: {e}", target.url()));
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(failed)?;
    // The connection is driven here, not spawned: it ends with the probe.
    tokio::pin!(conn);
    let answer = sender.send_request(req);
    tokio::pin!(answer);
    let rsp = tokio::select! {
        biased;
        rsp = &mut answer => rsp,
        // The connection ended; whatever it had to say is in `answer` by now.
        _ = &mut conn => answer.await,
    };
    rsp.map_err(failed)
}

/// The request the kubelet would send.
fn request(
    target: &Target,
    spec: &HttpGet,
    user_agent: &HeaderValue,
) -> Result<Request<Empty<Bytes>>, Failure> {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = http::Uri::from(target.path.clone());
    let headers = req.headers_mut();
    for (name, value) in &spec.headers {
        headers.append(name.clone(), value.clone());
    }
    if !headers.contains_key(header::HOST) {
        let host = HeaderValue::try_from(target.authority())
            .map_err(|_| Failure::new(format!("{:?} is not a valid Host", target.authority())))?;
        headers.insert(header::HOST, host);
    }
    if !headers.contains_key(header::USER_AGENT) {
        headers.insert(header::USER_AGENT, user_agent.clone());
    }
    if !headers.contains_key(header::ACCEPT) {
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    Ok(req)
}

/// Where a `Location` leads from `from`; None when it names nothing an HTTP probe can follow
/// (another scheme, no host): the 3xx is then judged as it is, as when it has no Location.
fn redirect(from: &Target, location: &HeaderValue) -> Option<Target> {
    let location = location.to_str().ok()?;
    if location.starts_with("//") {
        // Scheme-relative: same scheme, new authority.
        let scheme = if from.https { "https:" } else { "http:" };
        return redirect(
            from,
            &HeaderValue::try_from(format!("{scheme}{location}")).ok()?,
        );
    }
    let has_scheme = location.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if !has_scheme {
        // A path: absolute, or relative to the current path's directory.
        let path = if location.starts_with('/') {
            location.parse().ok()?
        } else {
            let base = from.path.path();
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}").parse().ok()?
        };
        return Some(Target {
            path,
            ..from.clone()
        });
    }
    let uri: http::Uri = location.parse().ok()?;
    let https = match uri.scheme_str()?.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.host().is_empty() {
        return None;
    }
    Some(Target {
        https,
        port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        host: host_of(authority),
        path: uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    })
}

/// Host names compare without case, IPv6 addresses with or without brackets.
fn same_host(a: &str, b: &str) -> bool {
    let bare = |h: &str| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    };
    bare(a) == bare(b)
}

fn host_of(authority: &Authority) -> String {
    authority.host().to_string()
}

// === impl Target ===

impl Target {
    /// `host[:port]`, the port left out when it is the scheme's default (as Go writes it).
    fn authority(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }
}

/// The kubelet's User-Agent when `incoming` is one (`kube-probe/1.33`), else ours.
pub fn user_agent(incoming: Option<&HeaderValue>) -> HeaderValue {
    incoming
        .filter(|ua| ua.as_bytes().starts_with(USER_AGENT_PREFIX.as_bytes()))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(super::DEFAULT_USER_AGENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        Target {
            https: false,
            port: 8080,
            host: "10.1.2.3".into(),
            path: path.parse().unwrap(),
        }
    }

    fn location(from: &Target, l: &str) -> Option<Target> {
        redirect(from, &HeaderValue::from_str(l).unwrap())
    }

    #[test]
    fn relative_locations_stay_on_the_same_host_and_port() {
        let from = target("/app/healthz?x=1");
        assert_eq!(location(&from, "/ready"), Some(target("/ready")));
        assert_eq!(location(&from, "ready?y=2"), Some(target("/app/ready?y=2")));
    }

    #[test]
    fn absolute_locations_carry_their_scheme_host_and_port() {
        let from = target("/healthz");
        let next = location(&from, "https://10.1.2.3:8443/ok").unwrap();
        assert_eq!(
            (next.https, next.port, next.host.as_str()),
            (true, 8443, "10.1.2.3")
        );
        assert_eq!(next.path, "/ok");
        let other = location(&from, "http://example.com/").unwrap();
        assert_eq!((other.port, other.host.as_str()), (80, "example.com"));
        let relative_scheme = location(&from, "//example.com:81/x").unwrap();
        assert_eq!((relative_scheme.https, relative_scheme.port), (false, 81));
    }

    #[test]
    fn unusable_locations_leave_the_redirect_to_be_judged_as_it_is() {
        let from = target("/healthz");
        for bad in [
            "ftp://host/x",
            "http://",
            "mailto:a@b",
            "http://exa mple.com/",
        ] {
            assert_eq!(
                HeaderValue::from_str(bad)
                    .ok()
                    .and_then(|l| redirect(&from, &l)),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn hosts_compare_without_case_or_brackets() {
        assert!(same_host("Web.Local", "web.local"));
        assert!(same_host("[fd00::1]", "fd00::1"));
        assert!(!same_host("10.1.2.3", "10.1.2.4"));
    }

    #[test]
    fn the_host_header_leaves_out_the_default_port() {
        let mut t = target("/");
        assert_eq!(t.authority(), "10.1.2.3:8080");
        t.port = 80;
        assert_eq!(t.authority(), "10.1.2.3");
        t.host = "fd00::1".into();
        t.port = 8080;
        assert_eq!(t.authority(), "[fd00::1]:8080");
        t.host = "[fd00::1]".into();
        assert_eq!(t.authority(), "[fd00::1]:8080");
    }

    #[test]
    fn the_kubelets_user_agent_is_passed_on_and_anything_else_replaced() {
        let kubelet = HeaderValue::from_static("kube-probe/1.31");
        assert_eq!(user_agent(Some(&kubelet)), "kube-probe/1.31");
        let curl = HeaderValue::from_static("curl/8.0");
        assert_eq!(user_agent(Some(&curl)), super::super::DEFAULT_USER_AGENT);
        assert_eq!(user_agent(None), super::super::DEFAULT_USER_AGENT);
    }
}
