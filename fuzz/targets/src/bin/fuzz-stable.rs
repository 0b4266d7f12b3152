//! Longer local fuzz runs on stable Rust: the mutation runner of the CI test, bounded by
//! iterations or seconds, keeping every input that reaches a new outcome in
//! `fuzz/corpus/<target>/` (commit the ones worth keeping).
//!
//! ```text
//! cargo run --release -p sinew-fuzz-targets --bin fuzz-stable -- <target|all> [--iterations N | --seconds S] [--seed N]
//! ```

use sinew_fuzz_targets::{TARGETS, Target, run};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: fuzz-stable <target|all> [--iterations N | --seconds S] [--seed N]";
    let Some(which) = args.first() else {
        eprintln!("{usage}\ntargets: {}", names());
        return ExitCode::from(2);
    };
    let mut iterations = usize::MAX;
    let mut seconds: Option<u64> = None;
    let mut seed = None;
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--iterations", Some(n)) => iterations = n as usize,
            ("--seconds", Some(s)) => seconds = Some(s),
            ("--seed", Some(s)) => seed = Some(s),
            _ => {
                eprintln!("{usage}");
                return ExitCode::from(2);
            }
        }
    }
    if iterations == usize::MAX && seconds.is_none() {
        iterations = 100_000;
    }
    let targets: Vec<&'static Target> = match which.as_str() {
        "all" => TARGETS.iter().collect(),
        name => match sinew_fuzz_targets::target(name) {
            Some(t) => vec![t],
            None => {
                eprintln!("no target {name:?}; targets: {}", names());
                return ExitCode::from(2);
            }
        },
    };
    let seed = seed.unwrap_or_else(run::seed);
    eprintln!("seed {seed}");
    // `all` with --seconds: the time is shared out evenly.
    let per_target = seconds.map(|s| Duration::from_secs(s) / targets.len() as u32);
    let mut failed = false;
    for t in targets {
        let start = Instant::now();
        let mut slowest = Duration::ZERO;
        let mut last = Instant::now();
        let more = |_: &run::Stats| {
            // Report inputs slower than a second: a possible hang or blow-up to look at.
            let took = last.elapsed();
            last = Instant::now();
            slowest = slowest.max(took);
            per_target.is_none_or(|d| start.elapsed() < d)
        };
        match run::fuzz(t, run::target_seed(seed, t.name), iterations, more) {
            Ok(stats) => {
                for input in &stats.new {
                    run::save(t.name, "corpus", "", input);
                }
                eprintln!(
                    "{}: {} inputs in {:.1?}, {} outcomes, {} new kept in fuzz/corpus/{}, slowest input {:.1?}",
                    t.name,
                    stats.execs,
                    start.elapsed(),
                    stats.outcomes,
                    stats.new.len(),
                    t.name,
                    slowest
                );
            }
            Err(f) => {
                eprintln!("{}: FAILED {f} (seed {seed})", t.name);
                failed = true;
            }
        }
    }
    match failed {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    }
}

fn names() -> String {
    TARGETS
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}
