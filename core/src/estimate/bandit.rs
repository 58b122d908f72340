//! Thompson Sampling over Beta-Bernoulli arms, re-rolled on a fixed period
//! (hourly in production), with the propensity of every decision.
//!
//! Determinism: every random number comes from a ChaCha8 stream derived from
//! (seed, purpose, arm, hour) by SHA-256, so a decision at hour `h` does not
//! depend on how many draws any other hour or arm made, and one seed
//! reproduces a run across machines and rand versions of the same line.
//!
//! Beta draws use Jöhnk's algorithm where both parameters are below 1 (where
//! it accepts often) and `rand_distr`'s exact Cheng samplers elsewhere (where
//! Jöhnk's acceptance rate collapses: 3.5·10⁶ tries at (5, 50)).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Distribution;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::time::{Millis, Timestamp};

/// A named, portable stream: (seed, purpose, a, b) → ChaCha8.
pub fn stream(seed: u64, purpose: &str, a: u64, b: u64) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(b"dlft/stream/v1\0");
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(seed.to_le_bytes());
    h.update(a.to_le_bytes());
    h.update(b.to_le_bytes());
    ChaCha8Rng::from_seed(h.finalize().into())
}

/// A uniform draw in (0, 1]: safe to take the logarithm of.
fn open_unit<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    1.0 - rng.random::<f64>()
}

/// Jöhnk's Beta sampler, in log space so tiny parameters do not underflow.
/// Exact for all a, b > 0, but only efficient where both are below 1.
pub fn beta_johnk<R: Rng + ?Sized>(a: f64, b: f64, rng: &mut R) -> f64 {
    loop {
        let lx = open_unit(rng).ln() / a;
        let ly = open_unit(rng).ln() / b;
        let m = lx.max(ly);
        let lse = m + ((lx - m).exp() + (ly - m).exp()).ln();
        if lse <= 0.0 {
            // x / (x + y), with x = e^lx, y = e^ly.
            return (lx - lse).exp();
        }
    }
}

/// Cheng's exact samplers (BB for min > 1, BC otherwise), from `rand_distr`.
pub fn beta_cheng<R: Rng + ?Sized>(a: f64, b: f64, rng: &mut R) -> f64 {
    rand_distr::Beta::new(a, b).expect("Beta parameters are checked positive and finite").sample(rng)
}

/// Beta(a, b): Jöhnk where both parameters are below 1, Cheng elsewhere.
pub fn sample_beta<R: Rng + ?Sized>(a: f64, b: f64, rng: &mut R) -> f64 {
    debug_assert!(a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite());
    if a < 1.0 && b < 1.0 { beta_johnk(a, b, rng) } else { beta_cheng(a, b, rng) }
}

/// A Beta(a, b) sampler built once for many draws: the same draws as
/// [`sample_beta`] from the same stream (building Cheng's sampler consumes
/// nothing), without rebuilding it per draw.
#[derive(Clone, Copy, Debug)]
pub enum BetaSampler {
    Johnk(f64, f64),
    Cheng(rand_distr::Beta<f64>),
}

impl BetaSampler {
    pub fn new(a: f64, b: f64) -> BetaSampler {
        debug_assert!(a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite());
        if a < 1.0 && b < 1.0 {
            BetaSampler::Johnk(a, b)
        } else {
            BetaSampler::Cheng(rand_distr::Beta::new(a, b).expect("Beta parameters are checked positive and finite"))
        }
    }

    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match self {
            BetaSampler::Johnk(a, b) => beta_johnk(*a, *b, rng),
            BetaSampler::Cheng(d) => d.sample(rng),
        }
    }
}

/// The bandit's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsConfig {
    /// Beta prior of every arm.
    #[serde(default = "one")]
    pub prior_alpha: f64,
    #[serde(default = "one")]
    pub prior_beta: f64,
    /// How often the arms' samples are re-drawn (and the posterior updated).
    #[serde(default = "hour")]
    pub reroll: Millis,
    /// Posterior draws per re-roll for the propensities (Monte Carlo).
    #[serde(default = "mc")]
    pub mc_samples: u32,
    /// Uniform exploration share in [0, 1): keeps every propensity positive.
    #[serde(default)]
    pub explore_floor: f64,
}

