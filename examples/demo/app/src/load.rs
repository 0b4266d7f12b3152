//! `load`: a fixed-rate load generator, to watch the mesh react while it is being changed.
//!
//! Requests start on a fixed schedule (open loop), so a slow target shows up as latency and failures
//! rather than as a quietly lower rate. At most `--concurrency` requests are in flight: a tick that
//! finds them all busy is counted as skipped instead of queueing without bound. Output on stdout,
//! one line per report interval and one total at exit:
//!
//! ```text
//! load: first success after 412.3 ms
//! load: 200 sent, 187 ok (93.5%), 13 failed, p50 4.1 ms, p99 310.2 ms, 0 skipped
//! load: total 1200 sent, 1187 ok (98.9%), 13 failed, p50 4.0 ms, p99 305.7 ms, 0 skipped in 60.0 s
//! ```
//!
//! The percentage is of the requests that completed in the interval; latencies are of every
//! completed request, failed or not; with none completed the three read `-`. The last failure of an
//! interval goes to stderr, so the reason is at hand.

use crate::client::{self, parse_millis, parse_secs};
use http::{StatusCode, Uri};
use std::{io::Write, sync::Arc, time::Duration};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{self, Instant};

/// What to load and how hard.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadOpts {
    /// URL to GET, e.g. http://frontend.demo.svc.cluster.local:8080/
    #[arg(long, value_name = "URL", value_parser = client::parse_url)]
    pub target: Uri,
    /// Requests started per second.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
    )]
    pub rps: u32,
    /// Most requests in flight at once.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 32,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub concurrency: u32,
    /// Stop after this many seconds (default: run until SIGTERM or SIGINT).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Seconds between report lines.
    #[arg(
        long = "report-secs",
        value_name = "SECS",
        default_value = "10",
        value_parser = parse_secs,
    )]
    pub report_every: Duration,
    /// Deadline for each request (connect, response and body), in milliseconds.
    #[arg(
        long = "timeout-ms",
        value_name = "MS",
        default_value = "2000",
        value_parser = parse_millis,
    )]
    pub timeout: Duration,
}

/// Runs until `shutdown` resolves or `--duration` passes, then waits for the requests in flight
/// (each bounded by `--timeout-ms`) and prints the total. Report lines go to `out`.
pub async fn run_load(
    opts: LoadOpts,
    shutdown: impl Future<Output = ()>,
    out: &mut impl Write,
) -> Stats {
    let client = client::new();
    let timeout = opts.timeout;
    let start = Instant::now();
    let permits = Arc::new(Semaphore::new(opts.concurrency as usize));
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let mut tick = time::interval(Duration::from_secs_f64(1.0 / f64::from(opts.rps)));
    let mut report = time::interval_at(start + opts.report_every, opts.report_every);
    let stop = async {
        match opts.duration {
            Some(d) => time::sleep_until(start + d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(shutdown, stop);
    let mut tally = Tally::new(start);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = &mut stop => break,
            _ = tick.tick() => {
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    tally.window.skipped += 1;
                    continue;
                };
                tally.window.sent += 1;
                let (client, uri, tx) = (client.clone(), opts.target.clone(), tx.clone());
                tokio::spawn(async move {
                    let began = Instant::now();
                    let result = client::get(&client, &uri, http::HeaderMap::new(), timeout).await;
                    let latency = began.elapsed();
                    let _ = tx.send(Outcome { latency, result: result.map(|(status, _)| status) });
                    drop(permit);
                });
            }
            Some(outcome) = rx.recv() => tally.record(outcome, out),
            _ = report.tick() => tally.report(out),
        }
    }

    // Every request task holds a sender, so the channel closes when the last one finishes.
    drop(tx);
    while let Some(outcome) = rx.recv().await {
        tally.record(outcome, out);
    }
    tally.finish(out)
}

