//! Access logs: one line per request or opaque TCP connection on stdout, in Envoy's default text
//! format (what Istio's `accessLogFile: /dev/stdout` prints) or as JSON with the same fields plus
//! the trace id and the peer's identity.
//!
//! Promises:
//! - off by default; on when the config says (`telemetry.accessLog.enabled`, from the bootstrap
//!   or the control plane) or the proxy flag `--access-log text|json` (env `SINEW_ACCESS_LOG`)
//!   forces it. When off, a request pays one atomic load;
//! - the request path never waits: lines go through a bounded queue ([`QUEUE`] lines) to one
//!   writer thread; when the queue is full the line is dropped and counted in
//!   `sinew_access_log_dropped_total`;
//! - one line per entry: values from the network are escaped (text: `\"`, `\\` and `\xNN` for
//!   every byte outside printable ASCII; JSON: the JSON escapes, invalid UTF-8 replaced), so a
//!   newline or quote in a header can neither start a forged line nor break the JSON.

use crate::traffic::ResponseFlags;
use prometheus_client::metrics::counter::Counter;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// Lines queued for the writer before new ones are dropped.
pub const QUEUE: usize = 4096;

/// The env variable of the `--access-log` flag.
pub const ENV: &str = "SINEW_ACCESS_LOG";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "{other:?} is not an access-log format (text or json)"
            )),
        }
    }
}

const OFF: u8 = 0;
const TEXT: u8 = 1;
const JSON: u8 = 2;

fn code(f: Option<Format>) -> u8 {
    match f {
        None => OFF,
        Some(Format::Text) => TEXT,
        Some(Format::Json) => JSON,
    }
}

type Sink = Box<dyn Write + Send>;

/// The proxy's access log: its format in force and its writer.
pub struct AccessLog {
    mode: AtomicU8,
    /// The `--access-log` flag: wins over the config.
    forced: AtomicU8,
    /// The config's setting.
    configured: AtomicU8,
    queue: usize,
    tx: OnceLock<SyncSender<String>>,
    /// Where lines go; taken by the writer thread when it starts.
    sink: Mutex<Option<Sink>>,
    dropped: Counter,
}

// === impl AccessLog ===

impl AccessLog {
    /// Writes to stdout; `forced` is the `--access-log` flag.
    pub fn new(forced: Option<Format>, dropped: Counter) -> Self {
        Self::with_sink(forced, dropped, Box::new(std::io::stdout()), QUEUE)
    }

    pub fn with_sink(forced: Option<Format>, dropped: Counter, sink: Sink, queue: usize) -> Self {
        Self {
            mode: AtomicU8::new(code(forced)),
            forced: AtomicU8::new(code(forced)),
            configured: AtomicU8::new(OFF),
            queue,
            tx: OnceLock::new(),
            sink: Mutex::new(Some(sink)),
            dropped,
        }
    }

    /// Applies the config's setting (the flag, when given, wins).
    pub fn configure(&self, from_config: Option<Format>) {
        self.configured.store(code(from_config), Ordering::Relaxed);
        self.apply();
    }

    /// Applies the `--access-log` flag: on in `format` whatever the config says.
    pub fn force(&self, format: Format) {
        self.forced.store(code(Some(format)), Ordering::Relaxed);
        self.apply();
    }

    fn apply(&self) {
        let forced = self.forced.load(Ordering::Relaxed);
        let mode = match forced {
            OFF => self.configured.load(Ordering::Relaxed),
            f => f,
        };
        self.mode.store(mode, Ordering::Relaxed);
    }

    /// The format in force, `None` when off.
    pub fn format(&self) -> Option<Format> {
        match self.mode.load(Ordering::Relaxed) {
            TEXT => Some(Format::Text),
            JSON => Some(Format::Json),
            _ => None,
        }
    }

    /// Formats `entry` in the format in force and queues it; drops (and counts) it when the
    /// writer is behind.
    pub fn log(&self, entry: &Entry<'_>) {
        let line = match self.format() {
            None => return,
            Some(Format::Text) => text(entry),
            Some(Format::Json) => json(entry),
        };
        self.write(line);
    }

    fn write(&self, line: String) {
        let tx = self.tx.get_or_init(|| self.start());
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }

    fn start(&self) -> SyncSender<String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(self.queue);
        let sink = self.sink.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(sink) = sink {
            let spawned = std::thread::Builder::new()
                .name("sinew-access-log".into())
                .spawn(move || writer(rx, sink));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the access-log writer; lines are dropped");
            }
        }
        tx
    }
}

/// Writes lines as they come; flushes when the queue is empty, so a quiet proxy's lines are
/// not held back and a busy one writes in batches.
fn writer(rx: Receiver<String>, mut sink: Sink) {
    while let Ok(line) = rx.recv() {
        let mut res = sink.write_all(line.as_bytes());
        while res.is_ok()
            && let Ok(line) = rx.try_recv()
        {
            res = sink.write_all(line.as_bytes());
        }
        if res.and_then(|()| sink.flush()).is_err() {
            // stdout is gone (closed pipe): nothing to report to.
            return;
        }
    }
}

/// Everything a line says. Header values are the raw bytes from the request.
#[derive(Clone, Debug, Default)]
pub struct Entry<'a> {
    pub start: Option<SystemTime>,
    /// `None` for opaque TCP.
    pub method: Option<&'a str>,
    pub path: Option<&'a [u8]>,
    /// `HTTP/1.1`, `HTTP/2`; `None` for TCP.
    pub protocol: Option<&'static str>,
    /// 0: no response.
    pub response_code: u16,
    pub flags: ResponseFlags,
    pub details: &'static str,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration_ms: u64,
    pub x_forwarded_for: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub request_id: Option<&'a [u8]>,
    pub authority: Option<&'a [u8]>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: Option<&'a str>,
    pub downstream_local: Option<SocketAddr>,
    pub downstream_remote: Option<SocketAddr>,
    pub route_name: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    pub peer_identity: Option<&'a str>,
}

