//! Test support: a `kube::Client` whose API server is the test itself (tower-test), so contract
//! tests see each request exactly as it would go on the wire and script each answer.

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::Value;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Responder = tower_test::mock::SendResponse<Response<Body>>;

/// The scripted API server's end of the mock client.
pub struct ApiServer {
    handle: Handle,
}

/// One request the client sent, decoded, and the way to answer it.
pub struct Exchange {
    pub method: http::Method,
    pub path: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
    /// The `Accept` header (metadata-only requests ask for `as=PartialObjectMetadata…`).
    pub accept: Option<String>,
    /// The JSON body (`Value::Null` when there is none).
    pub body: Value,
    respond: Responder,
}

/// A client talking to the returned [`ApiServer`]. Call inside a tokio runtime (kube buffers the
/// service on a task).
pub fn client() -> (kube::Client, ApiServer) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), ApiServer { handle })
}

// === impl ApiServer ===

impl ApiServer {
    /// The next request; panics if the client is gone.
    pub async fn next(&mut self) -> Exchange {
        let (req, respond) = self
            .handle
            .next_request()
            .await
            .expect("the client under test was dropped before sending the expected request");
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .expect("request body readable")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        Exchange {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            accept: parts
                .headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body,
            respond,
        }
    }

    /// Whether a request is already waiting (without waiting for one).
    pub fn has_pending(&mut self) -> bool {
        use futures_util::FutureExt;
        matches!(self.handle.next_request().now_or_never(), Some(Some(_)))
    }
}

// === impl Exchange ===

impl Exchange {
    /// Answers with `status` and `body` as JSON.
    pub fn respond(self, status: u16, body: Value) {
        let bytes = serde_json::to_vec(&body).expect("serializable");
        let rsp = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes))
            .expect("valid response");
        self.respond.send_response(rsp);
    }

    /// Answers a watch with these events, one JSON per line, and ends the stream (the watcher
    /// then watches again from the last resourceVersion it saw).
    pub fn respond_events(self, events: &[Value]) {
        let mut bytes = Vec::new();
        for event in events {
            serde_json::to_writer(&mut bytes, event).expect("serializable");
            bytes.push(b'\n');
        }
        let rsp = Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes))
            .expect("valid response");
        self.respond.send_response(rsp);
    }

    /// Answers with a Kubernetes `Status` failure.
    pub fn fail(self, code: u16, reason: &str) {
        self.respond(
            code,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "code": code, "reason": reason, "message": format!("scripted {code} {reason}"),
            }),
        );
    }

    /// `METHOD path?query`, for assertions that read like the request line.
    pub fn line(&self) -> String {
        match &self.query {
            Some(q) => format!("{} {}?{}", self.method, self.path, q),
            None => format!("{} {}", self.method, self.path),
        }
    }
}
