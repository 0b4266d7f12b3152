//! What CI runs: every kept input of every target (`fuzz/seeds`, `fuzz/regressions`,
//! `fuzz/corpus`), then a bounded mutation run per target (`Target::ci_iterations` inputs,
//! never a time limit), on as many threads as there are cores.
//!
//! The run's seed is printed first and with every failure; `SINEW_FUZZ_SEED=<seed>` reruns the
//! same inputs, `SINEW_FUZZ_TARGET=<name>` runs one target, `SINEW_FUZZ_ITERATIONS=<n>` changes
//! the mutation count. A failing input is written to `fuzz/artifacts/<target>/crash-<hash>`.

use sinew_fuzz_targets::{TARGETS, Target, corpus, run};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn every_target_keeps_its_promises_on_kept_and_mutated_inputs() {
    let seed = run::seed();
    let only = std::env::var("SINEW_FUZZ_TARGET").ok();
    let iterations: Option<usize> = std::env::var("SINEW_FUZZ_ITERATIONS")
        .ok()
        .map(|n| n.parse().expect("SINEW_FUZZ_ITERATIONS is a number"));
    let targets: Vec<&'static Target> = TARGETS
        .iter()
        .filter(|t| only.as_deref().is_none_or(|o| o == t.name))
        .collect();
    assert!(!targets.is_empty(), "no target named {only:?}");
    eprintln!("fuzz: seed {seed} (rerun with SINEW_FUZZ_SEED={seed})");

    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(t) = targets.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let n = iterations.unwrap_or(t.ci_iterations);
                    match run::fuzz(t, run::target_seed(seed, t.name), n, |_| true) {
                        Ok(stats) => eprintln!(
                            "fuzz: {}: {} inputs, {} outcomes, {} new",
                            t.name,
                            stats.execs,
                            stats.outcomes,
                            stats.new.len()
                        ),
                        Err(f) => {
                            eprintln!("fuzz: FAILED {f} (seed {seed})");
                            failures
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(f.to_string());
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    assert!(
        failures.is_empty(),
        "{} targets failed (rerun with SINEW_FUZZ_SEED={seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_target_has_seeds_and_its_dictionaries() {
    for t in TARGETS {
        let inputs = corpus::inputs(t.name).expect("inputs readable");
        assert!(
            inputs
                .iter()
                .any(|(p, _)| p.starts_with(corpus::root().join("seeds"))),
            "{}: no seeds in fuzz/seeds/{}",
            t.name,
            t.name
        );
        let dict = corpus::dictionary(t.dicts).expect("dictionaries readable");
        assert!(!dict.is_empty(), "{}: empty dictionary", t.name);
    }
}

#[test]
fn a_broken_promise_is_a_failure_with_its_input_saved() {
    static BROKEN: Target = Target {
        name: "broken-for-test",
        check: |data| {
            assert!(!data.starts_with(b"x"), "starts with x");
            String::new()
        },
        dicts: &[],
        max_len: 16,
        ci_iterations: 0,
    };
    let f = run::one(&BROKEN, b"xyz").expect_err("the promise is broken");
    assert!(f.message.contains("starts with x"), "{}", f.message);
    let saved = f.saved.expect("the input is saved");
    assert_eq!(std::fs::read(&saved).expect("saved file"), b"xyz");
    std::fs::remove_file(&saved).expect("clean up");
    assert!(run::one(&BROKEN, b"abc").is_ok());
}

/// Each JSON seed in `fuzz/seeds/discovery` has its protobuf form beside it (`<name>.pb`, what
/// the proxy really receives), up to date. A stale or missing one is written as `<name>.pb.new`
/// for the failure message to point at: move it into place.
#[test]
fn every_json_discovery_seed_has_its_current_protobuf_form() {
    use prost::Message;
    let dir = corpus::root().join("seeds/discovery");
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("seeds/discovery") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let json = std::fs::read(&path).expect("seed");
        let msg: sinew_proto::discovery::v1::DiscoveryResponse =
            serde_json::from_slice(&json).expect("a JSON seed decodes");
        let want = msg.encode_to_vec();
        let pb = path.with_extension("pb");
        if std::fs::read(&pb).ok().as_deref() != Some(want.as_slice()) {
            let new = path.with_extension("pb.new");
            std::fs::write(&new, &want).expect("write");
            stale.push(new.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale protobuf seeds; move these into place: {stale:?}"
    );
}
