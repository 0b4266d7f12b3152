//! A test host: pods as network namespaces on a private bridge, and the processes run inside them.
//!
//! Layout of one [`Testbed`] (`<run>` is `sinew-e2e-<pid>-<n>`):
//!
//! ```text
//!   netns <run>-net:   sinew-br (bridge, no address) ── sinew-v<pod> ...
//!                                                        │ veth
//!   netns <run>-<pod>: lo, sinew-eth0 198.x.y.<host>/24 ─┘   (no default route)
//! ```
//!
//! The bridge has a namespace of its own rather than living on the host, so no host firewall
//! (Docker's FORWARD DROP with br_netfilter, say) sees the pods' frames, and the pods' only link
//! leads to a bridge whose namespace has no other interface: nothing can be forwarded anywhere.
//!
//! Promises, following the rules for test hosts in DESIGN.md:
//! - addresses come from 198.18.0.0/15, one /24 per testbed derived from the pid; no default route
//!   is ever added and IPv4 forwarding is switched off in every namespace;
//! - every name starts with `sinew-e2e-<pid>-`, so leftovers of a killed run are recognisable, and
//!   [`Testbed::new`] removes those whose process is gone;
//! - [`Drop`] kills every process it started (by pid), runs the registered teardown commands
//!   (e.g. `sinew-proxy init --cleanup`), deletes the namespaces (which takes the veths and the
//!   bridge with them) and the work directory — on success and on panic alike. On panic (or with
//!   `SINEW_E2E_LOGS=1`) it first prints the tail of every process's log.

use crate::host::Tools;
use crate::process::{run_bounded, signal, wait_exit};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Every namespace a testbed makes starts with this, then `<pid>-<n>-`.
pub const NAME_PREFIX: &str = "sinew-e2e-";
const BRIDGE: &str = "sinew-br";
/// The pod side of each veth.
pub const POD_IF: &str = "sinew-eth0";
/// Linux interface names hold at most 15 bytes.
const IFNAMSIZ: usize = 15;
/// `ip` and `iptables` calls finish in milliseconds; a hang is a bug worth failing on.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Set to `1` to print the processes' logs also when the test passes.
pub const SHOW_LOGS_ENV: &str = "SINEW_E2E_LOGS";
/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// Pods on one bridge, and what runs in them. See the module docs.
pub struct Testbed {
    ip: PathBuf,
    setpriv: PathBuf,
    run: String,
    subnet: [u8; 3],
    dir: PathBuf,
    bridge_ns: String,
    /// Created namespaces, deleted in reverse order.
    namespaces: Vec<String>,
    procs: Vec<Proc>,
    teardown: Vec<Teardown>,
}

/// One pod: a network namespace with an address on the bridge.
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
}

struct Proc {
    label: String,
    child: Child,
    log: PathBuf,
}

/// A command run in a namespace before it is deleted.
struct Teardown {
    what: String,
    netns: String,
    program: OsString,
    args: Vec<OsString>,
}

// === impl Testbed ===

impl Testbed {
    /// Creates the bridge namespace and the work directory. `tools` must hold `ip` and `setpriv`.
    pub fn new(tools: &Tools) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let run = format!("{NAME_PREFIX}{pid}-{n}");
        // 512 /24s in 198.18.0.0/15; neighbouring pids and testbeds get different ones.
        let idx = (pid.wrapping_mul(4).wrapping_add(n)) % 512;
        let subnet = [198, 18 + (idx / 256) as u8, (idx % 256) as u8];
        let dir = std::env::temp_dir().join(&run);
        let mut bed = Self {
            ip: tools.path("ip").to_path_buf(),
            setpriv: tools.path("setpriv").to_path_buf(),
            bridge_ns: format!("{run}-net"),
            run,
            subnet,
            dir,
            namespaces: Vec::new(),
            procs: Vec::new(),
            teardown: Vec::new(),
        };
        bed.remove_stale();
        let _ = std::fs::remove_dir_all(&bed.dir);
        std::fs::create_dir_all(&bed.dir).expect("create the testbed directory");
        // Readable by the unprivileged users the pods' processes run as, whatever the umask.
        std::fs::set_permissions(&bed.dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the testbed directory");

        let ns = bed.bridge_ns.clone();
        bed.add_netns(&ns);
        bed.ip_ok(&["-n", &ns, "link", "add", BRIDGE, "type", "bridge"]);
        bed.ip_ok(&["-n", &ns, "link", "set", BRIDGE, "up"]);
        bed
    }