/// Envoy's `%RESPONSE_CODE_DETAILS%` for what the proxy knows of the request's end.
pub fn details(flags: ResponseFlags, upstream_answered: bool) -> &'static str {
    const BY_FLAG: [(ResponseFlags, &str); 11] = [
        (ResponseFlags::DC, "downstream_remote_disconnect"),
        (
            ResponseFlags::UO,
            "upstream_reset_before_response_started{overflow}",
        ),
        (ResponseFlags::UH, "no_healthy_upstream"),
        (
            ResponseFlags::UF,
            "upstream_reset_before_response_started{connection_failure}",
        ),
        (ResponseFlags::UT, "response_timeout"),
        (ResponseFlags::NR, "route_not_found"),
        (ResponseFlags::FI, "fault_filter_abort"),
        (ResponseFlags::DPE, "downstream_protocol_error"),
        (
            ResponseFlags::UR,
            "upstream_reset_after_response_started{remote_reset}",
        ),
        (
            ResponseFlags::UC,
            "upstream_reset_before_response_started{connection_termination}",
        ),
        (ResponseFlags::URX, "via_upstream"),
    ];
    if let Some((_, d)) = BY_FLAG.iter().find(|(f, _)| flags.contains(*f)) {
        return d;
    }
    if upstream_answered {
        "via_upstream"
    } else {
        "-"
    }
}

/// `[2026-12-01T14:00:00.000Z]`'s inside.
fn start_time(t: Option<SystemTime>) -> String {
    let Some(t) = t else { return "-".into() };
    let d = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        d.year(),
        d.month() as u8,
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
        d.millisecond()
    )
}

/// Appends `bytes` escaped for a text line: printable ASCII except `"` and `\` as is, those two
/// backslash-escaped, everything else `\xNN`.
fn escaped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

fn opt_bytes(out: &mut String, v: Option<&[u8]>) {
    match v {
        Some(b) if !b.is_empty() => escaped(out, b),
        _ => out.push('-'),
    }
}

fn opt_display(out: &mut String, v: Option<impl std::fmt::Display>) {
    use std::fmt::Write as _;
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push('-'),
    }
}

/// Envoy's default format (Istio's), one line with its newline.
pub fn text(e: &Entry<'_>) -> String {
    use std::fmt::Write as _;
    let mut o = String::with_capacity(384);
    o.push('[');
    o.push_str(&start_time(e.start));
    o.push_str("] \"");
    opt_bytes(&mut o, e.method.map(str::as_bytes));
    o.push(' ');
    opt_bytes(&mut o, e.path);
    o.push(' ');
    o.push_str(e.protocol.unwrap_or("-"));
    let _ = write!(
        o,
        "\" {} {} {} - \"-\" {} {} {} - \"",
        e.response_code, e.flags, e.details, e.bytes_received, e.bytes_sent, e.duration_ms
    );
    opt_bytes(&mut o, e.x_forwarded_for);
    o.push_str("\" \"");
    opt_bytes(&mut o, e.user_agent);
    o.push_str("\" \"");
    opt_bytes(&mut o, e.request_id);
    o.push_str("\" \"");
    opt_bytes(&mut o, e.authority);
    o.push_str("\" \"");
    opt_display(&mut o, e.upstream_host);
    o.push_str("\" ");
    opt_bytes(&mut o, e.upstream_cluster.map(str::as_bytes));
    o.push_str(" - ");
    opt_display(&mut o, e.downstream_local);
    o.push(' ');
    opt_display(&mut o, e.downstream_remote);
    o.push_str(" - ");
    opt_bytes(&mut o, e.route_name.map(str::as_bytes));
    o.push('\n');
    o
}

fn lossy(v: Option<&[u8]>) -> Option<std::borrow::Cow<'_, str>> {
    v.map(String::from_utf8_lossy)
}

/// The JSON form: the text format's fields under Envoy's names (lower case), plus `trace_id`
/// and `peer_identity`; one object per line.
pub fn json(e: &Entry<'_>) -> String {
    let v = serde_json::json!({
        "start_time": start_time(e.start),
        "method": e.method,
        "path": lossy(e.path),
        "protocol": e.protocol,
        "response_code": e.response_code,
        "response_flags": e.flags.to_string(),
        "response_code_details": e.details,
        "connection_termination_details": null,
        "upstream_transport_failure_reason": null,
        "bytes_received": e.bytes_received,
        "bytes_sent": e.bytes_sent,
        "duration": e.duration_ms,
        "upstream_service_time": null,
        "x_forwarded_for": lossy(e.x_forwarded_for),
        "user_agent": lossy(e.user_agent),
        "request_id": lossy(e.request_id),
        "authority": lossy(e.authority),
        "upstream_host": e.upstream_host.map(|a| a.to_string()),
        "upstream_cluster": e.upstream_cluster,
        "upstream_local_address": null,
        "downstream_local_address": e.downstream_local.map(|a| a.to_string()),
        "downstream_remote_address": e.downstream_remote.map(|a| a.to_string()),
        "requested_server_name": null,
        "route_name": e.route_name,
        "trace_id": e.trace_id,
        "peer_identity": e.peer_identity,
    });
    let mut line = v.to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests;
