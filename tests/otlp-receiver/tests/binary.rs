//! The `sinew-otlp-receiver` binary, run as a user (or helper script) would: it reports the
//! address it bound and prints each span it receives as one JSON line.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sinew-otlp-receiver");

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

#[tokio::test]
async fn each_received_span_is_printed_as_one_json_line() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the receiver");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first stderr line: {line:?}"))
        .to_string();

    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let span = Span {
        trace_id: vec![0x4b; 16],
        span_id: vec![0x11; 8],
        parent_span_id: vec![0x22; 8],
        name: "GET".into(),
        kind: 3,
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes: vec![
            kv("http.response.status_code", any_value::Value::IntValue(503)),
            kv("response_flags", any_value::Value::StringValue("UF".into())),
        ],
        status: Some(Status {
            message: "UF".into(),
            code: 2,
        }),
        ..Default::default()
    };
    client
        .export(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv(
                        "service.name",
                        any_value::Value::StringValue("reviews.shop".into()),
                    )],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
        .await
        .expect("export accepted");

    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut json = String::new();
    stdout.read_line(&mut json).unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&json).expect("one JSON line");
    assert_eq!(v["traceId"], "4b".repeat(16));
    assert_eq!(v["spanId"], "11".repeat(8));
    assert_eq!(v["parentSpanId"], "22".repeat(8));
    assert_eq!(v["kind"], "CLIENT");
    assert_eq!(v["status"], "ERROR");
    assert_eq!(v["statusMessage"], "UF");
    assert_eq!(v["attributes"]["http.response.status_code"], 503);
    assert_eq!(v["attributes"]["response_flags"], "UF");
    assert_eq!(v["resource"]["service.name"], "reviews.shop");
}

#[test]
fn a_bad_listen_address_is_an_error_saying_what_is_wanted() {
    let out = Command::new(BIN)
        .args(["--listen", "localhost:http"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--listen \"localhost:http\"") && err.contains("IP:PORT"),
        "{err}"
    );
    let out = Command::new(BIN).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
