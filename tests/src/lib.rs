//! End-to-end test support: test hosts made of network namespaces, and reading what crossed them.
//!
//! - [`host`]: prerequisites (root, tools); a test that cannot run fails unless skipping is allowed;
//! - [`testbed`]: pods as network namespaces on a private bridge, processes run in them, and
//!   teardown that also runs when a test fails;
//! - [`process`]: bounded waits and runs of child processes;
//! - [`bins`]: finding (or building) our binaries;
//! - [`local`]: a local mesh (`sinewctl up`) driven from a test;
//! - [`pcap`]: TCP streams and TLS records out of a tcpdump capture.
//!
//! Std only, on purpose: this crate drives binaries, it does not link the proxy.

pub mod bins;
pub mod host;
pub mod local;
pub mod pcap;
pub mod process;
pub mod testbed;
