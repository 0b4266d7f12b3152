//! The test host's network: a bridge in a namespace of its own, one namespace per pod wired to it
//! with a veth pair, per-pod `/etc/hosts`, and the pod's share of "kube-proxy" (service VIPs
//! DNATed to endpoints) as iptables rules inside the pod.
//!
//! ```text
//!   netns sinew-<run>.net:    br0 (bridge, no address) ── v<n> ...
//!                                                          │ veth
//!   netns sinew-<run>.<ns>.<pod>:  lo, eth0 198.18.x.y/15 ─┘   (no default route)
//! ```
//!
//! The bridge lives in its own namespace, not on the host, so no host firewall sees the pods'
//! frames and nothing can be forwarded anywhere else; the host's own network is never touched.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::AsyncWriteExt as _;

use crate::state::POD_PREFIX_LEN;
use crate::sys;

/// `ip` and `iptables` answer in milliseconds; a hang is a bug worth an error.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
const BRIDGE: &str = "br0";
const POD_IF: &str = "eth0";
/// The nat chain holding a pod's service rules (the part of kube-proxy a pod needs).
pub const SERVICES_CHAIN: &str = "SINEW_LOCAL_SERVICES";
/// The filter chain refusing VIP ports that have no endpoints.
pub const REJECT_CHAIN: &str = "SINEW_LOCAL_REJECT";

/// Runs a command to completion; the error names the command and carries its stderr.
pub async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let shown = || format!("`{program} {}`", args.join(" "));
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Not in the terminal's process group: a Ctrl-C must not kill `ip netns del` halfway
        // through the clean-up it started.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", shown()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await?;
    }
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("{} did not finish in {COMMAND_TIMEOUT:?}", shown()))??;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{} failed ({}): {}", shown(), out.status, err.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip -batch -` inside `netns` (or on the host for `None`).
async fn ip_batch(netns: Option<&str>, lines: &[String]) -> anyhow::Result<()> {
    let script = lines.join("\n") + "\n";
    match netns {
        Some(ns) => run("ip", &["-n", ns, "-batch", "-"], Some(&script)).await,
        None => run("ip", &["-batch", "-"], Some(&script)).await,
    }
    .map(drop)
}

/// Creates the run's bridge namespace.
pub async fn create_bridge(bridge_netns: &str) -> anyhow::Result<()> {
    run("ip", &["netns", "add", bridge_netns], None).await?;
    ip_batch(
        Some(bridge_netns),
        &[
            "link set lo up".into(),
            format!("link add {BRIDGE} type bridge"),
            format!("link set {BRIDGE} up"),
        ],
    )
    .await
}

/// Creates `netns`, wires it to the bridge as veth `v<index>` and gives it `ip`. Loopback is up,
/// forwarding stays off and there is no default route.
pub async fn create_pod_netns(
    bridge_netns: &str,
    netns: &str,
    index: u32,
    ip: Ipv4Addr,
) -> anyhow::Result<()> {
    run("ip", &["netns", "add", netns], None).await?;
    let veth = format!("v{index}");
    ip_batch(
        Some(bridge_netns),
        &[
            format!("link add {veth} type veth peer name {POD_IF} netns {netns}"),
            format!("link set {veth} master {BRIDGE} up"),
        ],
    )
    .await?;
    // The MAC follows from the address, so a pod replaced under the same address is reached at
    // once, not after its peers' ARP entries for the old one expire.
    let [a, b, c, d] = ip.octets();
    ip_batch(
        Some(netns),
        &[
            "link set lo up".into(),
            format!("link set {POD_IF} address 02:53:{a:02x}:{b:02x}:{c:02x}:{d:02x}"),
            format!("addr add {ip}/{POD_PREFIX_LEN} dev {POD_IF}"),
            format!("link set {POD_IF} up"),
        ],
    )
    .await?;
    // A new namespace starts with forwarding off; say so rather than rely on it.
    run(
        "ip",
        &[
            "netns",
            "exec",
            netns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=0",
        ],
        None,
    )
    .await
    .map(drop)
}