    /// Adds a pod with address `<subnet>.<host>` on the bridge.
    pub fn add_pod(&mut self, name: &str, host: u8) -> Pod {
        let veth = format!("sinew-v{name}");
        assert!(
            veth.len() <= IFNAMSIZ && !name.is_empty(),
            "pod name {name:?} must be 1 to 8 characters"
        );
        let netns = format!("{}-{name}", self.run);
        let ip = self.addr(host);
        self.add_netns(&netns);
        let br = self.bridge_ns.clone();
        self.ip_ok(&[
            "-n", &br, "link", "add", &veth, "type", "veth", "peer", "name", POD_IF, "netns",
            &netns,
        ]);
        self.ip_ok(&["-n", &br, "link", "set", &veth, "master", BRIDGE, "up"]);
        self.ip_ok(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            POD_IF,
        ]);
        self.ip_ok(&["-n", &netns, "link", "set", POD_IF, "up"]);
        self.ip_ok(&["-n", &netns, "link", "set", "lo", "up"]);
        Pod {
            name: name.to_owned(),
            netns,
            ip,
        }
    }

    /// The address `<subnet>.<host>`: pods, and service VIPs on the same /24 (so the pods have an
    /// on-link route to dial them, and no default route is needed).
    pub fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, host)
    }

    /// The work directory (configs, certificates, logs), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The namespace holding the bridge, and the bridge's name, e.g. for a capture.
    pub fn bridge(&self) -> (&str, &str) {
        (&self.bridge_ns, BRIDGE)
    }

    /// Every namespace created so far.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces.clone()
    }

    /// A command that runs `program` in `netns`, as `uid` (with the same gid and no supplementary
    /// groups) or as root.
    pub fn command(
        &self,
        netns: &str,
        uid: Option<u32>,
        program: impl AsRef<OsStr>,
        args: &[&dyn AsRef<OsStr>],
    ) -> Command {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "exec", netns]);
        if let Some(uid) = uid {
            let id = uid.to_string();
            cmd.arg(&self.setpriv);
            cmd.args(["--reuid", &id, "--regid", &id, "--clear-groups"]);
        }
        cmd.arg(program);
        cmd.args(args.iter().map(|a| a.as_ref()));
        // A cwd the unprivileged users can enter, and no proxy settings of the caller's shell
        // (curl would send our requests to an HTTP proxy that does not exist in the pod).
        cmd.current_dir(&self.dir);
        // Logs go to files that people read: no colour escapes.
        cmd.env("NO_COLOR", "1");
        for var in [
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs a command in `netns` to completion, bounded in time.
    pub fn exec(
        &self,
        netns: &str,
        uid: Option<u32>,
        program: impl AsRef<OsStr>,
        args: &[&dyn AsRef<OsStr>],
        timeout: Duration,
    ) -> Output {
        let cmd = self.command(netns, uid, program, args);
        let desc = format!("{cmd:?}");
        run_bounded(cmd, timeout).unwrap_or_else(|e| panic!("{desc}: {e}"))
    }

    /// Starts a long-running process in `netns`; its stdout and stderr go to `<dir>/<label>.log`.
    /// Returns its pid (the program's own: `ip netns exec` and `setpriv` exec, they don't fork).
    pub fn spawn(
        &mut self,
        label: &str,
        netns: &str,
        uid: Option<u32>,
        program: impl AsRef<OsStr>,
        args: &[&dyn AsRef<OsStr>],
    ) -> u32 {
        assert!(
            self.procs.iter().all(|p| p.label != label),
            "two processes labelled {label}"
        );
        let log = self.dir.join(format!("{label}.log"));
        let out = File::create(&log).expect("create process log");
        let err = out.try_clone().expect("clone log handle");
        let mut cmd = self.command(netns, uid, program, args);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({cmd:?}): {e}"));
        let pid = child.id();
        self.procs.push(Proc {
            label: label.to_owned(),
            child,
            log,
        });
        pid
    }

    /// `Err` with the exit status and the log's tail if `label` is no longer running.
    pub fn ensure_running(&mut self, label: &str) -> Result<(), String> {
        let p = self.proc_mut(label);
        match p.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{label} exited ({status}); its log ends with:\n{}",
                tail(&p.log, LOG_TAIL_LINES)
            )),
            Err(e) => Err(format!("cannot check on {label}: {e}")),
        }
    }

    /// Sends `sig` to `label` and waits up to `timeout` for it to exit; kills it after that.
    pub fn stop(&mut self, label: &str, sig: &str, timeout: Duration) -> Option<ExitStatus> {
        let p = self.proc_mut(label);
        if let Ok(Some(status)) = p.child.try_wait() {
            return Some(status);
        }
        signal(p.child.id(), sig);
        let status = wait_exit(&mut p.child, timeout);
        if status.is_none() {
            let _ = p.child.kill();
            let _ = wait_exit(&mut p.child, Duration::from_secs(5));
        }
        status
    }

    /// Everything `label` has written so far.
    pub fn log(&self, label: &str) -> String {
        let p = self
            .procs
            .iter()
            .find(|p| p.label == label)
            .unwrap_or_else(|| panic!("no process labelled {label}"));
        std::fs::read_to_string(&p.log).unwrap_or_default()
    }

    /// Registers `program args` to run in `netns` at teardown, after the processes are stopped and
    /// before the namespace is deleted. Teardown commands run in reverse order of registration.
    pub fn on_teardown(
        &mut self,
        what: &str,
        netns: &str,
        program: impl AsRef<OsStr>,
        args: &[&dyn AsRef<OsStr>],
    ) {
        self.teardown.push(Teardown {
            what: what.to_owned(),
            netns: netns.to_owned(),
            program: program.as_ref().to_owned(),
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
        });
    }

    fn proc_mut(&mut self, label: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .find(|p| p.label == label)
            .unwrap_or_else(|| panic!("no process labelled {label}"))
    }

    fn add_netns(&mut self, name: &str) {
        self.ip_ok(&["netns", "add", name]);
        self.namespaces.push(name.to_owned());
        // A new namespace inherits IPv4 settings from the host's, possibly forwarding=1. Ours
        // must never route between interfaces. /proc/sys/net shows the opener's namespace.
        let out = self.exec(
            name,
            None,
            "sh",
            &[&"-c", &"echo 0 > /proc/sys/net/ipv4/ip_forward"],
            COMMAND_TIMEOUT,
        );
        assert!(
            out.status.success(),
            "cannot turn off forwarding in {name}: {}",
            stderr(&out)
        );
    }

    fn ip_ok(&self, args: &[&str]) {
        let mut cmd = Command::new(&self.ip);
        cmd.args(args);
        let out = run_bounded(cmd, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
        assert!(
            out.status.success(),
            "ip {} failed ({}): {}",
            args.join(" "),
            out.status,
            stderr(&out)
        );
    }

    /// Kills, by pid, whatever still runs in `netns` (children of our children, or a killed run's
    /// proxies): a namespace with live processes survives `ip netns del`.
    fn kill_remaining(&self, netns: &str) {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "pids", netns]);
        let Ok(out) = run_bounded(cmd, COMMAND_TIMEOUT) else {
            return;
        };
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<u32>() {
                eprintln!("killing pid {pid}, still running in {netns}");
                signal(pid, "KILL");
            }
        }
    }

    /// Deletes namespaces left by earlier runs of ours whose process is gone (a test killed before
    /// its Drop ran). Live runs, ours or concurrent ones, are never touched.
    fn remove_stale(&self) {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "list"]);
        let Ok(out) = run_bounded(cmd, COMMAND_TIMEOUT) else {
            return;
        };
        let listing = String::from_utf8_lossy(&out.stdout);
        let own_pid = std::process::id().to_string();
        for name in listing.lines().filter_map(|l| l.split_whitespace().next()) {
            let Some(pid) = name
                .strip_prefix(NAME_PREFIX)
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            // Our own pid: only names this testbed is about to create (a recycled pid's leftovers);
            // other testbeds of this process may be running. Another pid: only if it has exited.
            let stale = if pid == own_pid {
                name.starts_with(&format!("{}-", self.run))
            } else {
                !Path::new("/proc").join(pid).exists()
            };
            if !stale {
                continue;
            }
            eprintln!("removing leftover network namespace {name} of an earlier run");
            self.kill_remaining(name);
            let mut cmd = Command::new(&self.ip);
            cmd.args(["netns", "del", name]);
            let _ = run_bounded(cmd, COMMAND_TIMEOUT);
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let show_logs =
            std::thread::panicking() || std::env::var(SHOW_LOGS_ENV).is_ok_and(|v| v == "1");
        // Processes first: a namespace with live processes outlives `ip netns del`.
        for p in &mut self.procs {
            if let Ok(None) = p.child.try_wait() {
                let _ = p.child.kill();
            }
            if wait_exit(&mut p.child, Duration::from_secs(10)).is_none() {
                eprintln!(
                    "warning: {} (pid {}) did not exit after SIGKILL",
                    p.label,
                    p.child.id()
                );
            }
        }
        if show_logs {
            for p in &self.procs {
                eprintln!(
                    "----- {} log ({}), last {LOG_TAIL_LINES} lines -----\n{}",
                    p.label,
                    p.log.display(),
                    tail(&p.log, LOG_TAIL_LINES)
                );
            }
        }
        for t in self.teardown.iter().rev() {
            let args: Vec<&dyn AsRef<OsStr>> =
                t.args.iter().map(|a| a as &dyn AsRef<OsStr>).collect();
            let cmd = self.command(&t.netns, None, &t.program, &args);
            match run_bounded(cmd, COMMAND_TIMEOUT) {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "warning: teardown {} failed ({}): {}",
                    t.what,
                    out.status,
                    stderr(&out)
                ),
                Err(e) => eprintln!("warning: teardown {}: {e}", t.what),
            }
        }
        // Deleting a namespace destroys its interfaces: the veth pairs and the bridge go too.
        for ns in self.namespaces.iter().rev() {
            self.kill_remaining(ns);
            let mut cmd = Command::new(&self.ip);
            cmd.args(["netns", "del", ns]);
            match run_bounded(cmd, COMMAND_TIMEOUT) {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!("warning: ip netns del {ns} failed: {}", stderr(&out)),
                Err(e) => eprintln!("warning: ip netns del {ns}: {e}"),
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("warning: cannot remove {}: {e}", self.dir.display());
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// The last `n` lines of a file (logs are small; reading it whole is fine).
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
