//! Child processes with bounds: every wait has a deadline, every kill names one pid.
//!
//! These tests drive real binaries (ip, iptables, curl, the proxy), so waiting means polling the
//! outside world; each poll loop here is bounded in time and in count, and stops by itself.

use std::io;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often [`wait_until`] polls. Short enough not to slow the tests, long enough not to spin.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Runs `cmd` to completion with its output captured, killing it if it outlives `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> io::Result<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    // A thread owns the child and drains both pipes, so a chatty command cannot block on a full
    // pipe while we wait on the clock.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out,
        Err(_) => {
            signal(pid, "KILL");
            // The kill makes the waiting thread return promptly; bound that too.
            let _ = rx.recv_timeout(Duration::from_secs(5));
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{cmd:?} did not finish within {timeout:?} and was killed (pid {pid})"),
            ))
        }
    }
}

/// Sends `sig` (a name such as `INT`, `TERM`, `KILL`) to one process, by its pid.
///
/// `kill(1)` rather than libc keeps this crate dependency-free; errors (the process is already
/// gone) are not interesting to a caller that only wants it stopped.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits up to `timeout` for `child` to exit on its own; `None` if it is still running.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL.min(timeout)),
            _ => return None,
        }
    }
}

/// Polls `check` until it returns `Ok`, for at most `timeout`. The error names `what` and the last
/// reason `check` gave, which is usually the useful one (connection refused, 503, ...).
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let start = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match check() {
            Ok(v) => return Ok(v),
            Err(last) if start.elapsed() >= timeout => {
                return Err(format!(
                    "{what}: not done after {:?} ({attempts} attempts); last: {last}",
                    start.elapsed()
                ));
            }
            Err(_) => std::thread::sleep(POLL_INTERVAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_bounded_returns_output_of_a_quick_command() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2"]);
        let out = run_bounded(cmd, Duration::from_secs(10)).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn run_bounded_kills_a_command_past_its_deadline() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let start = Instant::now();
        let err = run_bounded(cmd, Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn wait_until_reports_the_last_reason_after_the_deadline() {
        let mut n = 0;
        let err = wait_until("counting", Duration::from_millis(250), || {
            n += 1;
            Err::<(), _>(format!("attempt {n}"))
        })
        .unwrap_err();
        assert!(err.starts_with("counting: not done after"), "{err}");
        assert!(err.ends_with(&format!("last: attempt {n}")), "{err}");
        assert_eq!(
            wait_until("at once", Duration::ZERO, || Ok::<_, String>(7)),
            Ok(7)
        );
    }
}