/// Deletes a namespace after killing what still runs in it (TERM, then KILL after `grace`),
/// and its `/etc/netns` files. Missing pieces are fine: this is also the crash clean-up.
pub async fn delete_netns(netns: &str, grace: Duration) {
    kill_all_in(netns, grace).await;
    let _ = run("ip", &["netns", "del", netns], None).await;
    let _ = std::fs::remove_dir_all(etc_dir(netns));
}

/// Kills every process in `netns`: TERM, up to `grace` for them to leave, then KILL.
pub async fn kill_all_in(netns: &str, grace: Duration) {
    let pids = sys::pids_in_netns(netns);
    if pids.is_empty() {
        return;
    }
    for pid in &pids {
        sys::signal(*pid, false);
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline && pids.iter().any(|p| sys::alive(*p)) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for pid in sys::pids_in_netns(netns) {
        sys::signal(pid, true);
    }
}

/// `/etc/netns/<netns>/`: files here replace `/etc/<file>` for commands run with
/// `ip netns exec`.
pub fn etc_dir(netns: &str) -> PathBuf {
    PathBuf::from(sys::NETNS_ETC_DIR).join(netns)
}

/// Writes the pod's `/etc/hosts` and `/etc/resolv.conf` (no DNS server: names are in hosts).
///
/// `ip netns exec` bind-mounts these files over `/etc/…` for each process it starts, and a bind
/// mount stays with the file (inode) it found. So the hosts file is rewritten in place, in one
/// write, never replaced: processes already running see new services too.
pub fn write_etc(netns: &str, hosts: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = etc_dir(netns);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("hosts");
    if std::fs::read_to_string(&path).is_ok_and(|old| old == hosts) {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(hosts.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    let resolv = dir.join("resolv.conf");
    if !resolv.exists() {
        crate::state::write_atomic(
            &resolv,
            b"# sinew local mode: service names resolve through /etc/hosts; there is no DNS server.\noptions timeout:1 attempts:1\n",
        )?;
    }
    Ok(())
}

/// One Service port's VIP and where its traffic goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceRoute {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

/// The pod's service chains as an `iptables-restore --noflush` script: declaring a chain
/// empties it, so the whole set is replaced atomically. With several endpoints, rule `i` of
/// `n` takes `1/(n-i)` of what reaches it: an even random split, as kube-proxy does. A VIP
/// port without endpoints is refused at once (filter table: REJECT is not allowed in nat).
pub fn services_script(routes: &[ServiceRoute]) -> String {
    let mut nat = format!("*nat\n:{SERVICES_CHAIN} - [0:0]\n");
    let mut filter = format!("*filter\n:{REJECT_CHAIN} - [0:0]\n");
    for r in routes {
        let n = r.endpoints.len();
        if n == 0 {
            filter.push_str(&format!(
                "-A {REJECT_CHAIN} -d {}/32 -p tcp --dport {} -j REJECT --reject-with tcp-reset\n",
                r.vip, r.port
            ));
            continue;
        }
        for (i, (ip, port)) in r.endpoints.iter().enumerate() {
            let share = if i + 1 < n {
                format!(
                    " -m statistic --mode random --probability {:.6}",
                    1.0 / (n - i) as f64
                )
            } else {
                String::new()
            };
            nat.push_str(&format!(
                "-A {SERVICES_CHAIN} -d {}/32 -p tcp --dport {}{share} -j DNAT --to-destination {ip}:{port}\n",
                r.vip, r.port
            ));
        }
    }
    nat + "COMMIT\n" + &filter + "COMMIT\n"
}

/// Creates the empty service chain and the jump to it from `nat OUTPUT`. Call after
/// `sinew-proxy init`, so the sidecar's redirect comes first: the app's traffic goes to the
/// proxy, and only what the proxy itself sends (and unmeshed pods' traffic) meets these rules.
pub async fn install_services_chain(netns: &str) -> anyhow::Result<()> {
    let script = format!(
        "*nat\n:{SERVICES_CHAIN} - [0:0]\n-A OUTPUT -p tcp -j {SERVICES_CHAIN}\nCOMMIT\n\
         *filter\n:{REJECT_CHAIN} - [0:0]\n-A OUTPUT -p tcp -j {REJECT_CHAIN}\nCOMMIT\n"
    );
    iptables_restore(netns, &script).await
}

pub async fn iptables_restore(netns: &str, script: &str) -> anyhow::Result<()> {
    run(
        "ip",
        // -w: wait for the xtables lock (iptables-legacy) rather than fail when pods update
        // their rules at the same moment.
        &[
            "netns",
            "exec",
            netns,
            "iptables-restore",
            "-w",
            "10",
            "--noflush",
        ],
        Some(script),
    )
    .await
    .map(drop)
}

/// `/etc/hosts` for a pod in `namespace`: itself, then every service by its full name,
/// `<svc>.<ns>`, and (in its own namespace) `<svc>`. Headless services list their pods.
pub fn hosts_file(
    pod: &str,
    pod_ip: Ipv4Addr,
    namespace: &str,
    services: &BTreeMap<(String, String), Vec<Ipv4Addr>>,
) -> String {
    let mut out = String::from(
        "# Written by sinewctl (local mode).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    out.push_str(&format!("{pod_ip}\t{pod}\n"));
    for ((ns, name), addrs) in services {
        let mut names = format!("{name}.{ns}.svc.cluster.local {name}.{ns}.svc {name}.{ns}");
        if ns == namespace {
            names.push_str(&format!(" {name}"));
        }
        for addr in addrs {
            out.push_str(&format!("{addr}\t{names}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_rules_split_evenly_and_reject_without_endpoints() {
        let ip = |d| Ipv4Addr::new(198, 18, 0, d);
        let script = services_script(&[
            ServiceRoute {
                vip: Ipv4Addr::new(198, 19, 0, 1),
                port: 80,
                endpoints: vec![(ip(2), 8080), (ip(3), 8080), (ip(4), 8080)],
            },
            ServiceRoute {
                vip: Ipv4Addr::new(198, 19, 0, 2),
                port: 80,
                endpoints: vec![],
            },
        ]);
        let rules: Vec<&str> = script.lines().filter(|l| l.starts_with("-A")).collect();
        assert_eq!(rules.len(), 4);
        assert!(
            rules[0].contains("--probability 0.333333") && rules[0].ends_with("198.18.0.2:8080")
        );
        assert!(
            rules[1].contains("--probability 0.500000") && rules[1].ends_with("198.18.0.3:8080")
        );
        assert!(!rules[2].contains("statistic") && rules[2].ends_with("198.18.0.4:8080"));
        assert!(
            rules[3].contains("-A SINEW_LOCAL_REJECT -d 198.19.0.2/32")
                && rules[3].contains("REJECT")
        );
        assert!(script.starts_with("*nat\n:SINEW_LOCAL_SERVICES - [0:0]\n"));
        assert!(script.contains("COMMIT\n*filter\n:SINEW_LOCAL_REJECT - [0:0]\n"));
        assert!(script.ends_with("COMMIT\n"));
    }

    #[test]
    fn hosts_resolve_short_names_only_in_the_own_namespace() {
        let mut services = BTreeMap::new();
        services.insert(
            ("shop".to_string(), "web".to_string()),
            vec![Ipv4Addr::new(198, 19, 0, 1)],
        );
        services.insert(
            ("other".to_string(), "db".to_string()),
            vec![Ipv4Addr::new(198, 19, 0, 2)],
        );
        let hosts = hosts_file("client-0", Ipv4Addr::new(198, 18, 0, 5), "shop", &services);
        assert!(
            hosts.contains("198.19.0.1\tweb.shop.svc.cluster.local web.shop.svc web.shop web\n")
        );
        assert!(hosts.contains("198.19.0.2\tdb.other.svc.cluster.local db.other.svc db.other\n"));
        assert!(hosts.contains("198.18.0.5\tclient-0\n"));
    }
}
