//! sinew-proxy: Sinew's sidecar.
//!
//! Module map (see docs/architecture.md):
//! - [`outbound`] / [`inbound`]: the two directions of the data path;
//! - [`authz`]: inbound authorization (Istio's AuthorizationPolicy) and path normalisation;
//! - [`traffic`]: traffic policy as tower layers (dispatch, balancer, endpoint, breaker, outlier
//!   detection) and the per-service cache that holds their state across config pushes;
//! - [`detect`], [`tls`], [`http`], [`io`], [`idle`], [`transport`]: the pieces they are built from;
//! - [`config`]: the validated config model; [`ctx`]: what handlers share;
//! - [`admin`], [`metrics`], [`drain`], [`conn_limit`], [`app`]: running the process;
//! - [`app_health`]: the app's own probes, run for the kubelet (`/app-health/…` on 15020);
//! - [`init`]: the iptables rules of `sinew-proxy init`;
//! - [`wait`]: `sinew-proxy wait`, the hold until the proxy is ready (the injector's fallback).

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod app_health;
pub mod authz;
pub mod config;
pub mod conn_limit;
pub mod control;
pub mod ctx;
pub mod detect;
pub mod drain;
pub mod first_speaker;
pub mod http;
pub mod idle;
pub mod inbound;
pub mod init;
pub mod io;
pub mod metrics;
pub mod outbound;
pub mod telemetry;
pub mod tls;
pub mod traffic;
pub mod transport;
pub mod wait;

#[cfg(feature = "test-util")]
pub mod testing;
