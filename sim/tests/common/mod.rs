//! The sabotage harness the sim's test files share: load a shipped
//! scenario, run seeds with or without a sabotage, count violations.

#![allow(dead_code, reason = "each test binary uses part of this module")]

use std::collections::BTreeMap;
use std::path::Path;

use dlft_core::config::Sabotage;
use dlft_sim::run::{RunOptions, SeedReport, run_seed};
use dlft_sim::scenario::Scenario;

/// A file of the repository's `scenarios/`.
pub fn scenario(file: &str) -> Scenario {
    Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(file)).unwrap()
}

/// Runs `seeds` of `scn` with `sabotage`.
pub fn run(scn: &Scenario, seeds: std::ops::Range<u64>, sabotage: Sabotage) -> Vec<SeedReport> {
    seeds.map(|s| run_seed(scn, s, &RunOptions { sabotage, keep_events: false }).unwrap()).collect()
}

/// Violations per invariant over `reports`.
pub fn caught(reports: &[SeedReport]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for v in reports.iter().flat_map(|r| &r.violations) {
        *out.entry(v.invariant.clone()).or_insert(0) += 1;
    }
    out
}
