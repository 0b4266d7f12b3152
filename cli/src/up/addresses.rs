//! Address assignment: the pod IPs and service VIPs local mode gives objects whose YAML names
//! none, as a cluster's IPAM and service allocator would.
//!
//! Promises: an object keeps its address for as long as it exists, unless the YAML later claims
//! that address for another object (then it gets a new one, and a pod is restarted with it);
//! new objects get the lowest free address of their range; declared addresses (`status.podIP`,
//! `spec.clusterIP`) and the control plane's are never handed out; headless Services get no
//! VIP; a pod that finds its range full is named in an error and gets no address.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use sinew_control_plane::registry::{Assignments, Snapshot};

use crate::state::{CONTROL_PLANE_IP, POD_RANGE, VIP_RANGE};

/// An inclusive range of IPv4 addresses.
pub type Range = (Ipv4Addr, Ipv4Addr);

/// The addresses assigned so far, and where new ones come from.
#[derive(Debug)]
pub struct Addresses {
    assigned: Assignments,
    pods: Range,
    vips: Range,
}

impl Default for Addresses {
    fn default() -> Self {
        Self::with_ranges(POD_RANGE, VIP_RANGE)
    }
}

// === impl Addresses ===

impl Addresses {
    pub fn with_ranges(pods: Range, vips: Range) -> Self {
        Self {
            assigned: Assignments::default(),
            pods,
            vips,
        }
    }

    /// Every address assigned (declared ones are not listed: the snapshot has them).
    pub fn current(&self) -> &Assignments {
        &self.assigned
    }

    /// Brings the assignments in line with `snapshot`: keeps what is assigned, frees the
    /// addresses of objects gone, gives new objects the next free ones. Returns the problems.
    pub fn assign(&mut self, snapshot: &Snapshot) -> Vec<String> {
        let mut errors = Vec::new();
        let mut used: BTreeSet<Ipv4Addr> = BTreeSet::new();
        used.insert(CONTROL_PLANE_IP);
        for pod in snapshot.pods().values() {
            if let Some(IpAddr::V4(ip)) = pod.declared_ip {
                used.insert(ip);
            }
        }
        for svc in snapshot.services().values() {
            if let Some(IpAddr::V4(ip)) = svc.declared_cluster_ip {
                used.insert(ip);
            }
        }
        // An address assigned earlier stays with its object, unless the YAML now claims it for
        // another one: then the object gets a new address.
        let claimed = used.clone();
        let keep = |ip: &IpAddr| matches!(ip, IpAddr::V4(v4) if !claimed.contains(v4));
        self.assigned
            .pod_ips
            .retain(|key, ip| snapshot.pods().contains_key(key) && keep(ip));
        self.assigned
            .service_vips
            .retain(|key, ip| snapshot.services().contains_key(key) && keep(ip));
        for ip in self
            .assigned
            .pod_ips
            .values()
            .chain(self.assigned.service_vips.values())
        {
            if let IpAddr::V4(v4) = ip {
                used.insert(*v4);
            }
        }
        let mut next = Assignments::default();
        for (key, pod) in snapshot.pods() {
            if pod.declared_ip.is_some() {
                continue;
            }
            let ip = self
                .assigned
                .pod_ips
                .get(key)
                .copied()
                .or_else(|| next_free(&mut used, self.pods).map(IpAddr::V4));
            match ip {
                Some(ip) => {
                    next.pod_ips.insert(key.clone(), ip);
                }
                None => errors.push(format!("pod {}/{}: no free address left", key.0, key.1)),
            }
        }
        for (key, svc) in snapshot.services() {
            if svc.headless || svc.declared_cluster_ip.is_some() {
                continue;
            }
            let vip = self
                .assigned
                .service_vips
                .get(key)
                .copied()
                .or_else(|| next_free(&mut used, self.vips).map(IpAddr::V4));
            if let Some(vip) = vip {
                next.service_vips.insert(key.clone(), vip);
            }
        }
        self.assigned = next;
        errors
    }
}

/// The lowest address of `range` not in `used` (now marked used).
fn next_free(used: &mut BTreeSet<Ipv4Addr>, (lo, hi): Range) -> Option<Ipv4Addr> {
    let ip = (u32::from(lo)..=u32::from(hi))
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))?;
    used.insert(ip);
    Some(ip)
}

#[cfg(test)]
mod tests;
