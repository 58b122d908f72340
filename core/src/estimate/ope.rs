//! Off-policy evaluation: what a policy would have earned on logs another
//! policy produced, from the logged propensities.
//!
//! Estimators as in Open Bandit Pipeline, with w = π_e(a|x) / π_b(a|x) and a
//! reward model q̂: replay (RM), IPS (clipped at λ), SNIPS, DM, DR, SNDR and
//! Switch-DR. Intervals are seeded percentile bootstraps over rounds, with
//! self-normalisers recomputed per resample. Each resample draws from its own
//! stream, so results do not depend on the thread count.

use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::estimate::bandit::{ThompsonSampling, TsConfig, stream};
use crate::time::Timestamp;

/// One logged round, seen from the evaluated policy.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Round {
    pub reward: f64,
    /// π_b(a_t | x_t): the logging policy's propensity, in (0, 1].
    pub pscore: f64,
    /// π_e(a_t | x_t): the evaluated policy's probability of the logged action.
    pub pi_logged: f64,
    /// q̂(x_t, a_t).
    pub q_logged: f64,
    /// Σ_a π_e(a | x_t) q̂(x_t, a).
    pub dm: f64,
    /// Whether a draw from π_e(·|x_t) picked the logged action (replay).
    pub replay_match: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpeConfig {
    /// λ: the clipping threshold of IPS and DR, and Switch-DR's switch.
    pub clip: f64,
    /// Bootstrap resamples (OBP uses 10,000).
    pub resamples: u32,
    /// Two-sided level: 0.05 gives a 95% interval.
    pub alpha: f64,
    pub seed: u64,
    pub threads: usize,
}

