//! Running targets: one input (a panic becomes a [`Failure`]), and a seeded mutation run over a
//! target's kept inputs that feeds inputs reaching a new outcome back into its pool.
//!
//! An outcome is what a target says about an input (an error's kind and message with the
//! input's own values blanked, "accepted", …): a cheap stand-in for coverage that needs no
//! instrumentation, so it works on stable Rust.

use crate::{Target, corpus, mutate};
use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// An input that broke a target's promise.
#[derive(Debug)]
pub struct Failure {
    pub target: &'static str,
    pub input: Vec<u8>,
    /// The panic's message.
    pub message: String,
    /// Where the input was written (`fuzz/artifacts/<target>/crash-<hash>`), if it could be.
    pub saved: Option<PathBuf>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Messages can quote the whole input: the start says what broke.
        let message = match self.message.char_indices().nth(600) {
            Some((i, _)) => format!("{}…", &self.message[..i]),
            None => self.message.clone(),
        };
        write!(f, "{}: {message} ({} bytes", self.target, self.input.len())?;
        match &self.saved {
            Some(p) => write!(f, ", saved to {})", p.display()),
            None => write!(
                f,
                ", not saved: {:?})",
                String::from_utf8_lossy(&self.input)
            ),
        }
    }
}

/// Runs `target` on `input`: its outcome, or the failure.
pub fn one(target: &'static Target, input: &[u8]) -> Result<String, Failure> {
    catch_unwind(AssertUnwindSafe(|| (target.check)(input))).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic with a non-string payload".into());
        Failure {
            target: target.name,
            input: input.to_vec(),
            message,
            saved: save(target.name, "artifacts", "crash-", input),
        }
    })
}

/// Writes `input` to `fuzz/<kind>/<target>/<prefix><hash>`; the path, if it was written.
pub fn save(target: &str, kind: &str, prefix: &str, input: &[u8]) -> Option<PathBuf> {
    let dir = corpus::root().join(kind).join(target);
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("{prefix}{}", corpus::name_of(input)));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

/// What a mutation run did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Inputs run: kept ones plus mutations.
    pub execs: usize,
    /// Distinct outcomes seen.
    pub outcomes: usize,
    /// Mutations that reached an outcome not seen before.
    pub new: Vec<Vec<u8>>,
}

/// Replays every kept input of `target`, then runs `iterations` mutations (or until `more`
/// says stop) from generator `seed`. Stops at the first failure.
pub fn fuzz(
    target: &'static Target,
    seed: u64,
    iterations: usize,
    mut more: impl FnMut(&Stats) -> bool,
) -> Result<Stats, Failure> {
    let kept = corpus::inputs(target.name).map_err(|e| Failure {
        target: target.name,
        input: Vec::new(),
        message: format!("cannot read the kept inputs: {e}"),
        saved: None,
    })?;
    let dict = corpus::dictionary(target.dicts).map_err(|e| Failure {
        target: target.name,
        input: Vec::new(),
        message: format!("cannot read the dictionaries {:?}: {e}", target.dicts),
        saved: None,
    })?;
    let mut stats = Stats::default();
    let mut seen = BTreeSet::new();
    let mut pool: Vec<Vec<u8>> = Vec::with_capacity(kept.len());
    for (_, input) in kept {
        seen.insert(one(target, &input)?);
        stats.execs += 1;
        pool.push(input);
    }
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..iterations {
        if !more(&stats) {
            break;
        }
        let base = &pool[rng.usize(..pool.len())];
        let input = mutate::mutate(&mut rng, base, &pool, &dict, target.max_len);
        let outcome = one(target, &input)?;
        stats.execs += 1;
        if seen.insert(outcome) {
            pool.push(input.clone());
            stats.new.push(input);
        }
    }
    stats.outcomes = seen.len();
    Ok(stats)
}

/// The seed of a run: `SINEW_FUZZ_SEED` when set (to reproduce one), else a random one.
pub fn seed() -> u64 {
    match std::env::var("SINEW_FUZZ_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SINEW_FUZZ_SEED={s:?} is not a u64")),
        Err(_) => fastrand::u64(..),
    }
}

/// The seed of `target`'s generator in a run seeded `seed` (each target its own sequence, so
/// one can be rerun alone).
pub fn target_seed(seed: u64, target: &str) -> u64 {
    seed ^ u64::from_str_radix(&corpus::name_of(target.as_bytes()), 16).unwrap_or(0)
}
