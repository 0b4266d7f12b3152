//! The Kubernetes source's counters: watch errors and re-lists per kind, for `/metrics` and
//! `/debug/registryz`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use serde::Serialize;

use super::kinds::KindId;

#[derive(Debug, Default)]
pub struct SourceMetrics {
    kinds: Mutex<BTreeMap<KindId, KindCounters>>,
}

/// One kind's watch health.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindCounters {
    /// Failed lists and watches (each retried with backoff).
    pub watch_errors: u64,
    /// Completed lists after the first: re-lists after `410 Gone`, a dropped watch or an outage.
    pub relists: u64,
    /// Completed lists, the first included.
    pub lists: u64,
    /// The last error, until the next completed list.
    pub last_error: Option<String>,
}

// === impl SourceMetrics ===

impl SourceMetrics {
    pub(super) fn watch_error(&self, kind: KindId, error: &dyn std::fmt::Display) {
        let mut kinds = self.lock();
        let counters = kinds.entry(kind).or_default();
        counters.watch_errors += 1;
        counters.last_error = Some(error.to_string());
    }

    pub(super) fn listed(&self, kind: KindId) {
        let mut kinds = self.lock();
        let counters = kinds.entry(kind).or_default();
        counters.lists += 1;
        if counters.lists > 1 {
            counters.relists += 1;
        }
        counters.last_error = None;
    }

    /// Per kind, by name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, KindCounters> {
        self.lock()
            .iter()
            .map(|(kind, c)| (kind.name(), c.clone()))
            .collect()
    }

    /// The most recent error of any kind not listed since.
    pub fn last_error(&self) -> Option<String> {
        self.lock().iter().find_map(|(kind, c)| {
            c.last_error
                .as_ref()
                .map(|e| format!("watching {kind}: {e}"))
        })
    }

    /// Prometheus text.
    pub fn render(&self, out: &mut String) {
        let kinds = self.lock();
        let series = [
            (
                "sinew_cp_kube_watch_errors_total",
                "Failed lists and watches of the Kubernetes API, by kind (retried with backoff).",
                (|c: &KindCounters| c.watch_errors) as fn(&KindCounters) -> u64,
            ),
            (
                "sinew_cp_kube_relists_total",
                "Re-lists after the first (410 Gone, a dropped watch, an API server outage), by kind.",
                |c: &KindCounters| c.relists,
            ),
        ];
        for (name, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (kind, c) in kinds.iter() {
                let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {}", value(c));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<KindId, KindCounters>> {
        self.kinds.lock().unwrap_or_else(|p| p.into_inner())
    }
}