impl Default for OpeConfig {
    fn default() -> Self {
        OpeConfig { clip: 1e6, resamples: 10_000, alpha: 0.05, seed: 0, threads: 1 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// `null` in JSON where undefined (replay with no matching round).
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpeReport {
    pub n_rounds: usize,
    /// Effective sample size of the importance weights: (Σw)² / Σw².
    pub ess: f64,
    /// Rounds the replay method kept.
    pub replay_rounds: usize,
    pub max_weight: f64,
    pub estimators: BTreeMap<String, Estimate>,
}

/// The estimator names, in report order.
pub const ESTIMATORS: [&str; 7] = ["rm", "ips", "snips", "dm", "dr", "sndr", "switch_dr"];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OpeError {
    #[error("no rounds to evaluate")]
    Empty,
    #[error("round {row}: {what}")]
    BadRound { row: usize, what: String },
    #[error("bad settings: {0}")]
    Settings(String),
}

/// Per-round sums every estimator is a function of.
#[derive(Copy, Clone, Default, Debug)]
struct Sums {
    n: f64,
    match_n: f64,
    match_r: f64,
    wc_r: f64,
    w_r: f64,
    w: f64,
    w2: f64,
    dm: f64,
    wc_rq: f64,
    w_rq: f64,
    sw_rq: f64,
}

impl Sums {
    fn add(&mut self, r: &Round, clip: f64) {
        let w = r.pi_logged / r.pscore;
        let wc = w.min(clip);
        let resid = r.reward - r.q_logged;
        self.n += 1.0;
        if r.replay_match {
            self.match_n += 1.0;
            self.match_r += r.reward;
        }
        self.wc_r += wc * r.reward;
        self.w_r += w * r.reward;
        self.w += w;
        self.w2 += w * w;
        self.dm += r.dm;
        self.wc_rq += wc * resid;
        self.w_rq += w * resid;
        if w <= clip {
            self.sw_rq += w * resid;
        }
    }

    fn values(&self) -> [f64; 7] {
        let n = self.n;
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        [
            div(self.match_r, self.match_n),
            self.wc_r / n,
            div(self.w_r, self.w),
            self.dm / n,
            (self.dm + self.wc_rq) / n,
            self.dm / n + div(self.w_rq, self.w),
            (self.dm + self.sw_rq) / n,
        ]
    }
}

pub fn validate(rounds: &[Round]) -> Result<(), OpeError> {
    if rounds.is_empty() {
        return Err(OpeError::Empty);
    }
    for (row, r) in rounds.iter().enumerate() {
        let bad = |what: String| Err(OpeError::BadRound { row, what });
        if !(r.pscore > 0.0 && r.pscore <= 1.0) {
            return bad(format!("propensity {} is not in (0, 1]", r.pscore));
        }
        if !(0.0..=1.0).contains(&r.pi_logged) {
            return bad(format!("evaluated probability {} is not in [0, 1]", r.pi_logged));
        }
        if !r.reward.is_finite() || !r.q_logged.is_finite() || !r.dm.is_finite() {
            return bad("reward or reward model is not finite".into());
        }
    }
    Ok(())
}

/// Evaluates all estimators with bootstrap intervals.
pub fn evaluate(rounds: &[Round], cfg: &OpeConfig) -> Result<OpeReport, OpeError> {
    evaluate_with(rounds, cfg, &|| {})
}

/// `evaluate`, calling `resampled()` after each bootstrap resample (a
/// progress bar's feed; called from the resampling threads).
pub fn evaluate_with(rounds: &[Round], cfg: &OpeConfig, resampled: &(dyn Fn() + Sync)) -> Result<OpeReport, OpeError> {
    validate(rounds)?;
    if cfg.clip.is_nan() || cfg.clip <= 0.0 || cfg.resamples == 0 || !(cfg.alpha > 0.0 && cfg.alpha < 1.0) {
        return Err(OpeError::Settings("clip must be positive, resamples > 0, alpha in (0, 1)".into()));
    }
    let mut full = Sums::default();
    for r in rounds {
        full.add(r, cfg.clip);
    }
    let point = full.values();
    let boots = bootstrap(rounds, cfg, resampled);
    let mut estimators = BTreeMap::new();
    for (i, name) in ESTIMATORS.iter().enumerate() {
        let mut xs: Vec<f64> = boots.iter().map(|v| v[i]).filter(|x| !x.is_nan()).collect();
        xs.sort_by(f64::total_cmp);
        let (lo, hi) = (quantile(&xs, cfg.alpha / 2.0), quantile(&xs, 1.0 - cfg.alpha / 2.0));
        estimators.insert((*name).to_string(), Estimate { value: point[i], ci_low: lo, ci_high: hi });
    }
    let max_weight = rounds.iter().map(|r| r.pi_logged / r.pscore).fold(0.0, f64::max);
    Ok(OpeReport {
        n_rounds: rounds.len(),
        ess: if full.w2 > 0.0 { full.w * full.w / full.w2 } else { 0.0 },
        replay_rounds: full.match_n as usize,
        max_weight,
        estimators,
    })
}

fn bootstrap(rounds: &[Round], cfg: &OpeConfig, resampled: &(dyn Fn() + Sync)) -> Vec<[f64; 7]> {
    let n = rounds.len();
    let one = |b: u32| {
        let mut rng = stream(cfg.seed, "ope/bootstrap", u64::from(b), 0);
        let mut s = Sums::default();
        for _ in 0..n {
            s.add(&rounds[rng.random_range(0..n)], cfg.clip);
        }
        resampled();
        s.values()
    };
    let threads = cfg.threads.clamp(1, 64);
    if threads == 1 {
        return (0..cfg.resamples).map(one).collect();
    }
    let chunk = cfg.resamples.div_ceil(threads as u32);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads as u32)
            .map(|t| {
                let lo = (t * chunk).min(cfg.resamples);
                let hi = ((t + 1) * chunk).min(cfg.resamples);
                scope.spawn(move || (lo..hi).map(one).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("bootstrap thread panicked")).collect()
    })
}

/// Linear-interpolated quantile of sorted values (numpy's default); NaN if empty.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    let next = sorted[(i + 1).min(sorted.len() - 1)];
    sorted[i] + frac * (next - sorted[i])
}

/// A logged bandit round as the evaluators need it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedRound {
    pub ts: Timestamp,
    pub arm: usize,
    pub position: usize,
    pub reward: f64,
    pub pscore: f64,
}

/// The policy being evaluated.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Every arm with probability 1/K at every position.
    Uniform,
    /// Beta-Bernoulli Thompson Sampling learning from the logged rewards as
    /// they arrive (batch-updated at each re-roll), one slot per position.
    Ts { cfg: TsConfig, seed: u64 },
}

