//! End-to-end test support: test hosts made of network namespaces, and reading what crossed them.
//!
//! - [`host`]: prerequisites (root, tools) and the visible `SKIPPED` line;
//! - [`testbed`]: pods as network namespaces on a private bridge, processes run in them, and
//!   teardown that also runs when a test fails;
//! - [`process`]: bounded waits and runs of child processes;
//! - [`proxy_bin`]: finding (or building) the `sinew-proxy` binary;
//! - [`pcap`]: TCP streams and TLS records out of a tcpdump capture.
//!
//! Std only, on purpose: this crate drives binaries, it does not link the proxy.

pub mod host;
pub mod pcap;
pub mod process;
pub mod proxy_bin;
pub mod testbed;
