//! The root rotation in Prometheus' text format: what `/debug/rotation` says, for alerts.

use std::fmt::Write as _;

use super::{Phase, RotationStatus};

const PHASES: [(Phase, &str); 4] = [
    (Phase::Idle, "idle"),
    (Phase::Trust, "trust"),
    (Phase::Issue, "issue"),
    (Phase::Done, "done"),
];

impl RotationStatus {
    /// Appends the rotation's gauges and counter to `out`: the phase (1 on the current one), the
    /// proxies it waits for, whether it stopped with an error, and how many rotations finished
    /// since the process started.
    pub fn render_metrics(&self, out: &mut String) {
        out.push_str(
            "# HELP sinew_cp_root_rotation_phase The root rotation's phase: 1 on the current one.\n\
             # TYPE sinew_cp_root_rotation_phase gauge\n",
        );
        for (phase, name) in PHASES {
            let current = u8::from(self.phase == phase);
            let _ = writeln!(
                out,
                "sinew_cp_root_rotation_phase{{phase=\"{name}\"}} {current}"
            );
        }
        let _ = write!(
            out,
            "# HELP sinew_cp_root_rotation_pending_proxies Connected proxies the rotation's phase waits for.\n\
             # TYPE sinew_cp_root_rotation_pending_proxies gauge\n\
             sinew_cp_root_rotation_pending_proxies {}\n\
             # HELP sinew_cp_root_rotation_stopped 1 when the last rotation attempt stopped with an error (`error` in /debug/rotation) until `rotate-root --resume`.\n\
             # TYPE sinew_cp_root_rotation_stopped gauge\n\
             sinew_cp_root_rotation_stopped {}\n\
             # HELP sinew_cp_root_rotations_completed_total Root rotations finished since this control plane process started.\n\
             # TYPE sinew_cp_root_rotations_completed_total counter\n\
             sinew_cp_root_rotations_completed_total {}\n",
            self.pending.len(),
            u8::from(self.error.is_some()),
            self.rotations_completed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(status: &RotationStatus) -> String {
        let mut out = String::new();
        status.render_metrics(&mut out);
        out
    }

    #[test]
    fn an_idle_control_plane_shows_phase_idle_and_nothing_pending() {
        let text = rendered(&RotationStatus::default());
        for line in [
            "sinew_cp_root_rotation_phase{phase=\"idle\"} 1",
            "sinew_cp_root_rotation_phase{phase=\"trust\"} 0",
            "sinew_cp_root_rotation_phase{phase=\"issue\"} 0",
            "sinew_cp_root_rotation_phase{phase=\"done\"} 0",
            "sinew_cp_root_rotation_pending_proxies 0",
            "sinew_cp_root_rotation_stopped 0",
            "sinew_cp_root_rotations_completed_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
        }
    }

    #[test]
    fn a_stopped_rotation_shows_its_phase_its_waits_and_that_it_stopped() {
        let status = RotationStatus {
            phase: Phase::Issue,
            pending: vec!["shop/web-0".into(), "shop/web-1".into()],
            error: Some("stopped in phase Issue".into()),
            rotations_completed: 3,
            ..RotationStatus::default()
        };
        let text = rendered(&status);
        for line in [
            "sinew_cp_root_rotation_phase{phase=\"idle\"} 0",
            "sinew_cp_root_rotation_phase{phase=\"issue\"} 1",
            "sinew_cp_root_rotation_pending_proxies 2",
            "sinew_cp_root_rotation_stopped 1",
            "sinew_cp_root_rotations_completed_total 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
        }
        // Every sample has its HELP and TYPE (Prometheus refuses a family without TYPE lines
        // in strict parsers, and promtool warns).
        for family in [
            "sinew_cp_root_rotation_phase",
            "sinew_cp_root_rotation_pending_proxies",
            "sinew_cp_root_rotation_stopped",
            "sinew_cp_root_rotations_completed_total",
        ] {
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
    }
}
