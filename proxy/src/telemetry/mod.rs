//! What the mesh reports about the traffic it carries: Istio's standard metrics, traces and
//! access logs. Nothing here may make a request wait: exporters and writers take what the request
//! path hands them without blocking, and drop (and count) what they cannot keep.

pub mod trace;

use std::sync::Arc;

/// A workload as Istio's standard metrics label it (`source_*` / `destination_*`). Resolved once
/// per config version (or per peer), shared by reference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Workload {
    pub name: Arc<str>,
    pub namespace: Arc<str>,
    pub app: Arc<str>,
    pub version: Arc<str>,
    pub canonical_service: Arc<str>,
    pub canonical_revision: Arc<str>,
}

/// The application protocol of a request, as `request_protocol` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestProtocol {
    Http,
    Grpc,
    Tcp,
}
