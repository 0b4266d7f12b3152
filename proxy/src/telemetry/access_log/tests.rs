use super::*;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

fn entry() -> Entry<'static> {
    Entry {
        start: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_597_600_123)),
        method: Some("GET"),
        path: Some(b"/status/418"),
        protocol: Some("HTTP/1.1"),
        response_code: 418,
        flags: ResponseFlags::default(),
        details: "via_upstream",
        bytes_received: 0,
        bytes_sent: 135,
        duration_ms: 4,
        x_forwarded_for: None,
        user_agent: Some(b"curl/8.5.0"),
        request_id: Some(b"84961386-6d84-929d-98bd-c5aee93b5c88"),
        authority: Some(b"httpbin:8000"),
        upstream_host: Some("10.44.1.27:80".parse().expect("addr")),
        upstream_cluster: Some("outbound|8000||httpbin.foo.svc.cluster.local"),
        downstream_local: Some("10.0.45.184:8000".parse().expect("addr")),
        downstream_remote: Some("10.44.1.23:46520".parse().expect("addr")),
        route_name: Some("default"),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        peer_identity: Some("spiffe://cluster.local/ns/foo/sa/httpbin"),
    }
}

#[test]
fn the_text_line_is_envoys_default_format() {
    assert_eq!(
        text(&entry()),
        "[2025-12-01T14:00:00.123Z] \"GET /status/418 HTTP/1.1\" 418 - via_upstream - \"-\" 0 135 4 - \
         \"-\" \"curl/8.5.0\" \"84961386-6d84-929d-98bd-c5aee93b5c88\" \"httpbin:8000\" \
         \"10.44.1.27:80\" outbound|8000||httpbin.foo.svc.cluster.local - 10.0.45.184:8000 \
         10.44.1.23:46520 - default\n"
    );
}

#[test]
fn a_tcp_line_has_dashes_for_the_http_fields() {
    let e = Entry {
        start: None,
        bytes_received: 10,
        bytes_sent: 20,
        flags: ResponseFlags::UF,
        details: details(ResponseFlags::UF, false),
        ..Entry::default()
    };
    assert_eq!(
        text(&e),
        "[-] \"- - -\" 0 UF upstream_reset_before_response_started{connection_failure} - \"-\" \
         10 20 0 - \"-\" \"-\" \"-\" \"-\" \"-\" - - - - - -\n"
    );
}

/// Regression bytes: a User-Agent carrying a quote, a newline and a forged second line.
const HOSTILE_UA: &[u8] =
    b"evil\" 200 \n[2025-12-01T00:00:00.000Z] \"GET /admin HTTP/1.1\\\x7f\xff";

#[test]
fn a_hostile_header_cannot_forge_a_text_line() {
    let e = Entry {
        user_agent: Some(HOSTILE_UA),
        ..entry()
    };
    let line = text(&e);
    assert_eq!(line.matches('\n').count(), 1, "{line}");
    assert!(line.ends_with('\n'));
    assert!(
        line.contains(
            "\"evil\\\" 200 \\x0a[2025-12-01T00:00:00.000Z] \\\"GET /admin HTTP/1.1\\\\\\x7f\\xff\""
        ),
        "{line}"
    );
}

#[test]
fn a_hostile_header_cannot_break_the_json() {
    let e = Entry {
        user_agent: Some(HOSTILE_UA),
        ..entry()
    };
    let line = json(&e);
    assert_eq!(line.matches('\n').count(), 1, "{line}");
    let v: serde_json::Value = serde_json::from_str(line.trim_end()).expect("one JSON object");
    assert_eq!(
        v["user_agent"],
        "evil\" 200 \n[2025-12-01T00:00:00.000Z] \"GET /admin HTTP/1.1\\\u{7f}\u{fffd}"
    );
    assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        v["peer_identity"],
        "spiffe://cluster.local/ns/foo/sa/httpbin"
    );
    assert_eq!(v["response_code"], 418);
    assert_eq!(
        v["upstream_cluster"],
        "outbound|8000||httpbin.foo.svc.cluster.local"
    );
    assert_eq!(v["response_flags"], "-");
    assert_eq!(v["x_forwarded_for"], serde_json::Value::Null);
}

#[test]
fn the_flag_wins_over_the_config_and_off_is_the_default() {
    let log = AccessLog::with_sink(None, Counter::default(), Box::new(std::io::sink()), 4);
    assert_eq!(log.format(), None);
    log.configure(Some(Format::Json));
    assert_eq!(log.format(), Some(Format::Json));
    log.configure(None);
    assert_eq!(log.format(), None);
    let forced = AccessLog::with_sink(
        Some(Format::Text),
        Counter::default(),
        Box::new(std::io::sink()),
        4,
    );
    forced.configure(None);
    assert_eq!(forced.format(), Some(Format::Text));
    assert!("yaml".parse::<Format>().is_err());
}

/// A sink that says when a write started and finishes it only when told.
struct Gate {
    entered: mpsc::Sender<Vec<u8>>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.entered.send(buf.to_vec());
        let _ = self.release.lock().expect("gate").recv();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_queue_drops_and_counts_lines_and_never_blocks() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let gate = Gate {
        entered: entered_tx,
        release: Arc::new(Mutex::new(release_rx)),
    };
    let dropped = Counter::default();
    let log = AccessLog::with_sink(Some(Format::Text), dropped.clone(), Box::new(gate), 1);
    let line = |code| Entry {
        response_code: code,
        ..entry()
    };
    log.log(&line(201));
    // The writer holds the first line in the sink (stuck): the queue has room for one more.
    let first = entered.recv().expect("writer started");
    assert!(String::from_utf8_lossy(&first).contains("\" 201 "));
    log.log(&line(202));
    log.log(&line(203));
    log.log(&line(204));
    assert_eq!(dropped.get(), 2);
    release.send(()).expect("writer alive");
    let second = entered.recv().expect("second line written");
    assert!(String::from_utf8_lossy(&second).contains("\" 202 "));
    release.send(()).expect("writer alive");
}
