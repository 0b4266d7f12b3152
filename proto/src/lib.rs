//! Sinew's schema: the protobuf messages and gRPC services shared by the proxy and the control
//! plane.
//!
//! Every message also has proto3-JSON serde impls (via pbjson), so a static config file is the
//! same message written as YAML or JSON.

#![forbid(unsafe_code)]

pub mod codec;
pub mod cookie;
pub mod grpc;
pub mod names;
pub mod net;

/// The proxy's config model (static bootstrap file, and the resources the control plane streams).
pub mod config {
    pub mod v1 {
        #![allow(clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/sinew.config.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/sinew.config.v1.serde.rs"));
    }
}

/// The mesh CA's certificate API.
pub mod ca {
    pub mod v1 {
        #![allow(clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/sinew.ca.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/sinew.ca.v1.serde.rs"));
    }
}

/// Per-proxy config streaming.
pub mod discovery {
    pub mod v1 {
        #![allow(clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/sinew.discovery.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/sinew.discovery.v1.serde.rs"));
    }
}

/// A gRPC echo service for tests (feature `testing`).
#[cfg(feature = "testing")]
pub mod testing {
    pub mod v1 {
        #![allow(clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/sinew.testing.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/sinew.testing.v1.serde.rs"));
    }
}
