//! The `sinew-proxy` binary as a child process, and the loopback ports it is given.

use std::process::Child;

/// A child process, killed and reaped when the test ends, however it ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on (bound, then released), for a child process to bind: a
/// child's port-0 listener could not be found from outside.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a loopback port")
        .local_addr()
        .expect("its address")
        .port()
}
