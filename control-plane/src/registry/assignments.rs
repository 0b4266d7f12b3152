//! Addresses assigned by local mode's runner (pod IPs, service VIPs), and the file that carries
//! them between processes. The format is in the [registry docs](super).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::RegistryError;

/// Addresses keyed by `(namespace, name)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignments {
    pub pod_ips: BTreeMap<(String, String), IpAddr>,
    pub service_vips: BTreeMap<(String, String), IpAddr>,
}

/// The file as written; kept apart from [`Assignments`] so the in-memory shape can change
/// without changing the format.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignmentsFile {
    #[serde(default)]
    pods: Vec<PodIp>,
    #[serde(default)]
    services: Vec<ServiceVip>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PodIp {
    namespace: String,
    name: String,
    ip: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceVip {
    namespace: String,
    name: String,
    vip: String,
}

// === impl Assignments ===

impl Assignments {
    /// Parses the file format. The error is a one-line reason naming the offending entry.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let options = serde_saphyr::options! { with_snippet: false };
        // An empty file is a valid "nothing assigned yet".
        let file: Option<AssignmentsFile> = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| {
                let line = e.location().map(|l| l.line()).unwrap_or_default();
                let message = e.without_snippet().to_string().replace(['\n', '\r'], " ");
                if line > 0 && !message.contains("line") {
                    format!("{message} (line {line})")
                } else {
                    message
                }
            })?;
        let file = file.unwrap_or_default();
        let mut out = Assignments::default();
        for (i, p) in file.pods.into_iter().enumerate() {
            let key = entry_key(&p.namespace, &p.name, "pods", i)?;
            let ip = parse_ip(&p.ip, "pods", i, "ip")?;
            if out.pod_ips.insert(key, ip).is_some() {
                return Err(format!(
                    "pods[{i}]: pod {}/{} is assigned twice",
                    p.namespace, p.name
                ));
            }
        }
        for (i, s) in file.services.into_iter().enumerate() {
            let key = entry_key(&s.namespace, &s.name, "services", i)?;
            let vip = parse_ip(&s.vip, "services", i, "vip")?;
            if out.service_vips.insert(key, vip).is_some() {
                return Err(format!(
                    "services[{i}]: service {}/{} is assigned twice",
                    s.namespace, s.name
                ));
            }
        }
        Ok(out)
    }

    /// The file format, entries sorted by namespace and name.
    pub fn to_yaml(&self) -> String {
        let file = AssignmentsFile {
            pods: self
                .pod_ips
                .iter()
                .map(|((namespace, name), ip)| PodIp {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    ip: ip.to_string(),
                })
                .collect(),
            services: self
                .service_vips
                .iter()
                .map(|((namespace, name), vip)| ServiceVip {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    vip: vip.to_string(),
                })
                .collect(),
        };
        // Plain strings and lists of small structs: serialisation has nothing that can fail,
        // but fall back to an equivalent hand-written document rather than panic.
        serde_saphyr::to_string(&file).unwrap_or_else(|_| self.to_yaml_by_hand())
    }

    fn to_yaml_by_hand(&self) -> String {
        let mut out = String::from("pods:\n");
        for ((ns, name), ip) in &self.pod_ips {
            out.push_str(&format!(
                "- namespace: {ns:?}\n  name: {name:?}\n  ip: {ip}\n"
            ));
        }
        out.push_str("services:\n");
        for ((ns, name), vip) in &self.service_vips {
            out.push_str(&format!(
                "- namespace: {ns:?}\n  name: {name:?}\n  vip: {vip}\n"
            ));
        }
        out
    }

    /// Reads an assignments file. A missing file is an empty set (the runner has not written it
    /// yet); anything unreadable or malformed is an error naming the file.
    pub fn read_file(path: &Path) -> Result<Self, RegistryError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_yaml(&text).map_err(|reason| RegistryError::Assignments {
                path: path.to_path_buf(),
                reason,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(RegistryError::ReadFile {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the file atomically (a temporary file in the same directory, then a rename), so a
    /// registry polling it never reads half of it.
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let name = path.file_name().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path")
        })?;
        // A hidden name, so a registry whose manifest directory holds the file never reads it.
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.to_yaml().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// `self` with every entry of `over` added or replacing.
    pub fn overlaid_with(&self, over: &Assignments) -> Assignments {
        let mut out = self.clone();
        out.pod_ips
            .extend(over.pod_ips.iter().map(|(k, v)| (k.clone(), *v)));
        out.service_vips
            .extend(over.service_vips.iter().map(|(k, v)| (k.clone(), *v)));
        out
    }
}

fn entry_key(
    namespace: &str,
    name: &str,
    list: &str,
    i: usize,
) -> Result<(String, String), String> {
    if namespace.is_empty() {
        return Err(format!("{list}[{i}].namespace is required"));
    }
    if name.is_empty() {
        return Err(format!("{list}[{i}].name is required"));
    }
    Ok((namespace.to_string(), name.to_string()))
}

fn parse_ip(s: &str, list: &str, i: usize, field: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("{list}[{i}].{field} {s:?} is not an IP address"))
}

#[cfg(test)]
mod tests;