fn one() -> f64 {
    1.0
}
fn hour() -> Millis {
    Millis::from_secs(3600)
}
fn mc() -> u32 {
    2_000
}

impl Default for TsConfig {
    fn default() -> Self {
        TsConfig { prior_alpha: 1.0, prior_beta: 1.0, reroll: hour(), mc_samples: mc(), explore_floor: 0.0 }
    }
}

impl TsConfig {
    pub fn validate(&self) -> Result<(), String> {
        let ok = |x: f64| x.is_finite() && x > 0.0;
        if !ok(self.prior_alpha) || !ok(self.prior_beta) {
            return Err("prior_alpha and prior_beta must be positive and finite".into());
        }
        if self.reroll.0 == 0 {
            return Err("reroll must be positive".into());
        }
        if self.mc_samples == 0 {
            return Err("mc_samples must be positive".into());
        }
        if !(0.0..1.0).contains(&self.explore_floor) {
            return Err("explore_floor must be in [0, 1)".into());
        }
        Ok(())
    }
}

/// One decision and the probability the policy had of making it.
#[derive(Copy, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub arm: usize,
    pub propensity: f64,
}

/// Beta-Bernoulli Thompson Sampling over `arms` arms. The posterior changes
/// only at re-roll boundaries: rewards seen during period `h` are folded in
/// when period `h + 1` is rolled, as in a batch-updated production bandit.
#[derive(Clone, Debug)]
pub struct ThompsonSampling {
    cfg: TsConfig,
    seed: u64,
    /// Posterior (alpha, beta) per arm, as of the current period.
    posterior: Vec<(f64, f64)>,
    /// Rewards seen in the current period, folded in at the next roll.
    pending: Vec<(f64, f64)>,
    period: Option<u64>,
    /// This period's samples and ranking.
    ranking: Vec<usize>,
    /// This period's propensities: `[slot][arm]`, floor included.
    propensities: Vec<Vec<f64>>,
    slots: usize,
}

impl ThompsonSampling {
    /// `slots` is how many ranked positions each decision fills (1 for a
    /// single choice; 3 for the Open Bandit Dataset's three positions).
    pub fn new(arms: usize, slots: usize, cfg: TsConfig, seed: u64) -> Result<Self, String> {
        cfg.validate()?;
        if arms == 0 || slots == 0 || slots > arms {
            return Err(format!("need 1 <= slots ({slots}) <= arms ({arms})"));
        }
        let prior = (cfg.prior_alpha, cfg.prior_beta);
        Ok(ThompsonSampling {
            cfg,
            seed,
            posterior: vec![prior; arms],
            pending: vec![(0.0, 0.0); arms],
            period: None,
            ranking: Vec::new(),
            propensities: Vec::new(),
            slots,
        })
    }

    pub fn arms(&self) -> usize {
        self.posterior.len()
    }

    pub fn config(&self) -> &TsConfig {
        &self.cfg
    }

    /// The re-roll period containing `at`.
    pub fn period_of(&self, at: Timestamp) -> u64 {
        at.0 / self.cfg.reroll.0
    }

    /// Records a reward in [0, 1] for `arm` (fractional rewards update both
    /// counts, the usual Bernoulli generalisation).
    pub fn observe(&mut self, arm: usize, reward: f64) {
        let r = reward.clamp(0.0, 1.0);
        let p = &mut self.pending[arm];
        p.0 += r;
        p.1 += 1.0 - r;
    }

    /// Moves to the period containing `at`: folds pending rewards in and
    /// re-draws the samples and the propensities. A no-op within a period.
    pub fn roll_to(&mut self, at: Timestamp) {
        let period = self.period_of(at);
        if self.period == Some(period) {
            return;
        }
        for (post, pend) in self.posterior.iter_mut().zip(self.pending.iter_mut()) {
            post.0 += pend.0;
            post.1 += pend.1;
            *pend = (0.0, 0.0);
        }
        self.period = Some(period);
        let samples: Vec<f64> = (0..self.arms())
            .map(|arm| {
                let (a, b) = self.posterior[arm];
                sample_beta(a, b, &mut stream(self.seed, "ts/roll", arm as u64, period))
            })
            .collect();
        self.ranking = rank(&samples);
        self.propensities = self.monte_carlo(period);
    }