/// How one request went: its status (2xx counts as ok) or why there was none.
struct Outcome {
    latency: Duration,
    result: Result<StatusCode, String>,
}

/// The counts of one report interval, or of the whole run.
#[derive(Debug, Default)]
pub struct Stats {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub skipped: u64,
    latencies: Vec<Duration>,
}

// === impl Stats ===

impl Stats {
    /// `N sent, N ok (P%), N failed, p50 X ms, p99 X ms, N skipped`.
    fn summary(&mut self) -> String {
        self.latencies.sort_unstable();
        let completed = self.ok + self.failed;
        let percent = match completed {
            0 => "-".to_string(),
            n => format!("{:.1}%", self.ok as f64 * 100.0 / n as f64),
        };
        format!(
            "{} sent, {} ok ({percent}), {} failed, p50 {}, p99 {}, {} skipped",
            self.sent,
            self.ok,
            self.failed,
            self.percentile(0.50),
            self.percentile(0.99),
            self.skipped,
        )
    }

    /// Nearest-rank percentile of the (sorted) latencies.
    fn percentile(&self, q: f64) -> String {
        let rank = (self.latencies.len() as f64 * q).ceil() as usize;
        match self.latencies.get(rank.saturating_sub(1)) {
            Some(d) => format!("{:.1} ms", client::millis(*d)),
            None => "-".to_string(),
        }
    }

    fn absorb(&mut self, other: Stats) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.latencies.extend(other.latencies);
    }
}

/// The running counts and what has been said about them.
struct Tally {
    start: Instant,
    window: Stats,
    total: Stats,
    first_success: bool,
    last_failure: Option<String>,
}

// === impl Tally ===

impl Tally {
    fn new(start: Instant) -> Self {
        Self {
            start,
            window: Stats::default(),
            total: Stats::default(),
            first_success: false,
            last_failure: None,
        }
    }

    fn record(&mut self, outcome: Outcome, out: &mut impl Write) {
        self.window.latencies.push(outcome.latency);
        match outcome.result {
            Ok(status) if status.is_success() => {
                self.window.ok += 1;
                if !self.first_success {
                    self.first_success = true;
                    let after = client::millis(self.start.elapsed());
                    let _ = writeln!(out, "load: first success after {after:.1} ms");
                }
            }
            Ok(status) => {
                self.window.failed += 1;
                self.last_failure = Some(format!("HTTP {status}"));
            }
            Err(e) => {
                self.window.failed += 1;
                self.last_failure = Some(e);
            }
        }
    }

    fn report(&mut self, out: &mut impl Write) {
        let _ = writeln!(out, "load: {}", self.window.summary());
        if let Some(e) = self.last_failure.take() {
            eprintln!("load: last failure: {e}");
        }
        self.total.absorb(std::mem::take(&mut self.window));
    }

    fn finish(mut self, out: &mut impl Write) -> Stats {
        self.total.absorb(self.window);
        let secs = self.start.elapsed().as_secs_f64();
        let _ = writeln!(out, "load: total {} in {secs:.1} s", self.total.summary());
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::Stats;
    use std::time::Duration;

    #[test]
    fn summary_has_the_documented_format() {
        let mut stats = Stats {
            sent: 200,
            ok: 187,
            failed: 13,
            skipped: 2,
            latencies: (1..=100)
                .rev()
                .map(|ms| Duration::from_micros(ms * 1_100))
                .collect(),
        };
        assert_eq!(
            stats.summary(),
            "200 sent, 187 ok (93.5%), 13 failed, p50 55.0 ms, p99 108.9 ms, 2 skipped"
        );
    }

    #[test]
    fn summary_shows_dashes_when_nothing_completed() {
        let mut stats = Stats {
            sent: 3,
            ..Stats::default()
        };
        assert_eq!(
            stats.summary(),
            "3 sent, 0 ok (-), 0 failed, p50 -, p99 -, 0 skipped"
        );
    }
}
