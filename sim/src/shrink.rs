//! Shrinking a failing seed's fault schedule: delete entries one at a time
//! while the failure persists, until no single deletion keeps it failing
//! (a 1-minimal list). The plan is an explicit list, so deletion is all it takes.

use crate::faults::FaultPlan;
use crate::run::{RunOptions, SeedReport, run_seed_with_plan};
use crate::scenario::Scenario;

/// Upper bound on simulation runs one shrink may make.
pub const SHRINK_RUNS_MAX: u32 = 500;

#[derive(Clone, Debug)]
pub struct Shrunk {
    pub original: FaultPlan,
    pub minimal: FaultPlan,
    /// What still fails with the minimal plan.
    pub failure: String,
    pub runs: u32,
}

/// Why a seed's run counts as failing, or `None` if it passes.
pub fn failure_of(scn: &Scenario, r: &SeedReport) -> Option<String> {
    let a = &scn.assertions;
    let mut why: Vec<String> = r.violations.iter().map(|v| v.invariant.clone()).collect();
    if r.leak_cents > a.leak_cents_max {
        why.push(format!("leak {} cents", r.leak_cents));
    }
    if let Some(m) = r.mttr_ms.iter().find(|&&m| m > a.mttr_p99_ms_max) {
        why.push(format!("mttr {m} ms > {}", a.mttr_p99_ms_max));
    }
    why.sort();
    why.dedup();
    (!why.is_empty()).then(|| why.join(", "))
}

/// Number of deletable entries in a plan.
fn len(p: &FaultPlan) -> usize {
    p.timed.len() + p.site_crashes.len()
}

fn without(p: &FaultPlan, i: usize) -> FaultPlan {
    let mut q = p.clone();
    if i < q.timed.len() {
        q.timed.remove(i);
    } else {
        q.site_crashes.remove(i - p.timed.len());
    }
    q
}

/// Shrinks `plan` for `seed`; `Ok(None)` if the seed does not fail with it.
pub fn shrink(scn: &Scenario, seed: u64, opts: &RunOptions, plan: FaultPlan) -> Result<Option<Shrunk>, String> {
    let mut runs = 1;
    let first = run_seed_with_plan(scn, seed, opts, plan.clone())?;
    let Some(mut failure) = failure_of(scn, &first) else { return Ok(None) };
    let mut current = plan.clone();
    let mut progress = true;
    while progress && runs < SHRINK_RUNS_MAX {
        progress = false;
        let mut i = 0;
        while i < len(&current) && runs < SHRINK_RUNS_MAX {
            let candidate = without(&current, i);
            runs += 1;
            let report = run_seed_with_plan(scn, seed, opts, candidate.clone())?;
            match failure_of(scn, &report) {
                Some(f) => {
                    current = candidate;
                    failure = f;
                    progress = true;
                }
                None => i += 1,
            }
        }
    }
    Ok(Some(Shrunk { original: plan, minimal: current, failure, runs }))
}
