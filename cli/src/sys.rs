//! The operating system underneath: entering a network namespace to reach a pod's localhost
//! ports, signals, and finding programs. All through safe APIs (rustix, std).

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use rustix::thread::LinkNameSpaceType;

/// Where `ip netns add` keeps its namespaces.
pub const NETNS_DIR: &str = "/run/netns";
/// Where `ip netns exec` looks for a namespace's own `/etc` files (hosts, resolv.conf).
pub const NETNS_ETC_DIR: &str = "/etc/netns";

/// Runs `make` on a short-lived thread moved into network namespace `netns` and returns what it
/// made: a socket belongs to the namespace it was created in, wherever it is used from, and the
/// caller's threads never change namespace.
fn in_netns<T: Send>(netns: &str, make: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let path = Path::new(NETNS_DIR).join(netns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(&path)?;
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(LinkNameSpaceType::Network),
            )?;
            make()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

/// Connects to `addr` from inside network namespace `netns`.
pub fn connect_in(netns: &str, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    in_netns(netns, || TcpStream::connect_timeout(&addr, timeout))
}

/// A listening socket on `addr` inside network namespace `netns`; non-blocking, ready for tokio.
pub fn listen_in(netns: &str, addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    in_netns(netns, || {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    })
}

/// `GET path` over HTTP/1.0 to `addr` inside `netns`: the status and the body.
pub fn http_get(
    netns: &str,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let mut tcp = connect_in(netns, addr, timeout)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    tcp.take(16 << 20).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))?;
    Ok((status, body.to_string()))
}

/// Tries to lock `file` (exclusive or shared) without waiting: `Ok(false)` if another holds
/// a conflicting lock. The lock lasts until the file is closed.
pub fn try_lock(file: &std::fs::File, exclusive: bool) -> io::Result<bool> {
    use rustix::fs::FlockOperation;
    let op = if exclusive {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    match rustix::fs::flock(file, op) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether a process with this pid exists and has not exited (a zombie, which only waits for
/// its parent to collect it, counts as gone).
pub fn alive(pid: u32) -> bool {
    let exists = pid_of(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
    exists && !zombie(pid)
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `pid (comm) S ...`: comm may hold spaces and parentheses, the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            == Some('Z')
    })
}

/// Sends `SIGTERM` (or `SIGKILL` when `hard`); false if there is no such process.
pub fn signal(pid: u32, hard: bool) -> bool {
    let sig = if hard { Signal::KILL } else { Signal::TERM };
    pid_of(pid).is_some_and(|p| rustix::process::kill_process(p, sig).is_ok())
}

/// Like [`signal`], to the whole process group `pid` leads (a container started with its own
/// group): a shell-wrapped app's children go too.
pub fn signal_group(pid: u32, hard: bool) -> bool {
    let sig = if hard { Signal::KILL } else { Signal::TERM };
    pid_of(pid).is_some_and(|p| rustix::process::kill_process_group(p, sig).is_ok())
}

fn pid_of(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The first executable called `name` on `PATH` (or `name` itself if it has a slash).
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// Processes whose network namespace is `netns` (what `ip netns pids` lists), by comparing
/// `/proc/<pid>/ns/net` with the namespace file.
pub fn pids_in_netns(netns: &str) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(target) = std::fs::metadata(Path::new(NETNS_DIR).join(netns)) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.ino() == target.ino() && m.dev() == target.dev())
        })
        .collect()
}

/// Network namespaces whose names start with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_and_processes() {
        assert!(which("sh").is_some());
        assert!(which("sinew-no-such-program").is_none());
        assert!(alive(std::process::id()));
        assert!(!signal(u32::MAX, false));
    }
}
