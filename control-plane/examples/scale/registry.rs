//! The simulated mesh: one meshed namespace, S Services each selecting two Pods, and the
//! assignments file that gives every pod an IP and every service a VIP (198.18.0.0/15; nothing is
//! ever dialled there).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// How a service's revision shows in the registry (and so in its resource):
/// false: its pods' label `rev: "<n>"` (pods carry two labels, `app` and `rev`);
/// true: its target port `10000 + n` (pods carry only `app`).
static REV_IN_PORT: AtomicBool = AtomicBool::new(false);
const PORT_REV_BASE: u32 = 10_000;

pub fn set_rev_in_port(on: bool) {
    REV_IN_PORT.store(on, Ordering::SeqCst);
}

/// The revision a service resource shows.
pub fn rev_of(svc: &sinew_proto::config::v1::Service) -> Option<u32> {
    let ep = svc.endpoints.first()?;
    if REV_IN_PORT.load(Ordering::Relaxed) {
        let port: u32 = ep.address.rsplit_once(':')?.1.parse().ok()?;
        port.checked_sub(PORT_REV_BASE)
    } else {
        ep.labels.get("rev")?.parse().ok()
    }
}

pub const NAMESPACE: &str = "scale";
pub const PORT: u16 = 8080;
/// Pods: 198.18.0.1 upwards (two per service). VIPs: 198.19.0.1 upwards.
const POD_BASE: u32 = Ipv4Addr::new(198, 18, 0, 1).to_bits();
const VIP_BASE: u32 = Ipv4Addr::new(198, 19, 0, 1).to_bits();
/// Each half of 198.18.0.0/15 holds 65,534 usable addresses; two pods per service.
pub const MAX_SERVICES: usize = 32_000;

pub fn vip(svc: usize) -> Ipv4Addr {
    Ipv4Addr::from_bits(VIP_BASE + svc as u32)
}

pub fn pod_ip(svc: usize, replica: usize) -> Ipv4Addr {
    Ipv4Addr::from_bits(POD_BASE + (2 * svc + replica) as u32)
}

/// The name a proxy subscribes to for service `svc`: what its app would dial.
pub fn name_of(svc: usize) -> String {
    format!("{}:{PORT}", vip(svc))
}

/// The service behind a subscribed name (inverse of [`name_of`]).
pub fn service_of(name: &str) -> Option<usize> {
    let (ip, _) = name.rsplit_once(':')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    ip.to_bits().checked_sub(VIP_BASE).map(|i| i as usize)
}

/// The registry directory, the manifest file in it and the assignments file beside it.
pub struct Registry {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub assignments: PathBuf,
    services: usize,
}

impl Registry {
    /// Writes the registry with every pod at revision 0.
    pub fn create(root: &Path, services: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (1..=MAX_SERVICES).contains(&services),
            "--services must be 1..={MAX_SERVICES}"
        );
        let dir = root.join("registry");
        std::fs::create_dir_all(&dir)?;
        let reg = Self {
            file: dir.join("mesh.yaml"),
            dir,
            assignments: root.join("assignments.yaml"),
            services,
        };
        reg.write(&vec![0; services])?;
        let mut a = String::from("pods:\n");
        for s in 0..services {
            for r in 0..2 {
                let _ = writeln!(
                    a,
                    "  - {{namespace: {NAMESPACE}, name: svc-{s}-{r}, ip: {}}}",
                    pod_ip(s, r)
                );
            }
        }
        a.push_str("services:\n");
        for s in 0..services {
            let _ = writeln!(
                a,
                "  - {{namespace: {NAMESPACE}, name: svc-{s}, vip: {}}}",
                vip(s)
            );
        }
        std::fs::write(&reg.assignments, a)?;
        Ok(reg)
    }

    /// The whole manifest, each service's pods labelled `rev: <revs[svc]>`.
    pub fn render(&self, revs: &[u32]) -> String {
        let mut y = String::with_capacity(self.services * 520 + 256);
        let _ = write!(
            y,
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}, labels: {{sinew-injection: enabled}}}}\n"
        );
        let in_port = REV_IN_PORT.load(Ordering::Relaxed);
        for (s, rev) in revs.iter().enumerate() {
            let target = if in_port { PORT_REV_BASE + rev } else { 8080 };
            let labels = if in_port {
                format!("{{app: svc-{s}}}")
            } else {
                format!("{{app: svc-{s}, rev: \"{rev}\"}}")
            };
            let _ = write!(
                y,
                "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: svc-{s}, namespace: {NAMESPACE}}}\n\
                 ---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: {NAMESPACE}}}\n\
                 spec:\n  selector: {{app: svc-{s}}}\n  ports: [{{name: http, port: {PORT}, targetPort: {target}}}]\n"
            );
            for r in 0..2 {
                let _ = write!(
                    y,
                    "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: svc-{s}-{r}, namespace: {NAMESPACE}, labels: {labels}}}\n\
                     spec:\n  serviceAccountName: svc-{s}\n  containers: [{{name: app, image: ignored}}]\n"
                );
            }
        }
        y
    }

    /// Replaces the manifest in one step (write a dot-file the registry ignores, then rename), so
    /// the control plane never reads half a file.
    pub fn write(&self, revs: &[u32]) -> anyhow::Result<()> {
        let tmp = self.dir.join(".mesh.yaml.tmp");
        std::fs::write(&tmp, self.render(revs))?;
        std::fs::rename(&tmp, &self.file)?;
        Ok(())
    }
}
