//! Sinew's schema: the protobuf messages shared by the proxy and the control plane.
//!
//! Every message also has proto3-JSON serde impls (via pbjson), so a static config file is the
//! same message written as YAML or JSON.

#![forbid(unsafe_code)]

pub mod config {
    pub mod v1 {
        #![allow(clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/sinew.config.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/sinew.config.v1.serde.rs"));
    }
}

/// A gRPC echo service for tests (feature `testing`).
#[cfg(feature = "testing")]
pub mod testing {
    pub mod v1 {
        #![allow(clippy::all)]
        tonic::include_proto!("sinew.testing.v1");
    }
}