/// The reward model: the smoothed mean reward of each (arm, position),
/// shrunk toward the overall mean with `PRIOR_WEIGHT` pseudo-rounds.
pub fn reward_model(logs: &[LoggedRound], arms: usize, positions: usize) -> Vec<Vec<f64>> {
    const PRIOR_WEIGHT: f64 = 10.0;
    let overall = logs.iter().map(|l| l.reward).sum::<f64>() / logs.len().max(1) as f64;
    let mut sums = vec![vec![(0.0, 0.0); arms]; positions];
    for l in logs {
        let s = &mut sums[l.position][l.arm];
        s.0 += l.reward;
        s.1 += 1.0;
    }
    sums.into_iter()
        .map(|row| row.into_iter().map(|(r, n)| (r + PRIOR_WEIGHT * overall) / (n + PRIOR_WEIGHT)).collect())
        .collect()
}

/// Turns time-ordered logs into rounds for `target`. Arms must be < `arms`
/// and positions < `positions` (the loader checks both).
pub fn rounds_for(
    logs: &[LoggedRound],
    arms: usize,
    positions: usize,
    target: &Target,
    seed: u64,
) -> Result<Vec<Round>, OpeError> {
    if logs.is_empty() {
        return Err(OpeError::Empty);
    }
    let q = reward_model(logs, arms, positions);
    let uniform = vec![1.0 / arms as f64; arms];
    let mut ts = match target {
        Target::Uniform => None,
        Target::Ts { cfg, seed } => {
            Some(ThompsonSampling::new(arms, positions, cfg.clone(), *seed).map_err(OpeError::Settings)?)
        }
    };
    let mut out = Vec::with_capacity(logs.len());
    for (t, l) in logs.iter().enumerate() {
        let dist: &[f64] = match ts.as_mut() {
            None => &uniform,
            Some(ts) => {
                ts.roll_to(l.ts);
                ts.distribution(l.position)
            }
        };
        let dm = dist.iter().zip(&q[l.position]).map(|(p, q)| p * q).sum();
        let mut rng = stream(seed, "ope/replay", t as u64, 0);
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let mut pick = arms - 1;
        for (a, p) in dist.iter().enumerate() {
            acc += p;
            if u < acc {
                pick = a;
                break;
            }
        }
        out.push(Round {
            reward: l.reward,
            pscore: l.pscore,
            pi_logged: dist[l.arm],
            q_logged: q[l.position][l.arm],
            dm,
            replay_match: pick == l.arm,
        });
        if let Some(ts) = ts.as_mut() {
            ts.observe(l.arm, l.reward);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(reward: f64, pscore: f64, pi: f64, q: f64, dm: f64) -> Round {
        Round { reward, pscore, pi_logged: pi, q_logged: q, dm, replay_match: pi > 0.5 }
    }

    #[test]
    fn estimators_match_hand_computed_values() {
        // Two rounds: w = 0.5/0.25 = 2 and 0.5/1.0 = 0.5.
        let rounds = [round(1.0, 0.25, 0.5, 0.4, 0.3), round(0.0, 1.0, 0.5, 0.2, 0.1)];
        let cfg = OpeConfig { resamples: 50, ..OpeConfig::default() };
        let rep = evaluate(&rounds, &cfg).unwrap();
        let v = |n: &str| rep.estimators[n].value;
        assert!((v("ips") - (2.0 * 1.0 + 0.0) / 2.0).abs() < 1e-12);
        assert!((v("snips") - 2.0 / 2.5).abs() < 1e-12);
        assert!((v("dm") - 0.2).abs() < 1e-12);
        // DR: mean(dm + w (r - q)) = ((0.3 + 2*0.6) + (0.1 + 0.5*(-0.2))) / 2
        assert!((v("dr") - (1.5 + 0.0) / 2.0).abs() < 1e-12);
        // SNDR: mean(dm) + Σ w (r-q) / Σ w = 0.2 + (1.2 - 0.1) / 2.5
        assert!((v("sndr") - (0.2 + 1.1 / 2.5)).abs() < 1e-12);
        assert!((v("switch_dr") - v("dr")).abs() < 1e-12, "nothing above λ: Switch-DR is DR");
        assert!(v("rm").is_nan(), "no round matched (pi 0.5 is not > 0.5)");
        assert!((rep.ess - 2.5 * 2.5 / 4.25).abs() < 1e-12);

        let clipped = evaluate(&rounds, &OpeConfig { clip: 1.0, resamples: 50, ..OpeConfig::default() }).unwrap();
        assert!((clipped.estimators["ips"].value - 0.5).abs() < 1e-12, "w=2 clipped to 1");
        // Switch-DR drops the w=2 round's correction: (0.3 + 0.1 - 0.1) / 2.
        assert!((clipped.estimators["switch_dr"].value - 0.15).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_is_seeded_and_independent_of_threads() {
        let rounds: Vec<Round> =
            (0..500).map(|i| round(f64::from(i % 7 == 0), 0.2 + f64::from(i % 5) * 0.1, 0.3, 0.1, 0.1)).collect();
        let one = evaluate(&rounds, &OpeConfig { resamples: 400, threads: 1, ..OpeConfig::default() }).unwrap();
        let two = evaluate(&rounds, &OpeConfig { resamples: 400, threads: 2, ..OpeConfig::default() }).unwrap();
        assert_eq!(format!("{one:?}"), format!("{two:?}"), "NaN-safe comparison");
        let ips = &one.estimators["ips"];
        assert!(ips.ci_low < ips.value && ips.value < ips.ci_high, "{ips:?}");
        let other = evaluate(&rounds, &OpeConfig { resamples: 400, seed: 1, ..OpeConfig::default() }).unwrap();
        assert_ne!(one.estimators["ips"].ci_low, other.estimators["ips"].ci_low);
    }

    #[test]
    fn ips_is_unbiased_on_a_synthetic_world() {
        // Logging: arm 0 w.p. 0.8, arm 1 w.p. 0.2. Rewards: arm 0 w.p. 0.1,
        // arm 1 w.p. 0.5. Target: always arm 1 → true value 0.5.
        let mut rng = stream(5, "test", 0, 0);
        let mut logs = Vec::new();
        for t in 0..20_000u64 {
            let arm = usize::from(rng.random::<f64>() >= 0.8);
            let p = if arm == 0 { 0.8 } else { 0.2 };
            let r = f64::from(rng.random::<f64>() < if arm == 0 { 0.1 } else { 0.5 });
            logs.push(LoggedRound { ts: Timestamp(t), arm, position: 0, reward: r, pscore: p });
        }
        let rounds: Vec<Round> = logs
            .iter()
            .map(|l| Round {
                reward: l.reward,
                pscore: l.pscore,
                pi_logged: if l.arm == 1 { 1.0 } else { 0.0 },
                q_logged: 0.3,
                dm: 0.3,
                replay_match: l.arm == 1,
            })
            .collect();
        let rep = evaluate(&rounds, &OpeConfig { resamples: 300, ..OpeConfig::default() }).unwrap();
        for name in ["ips", "snips", "dr", "sndr", "rm"] {
            let e = &rep.estimators[name];
            assert!(e.ci_low <= 0.5 && 0.5 <= e.ci_high, "{name}: {e:?}");
        }
        let dm = &rep.estimators["dm"];
        assert!((dm.value - 0.3).abs() < 1e-12, "DM is only as good as its model");
    }

    #[test]
    fn bad_rounds_are_named() {
        let mut rounds = vec![round(1.0, 0.5, 0.5, 0.1, 0.1); 3];
        rounds[2].pscore = 0.0;
        assert_eq!(
            evaluate(&rounds, &OpeConfig::default()),
            Err(OpeError::BadRound { row: 2, what: "propensity 0 is not in (0, 1]".into() })
        );
        rounds[2].pscore = 1.5;
        assert!(matches!(evaluate(&rounds, &OpeConfig::default()), Err(OpeError::BadRound { row: 2, .. })));
        assert_eq!(evaluate(&[], &OpeConfig::default()), Err(OpeError::Empty));
    }

    #[test]
    fn uniform_target_gives_inverse_k_weights() {
        let logs: Vec<LoggedRound> = (0..10)
            .map(|t| LoggedRound { ts: Timestamp(t), arm: (t % 4) as usize, position: 0, reward: 1.0, pscore: 0.5 })
            .collect();
        let rounds = rounds_for(&logs, 4, 1, &Target::Uniform, 0).unwrap();
        assert!(rounds.iter().all(|r| (r.pi_logged - 0.25).abs() < 1e-12));
        let ts = Target::Ts { cfg: TsConfig { mc_samples: 200, ..TsConfig::default() }, seed: 3 };
        let rounds = rounds_for(&logs, 4, 1, &ts, 0).unwrap();
        assert!(rounds.iter().all(|r| (0.0..=1.0).contains(&r.pi_logged)));
    }
}