    /// `[slot][arm]`: the probability that `arm` is ranked at `slot` by a
    /// fresh posterior draw, by Monte Carlo, mixed with the uniform floor.
    fn monte_carlo(&self, period: u64) -> Vec<Vec<f64>> {
        let arms = self.arms();
        let mut counts = vec![vec![0u32; arms]; self.slots];
        let mut rng = stream(self.seed, "ts/propensity", 0, period);
        let mut draw = vec![0.0; arms];
        let samplers: Vec<BetaSampler> = self.posterior.iter().map(|(a, b)| BetaSampler::new(*a, *b)).collect();
        for _ in 0..self.cfg.mc_samples {
            for (arm, sampler) in samplers.iter().enumerate() {
                draw[arm] = sampler.sample(&mut rng);
            }
            for (slot, arm) in rank(&draw).into_iter().take(self.slots).enumerate() {
                counts[slot][arm] += 1;
            }
        }
        let m = f64::from(self.cfg.mc_samples);
        let eps = self.cfg.explore_floor;
        counts
            .into_iter()
            .map(|row| row.into_iter().map(|c| (1.0 - eps) * f64::from(c) / m + eps / arms as f64).collect())
            .collect()
    }

    /// This period's ranking (best first).
    pub fn ranking(&self) -> &[usize] {
        &self.ranking
    }

    /// The probability of showing `arm` at `slot` this period.
    pub fn propensity(&self, slot: usize, arm: usize) -> f64 {
        self.propensities[slot][arm]
    }

    /// The whole distribution of `slot` this period.
    pub fn distribution(&self, slot: usize) -> &[f64] {
        &self.propensities[slot]
    }

    /// Decides `slot` of decision number `n` in the current period: the
    /// ranked arm, or with probability `explore_floor` a uniform arm.
    pub fn decide(&self, slot: usize, n: u64) -> Decision {
        let period = self.period.expect("roll_to before decide");
        let mut rng = stream(self.seed, "ts/explore", n, period);
        let arm = if self.cfg.explore_floor > 0.0 && rng.random::<f64>() < self.cfg.explore_floor {
            rng.random_range(0..self.arms())
        } else {
            self.ranking[slot]
        };
        Decision { arm, propensity: self.propensity(slot, arm) }
    }
}

