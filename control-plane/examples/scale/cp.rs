//! The control plane under test: the real `sinew-control-plane serve` binary as a child process
//! (so its memory and CPU are its own), killed when the guard drops — on success, error or panic.

use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the control plane under test reads its registry from.
pub enum CpSource<'a> {
    /// `--registry DIR --assignments FILE --state-dir DIR`.
    Files {
        registry: &'a Path,
        assignments: &'a Path,
    },
    /// `--kubeconfig FILE` (the fake API server).
    Kubernetes { kubeconfig: &'a Path },
}

pub struct ControlPlaneProcess {
    child: Child,
    /// When the process was spawned, and how long until `/ready` first answered.
    pub spawned_at_unix_us: u64,
    pub ready_after: Duration,
    pub pid: u32,
    pub grpc: SocketAddr,
    pub monitoring: SocketAddr,
    pub state_dir: PathBuf,
    pub log: PathBuf,
}

impl Drop for ControlPlaneProcess {
    /// SIGTERM (to the child and, when it is a wrapper such as heaptrack, to the child's own
    /// children, so the profile gets written), then SIGKILL after 5 s.
    fn drop(&mut self) {
        let pid = self.pid.to_string();
        let signal = |sig: &str| {
            let _ = Command::new("pkill")
                .args([sig, "-P", &pid])
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("kill")
                .args([sig, &pid])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free right now on 127.0.0.1 (bound and released; the child binds it moments later).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl ControlPlaneProcess {
    pub async fn start(
        bin: &Path,
        source: CpSource<'_>,
        work: &Path,
        wrapper: &[String],
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let monitoring: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let state_dir = work.join("state");
        let log = work.join("control-plane.log");
        let out = std::fs::File::create(&log)?;
        // An optional wrapper (e.g. `heaptrack -o FILE`) runs the binary; memory and CPU are then
        // the wrapper's process, so use it for profiles, not for the numbers.
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (k, v)));
        cmd.arg("serve");
        match source {
            CpSource::Files {
                registry,
                assignments,
            } => cmd
                .arg("--registry")
                .arg(registry)
                .arg("--assignments")
                .arg(assignments)
                .arg("--state-dir")
                .arg(&state_dir),
            CpSource::Kubernetes { kubeconfig } => cmd.arg("--kubeconfig").arg(kubeconfig),
        };
        let spawned = Instant::now();
        let spawned_at_unix_us = unix_us_now();
        let child = cmd
            .arg("--listen")
            .arg(grpc.to_string())
            .arg("--monitoring")
            .arg(monitoring.to_string())
            .arg("--log-level")
            .arg("info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut cp = Self {
            spawned_at_unix_us,
            ready_after: Duration::ZERO,
            pid: child.id(),
            child,
            grpc,
            monitoring,
            state_dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = cp.child.try_wait()? {
                anyhow::bail!(
                    "the control plane exited ({status}) during start-up:\n{}",
                    std::fs::read_to_string(&cp.log).unwrap_or_default()
                );
            }
            if let Ok(body) = cp.get("/ready").await
                && body.contains("ready")
            {
                cp.ready_after = spawned.elapsed();
                return Ok(cp);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the control plane was not ready within 120 s; log:\n{}",
                std::fs::read_to_string(&cp.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Fails if the child has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "the control plane exited ({status}); log tail:\n{}",
                tail(&self.log, 40)
            );
        }
        Ok(())
    }

    /// GET on the monitoring port (HTTP/1.1, connection close); the body.
    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let fut = async {
            let mut tcp = tokio::net::TcpStream::connect(self.monitoring).await?;
            tcp.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await?;
            let mut out = String::new();
            tcp.read_to_string(&mut out).await?;
            anyhow::Ok(out)
        };
        let out = tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .context("monitoring request timed out")??;
        Ok(out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or(out))
    }

    /// A counter or gauge from /metrics.
    pub async fn metric(&self, name: &str) -> anyhow::Result<u64> {
        let text = self.get("/metrics").await?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .with_context(|| format!("{name} not in /metrics"))
    }

    /// The registry publications in the log so far: (generation, wall time in unix µs).
    pub fn publications(&self) -> Vec<(u64, u64)> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|l| {
                l.contains("registry: published") || l.contains("Kubernetes registry changed")
            })
            .filter_map(|l| {
                let at = unix_us_of_rfc3339(l.split_whitespace().next()?)?;
                let generation = l
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("generation="))?
                    .parse()
                    .ok()?;
                Some((generation, at))
            })
            .collect()
    }

    /// When the log's first line containing `needle` was written (unix µs).
    pub fn logged_at(&self, needle: &str) -> Option<u64> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let line = log.lines().find(|l| l.contains(needle))?;
        unix_us_of_rfc3339(line.split_whitespace().next()?)
    }

    pub fn proc(&self) -> Proc {
        Proc(self.pid)
    }
}

/// Last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// /proc readings for one process.
#[derive(Clone, Copy)]
pub struct Proc(pub u32);

#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub anon_kib: u64,
    pub file_kib: u64,
    pub hwm_kib: u64,
    pub threads: u64,
}

impl Proc {
    pub fn myself() -> Self {
        Proc(std::process::id())
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(Memory {
            rss_kib: field("VmRSS:"),
            anon_kib: field("RssAnon:"),
            file_kib: field("RssFile:"),
            hwm_kib: field("VmHWM:"),
            threads: field("Threads:"),
        })
    }

    /// utime + stime, in seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0))?;
        // Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("malformed /proc/PID/stat")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok((ticks(14) + ticks(15)) / clock_ticks())
    }

    pub fn smaps_rollup(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/smaps_rollup", self.0)).unwrap_or_default()
    }
}

/// USER_HZ: 100 on every Linux this runs on (no libc here to ask sysconf).
fn clock_ticks() -> f64 {
    100.0
}

/// Busy and total CPU seconds of the whole machine (from /proc/stat), to tell whether something
/// besides the simulation and the control plane was using the CPU.
pub fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0.0, 0.0);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    ((total - idle) / clock_ticks(), total / clock_ticks())
}

/// Now, in microseconds since the Unix epoch (the clock of the control plane's log).
pub fn unix_us_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `2026-11-27T11:46:51.229871Z` (tracing's default timestamp) in unix µs.
fn unix_us_of_rfc3339(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    let mut frac = frac.to_string();
    frac.truncate(6);
    while frac.len() < 6 {
        frac.push('0');
    }
    let micros: i64 = frac.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    u64::try_from(secs * 1_000_000 + micros).ok()
}
