//! sinew-control-plane: turns "what runs where" into certificates and config for every proxy.
//!
//! Module map:
//! - [`ca`]: the mesh CA (root or plug-in intermediate, workload leaves from CSRs);
//! - [`auth`]: who is asking (verified credentials → namespace and service account);
//! - [`cluster`] (feature `kubernetes`): the Kubernetes client, API failure classes, leader election;
//! - [`registry`]: the source of truth (a directory of Kubernetes-shaped YAML in local mode);
//! - [`compile`]: registry snapshots → versioned resources per subscribable name;
//! - [`server`]: the gRPC services (CA, discovery) on 15012 and monitoring on 15014.

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod ca;
#[cfg(feature = "kubernetes")]
pub mod cluster;
pub mod compile;
pub mod registry;
pub mod server;