/// Arms by sample, best first; ties by arm index (deterministic).
fn rank(samples: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..samples.len()).collect();
    idx.sort_by(|&x, &y| samples[y].total_cmp(&samples[x]).then(x.cmp(&y)));
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var)
    }

    fn check(a: f64, b: f64, f: fn(f64, f64, &mut ChaCha8Rng) -> f64, name: &str) {
        let n = 200_000;
        let mut rng = stream(7, name, a.to_bits(), b.to_bits());
        let xs: Vec<f64> = (0..n).map(|_| f(a, b, &mut rng)).collect();
        assert!(xs.iter().all(|x| (0.0..=1.0).contains(x)), "{name}({a},{b}) left [0,1]");
        let (mean, var) = moments(&xs);
        let s = a + b;
        let tmean = a / s;
        let tvar = a * b / (s * s * (s + 1.0));
        // The sample mean's standard error is sqrt(var/n); allow 5 of them.
        let se = (tvar / n as f64).sqrt();
        assert!((mean - tmean).abs() < 5.0 * se, "{name}({a},{b}): mean {mean} vs {tmean} (se {se})");
        // The sample variance's relative error is about sqrt(2/n) times the
        // kurtosis factor; 5% is far outside it for these n and parameters.
        assert!((var / tvar - 1.0).abs() < 0.05, "{name}({a},{b}): var {var} vs {tvar}");
    }

    #[test]
    fn johnk_moments_below_one() {
        for (a, b) in [(0.5, 0.5), (0.1, 0.9), (0.3, 0.05), (0.9, 0.9)] {
            check(a, b, beta_johnk, "johnk");
        }
    }

    #[test]
    fn dispatching_sampler_moments_everywhere() {
        for (a, b) in [(0.5, 0.5), (0.2, 3.0), (1.0, 1.0), (2.0, 10.0), (10.0, 10.0), (5.0, 50.0), (300.0, 9000.0)] {
            check(a, b, sample_beta, "beta");
        }
    }

    #[test]
    fn tiny_parameters_do_not_underflow() {
        let mut rng = stream(1, "tiny", 0, 0);
        for _ in 0..10_000 {
            let x = beta_johnk(0.001, 0.002, &mut rng);
            assert!((0.0..=1.0).contains(&x) && x.is_finite());
        }
    }

    #[test]
    fn streams_are_independent_of_order_and_reproducible() {
        let mut a = stream(3, "ts/roll", 1, 2);
        let mut b = stream(3, "ts/roll", 1, 2);
        assert_eq!(a.random::<u64>(), b.random::<u64>());
        let mut c = stream(3, "ts/roll", 2, 1);
        assert_ne!(stream(3, "ts/roll", 1, 2).random::<u64>(), c.random::<u64>());
    }

    #[test]
    fn propensities_sum_to_one_per_slot_and_floor_holds() {
        let cfg = TsConfig { mc_samples: 500, explore_floor: 0.1, ..TsConfig::default() };
        let mut ts = ThompsonSampling::new(5, 3, cfg, 9).unwrap();
        for _ in 0..50 {
            ts.observe(2, 1.0);
            ts.observe(0, 0.0);
        }
        ts.roll_to(Timestamp(0));
        ts.roll_to(Timestamp(3_600_000));
        for slot in 0..3 {
            let total: f64 = ts.distribution(slot).iter().sum();
            assert!((total - 1.0).abs() < 1e-9, "slot {slot} sums to {total}");
            assert!(ts.distribution(slot).iter().all(|p| *p >= 0.1 / 5.0 - 1e-12));
        }
        // Arm 2 won 50 of 50: it should top slot 0 almost always.
        assert!(ts.propensity(0, 2) > 0.85, "{}", ts.propensity(0, 2));
        assert_eq!(ts.ranking()[0], 2);
    }

    #[test]
    fn decisions_are_reproducible_and_propensities_match_frequencies() {
        let cfg = TsConfig { mc_samples: 4_000, explore_floor: 0.0, ..TsConfig::default() };
        // Same posterior, many periods: how often each arm wins the roll
        // should match the Monte Carlo propensity of a period.
        let mut ts = ThompsonSampling::new(3, 1, cfg, 11).unwrap();
        for _ in 0..3 {
            ts.observe(0, 1.0);
            ts.observe(1, 0.0);
        }
        ts.roll_to(Timestamp(0));
        ts.roll_to(Timestamp(3_600_000));
        let expected: Vec<f64> = ts.distribution(0).to_vec();
        let mut wins = [0u32; 3];
        let periods = 4_000u64;
        for p in 1..=periods {
            ts.roll_to(Timestamp(p * 3_600_000));
            wins[ts.decide(0, 0).arm] += 1;
        }
        for arm in 0..3 {
            let freq = f64::from(wins[arm]) / periods as f64;
            assert!((freq - expected[arm]).abs() < 0.03, "arm {arm}: won {freq}, propensity {}", expected[arm]);
        }
        let mut again = ThompsonSampling::new(3, 1, ts.config().clone(), 11).unwrap();
        again.roll_to(Timestamp(0));
        let mut first = ThompsonSampling::new(3, 1, ts.config().clone(), 11).unwrap();
        first.roll_to(Timestamp(0));
        assert_eq!(again.decide(0, 5), first.decide(0, 5));
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = TsConfig { explore_floor: 1.0, ..TsConfig::default() };
        assert!(ThompsonSampling::new(3, 1, bad, 0).is_err());
        assert!(ThompsonSampling::new(2, 3, TsConfig::default(), 0).is_err());
        let bad = TsConfig { prior_alpha: 0.0, ..TsConfig::default() };
        assert!(bad.validate().is_err());
    }
}
