//! Policy files (TOML): the kill rule or the refund chain a backtest
//! replays, and the bandit an off-policy evaluation scores. Unknown keys are refused, and errors name
//! the file, the line and the key.

use std::path::Path;

use serde::{Deserialize, Serialize};

use dlft_core::backtest::BacktestConfig;
use dlft_core::config::RefundConfig;
use dlft_core::envelope::EnvelopeConfig;
use dlft_core::envelope::budget::{Budgets, Cap, Purpose, Window, Zone};
use dlft_core::envelope::refund::TierCaps;
use dlft_core::estimate::bandit::TsConfig;
use dlft_core::estimate::estimator::EstimatorConfig;
use dlft_core::estimate::identity::SharedValues;
use dlft_core::estimate::risk::TierRules;
use dlft_core::money::{Currency, Money};
use dlft_core::propose::kill_rule::KillRule;
use dlft_core::propose::refund::RefundPolicy;
use dlft_core::time::Millis;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub name: Option<String>,
    pub kill: Option<KillSection>,
    pub bandit: Option<BanditSection>,
    pub refund: Option<RefundSection>,
}

/// The refund chain's settings: the policy, the tier thresholds and the
/// tiers' caps; anything left out takes core's defaults (the caps: 30.00
/// watched, 10.00 high risk, none trusted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefundSection {
    pub currency: String,
    pub damaged_share_bp: u32,
    pub lost_after_days: u32,
    pub watch_refund_share_bp: u32,
    pub high_refund_share_bp: u32,
    pub min_refunds_for_share: u32,
    pub watch_inr_delivered: u32,
    pub high_inr_delivered: u32,
    pub ring_sharing: u32,
    /// What a trusted identity may get back unasked (none: no tier cap).
    pub trusted_cap_cents: Option<i64>,
    pub watch_cap_cents: i64,
    pub high_cap_cents: i64,
    /// The brand's refund budget, as `[budgets]` declares it for `dlft
    /// run`: what all refunds of a calendar day / month (in `time_zone`)
    /// may take. Unset: the replay applies no budget.
    pub daily_cap_cents: Option<i64>,
    pub monthly_cap_cents: Option<i64>,
    /// The IANA zone the caps' days and months are counted in.
    pub time_zone: String,
    /// `[refund.shared]`: values many customers carry that name none of
    /// them, as `dlft run`'s `[refunds.shared]` (dropped from the graph).
    pub shared: SharedValues,
}

impl Default for RefundSection {
    fn default() -> Self {
        let (p, t) = (RefundPolicy::default(), TierRules::default());
        RefundSection {
            currency: "EUR".into(),
            damaged_share_bp: p.damaged_share_bp,
            lost_after_days: p.lost_after_days,
            watch_refund_share_bp: t.watch_refund_share_bp,
            high_refund_share_bp: t.high_refund_share_bp,
            min_refunds_for_share: t.min_refunds_for_share,
            watch_inr_delivered: t.watch_inr_delivered,
            high_inr_delivered: t.high_inr_delivered,
            ring_sharing: t.ring_sharing,
            trusted_cap_cents: None,
            watch_cap_cents: 3000,
            high_cap_cents: 1000,
            daily_cap_cents: None,
            monthly_cap_cents: None,
            time_zone: "UTC".into(),
            shared: SharedValues::default(),
        }
    }
}

/// The sweepable parameters of `[refund]`.
pub const REFUND_SWEEPABLE: [&str; 12] = [
    "damaged_share_bp",
    "lost_after_days",
    "watch_refund_share_bp",
    "high_refund_share_bp",
    "min_refunds_for_share",
    "watch_inr_delivered",
    "high_inr_delivered",
    "ring_sharing",
    "watch_cap_cents",
    "high_cap_cents",
    "daily_cap_cents",
    "monthly_cap_cents",
];

impl RefundSection {
    pub fn set(&mut self, name: &str, value: i64) -> Result<(), String> {
        let small = || u32::try_from(value).map_err(|_| format!("{name} must be 0..={}", u32::MAX));
        match name {
            "damaged_share_bp" => self.damaged_share_bp = small()?,
            "lost_after_days" => self.lost_after_days = small()?,
            "watch_refund_share_bp" => self.watch_refund_share_bp = small()?,
            "high_refund_share_bp" => self.high_refund_share_bp = small()?,
            "min_refunds_for_share" => self.min_refunds_for_share = small()?,
            "watch_inr_delivered" => self.watch_inr_delivered = small()?,
            "high_inr_delivered" => self.high_inr_delivered = small()?,
            "ring_sharing" => self.ring_sharing = small()?,
            "watch_cap_cents" => self.watch_cap_cents = value,
            "high_cap_cents" => self.high_cap_cents = value,
            "daily_cap_cents" => self.daily_cap_cents = Some(value),
            "monthly_cap_cents" => self.monthly_cap_cents = Some(value),
            other => return Err(format!("`{other}` cannot be swept; one of {}", REFUND_SWEEPABLE.join(", "))),
        }
        Ok(())
    }

    /// The brand's refund budget the replay books against (`None`: no cap
    /// set, none applied).
    pub fn budgets(&self) -> Result<Option<Budgets>, String> {
        let currency = Currency::parse(&self.currency).map_err(|e| format!("refund.currency: {e}"))?;
        let mut caps = Vec::new();
        for (window, cents) in [(Window::Daily, self.daily_cap_cents), (Window::Monthly, self.monthly_cap_cents)] {
            if let Some(c) = cents {
                if c < 0 {
                    return Err(format!("refund.{}_cap_cents must not be negative", window.as_str()));
                }
                caps.push(Cap::brand(Purpose::Refund, window, Money::new(c, currency)));
            }
        }
        if caps.is_empty() {
            return Ok(None);
        }
        let zone = Zone::parse(&self.time_zone).map_err(|e| format!("refund.time_zone: {e}"))?;
        Budgets::new(zone, caps).map(Some).map_err(|e| format!("refund budget: {e}"))
    }

    /// Core's refund config (the identity key is the backtest's own: the
    /// replay only compares hashes it made itself).
    pub fn config(&self) -> Result<RefundConfig, String> {
        let currency = Currency::parse(&self.currency).map_err(|e| format!("refund.currency: {e}"))?;
        if self.damaged_share_bp > 10_000 {
            return Err("refund.damaged_share_bp must be at most 10000 (100%)".into());
        }
        if self.watch_cap_cents < 0 || self.high_cap_cents < 0 || self.trusted_cap_cents.is_some_and(|c| c < 0) {
            return Err("refund: the tiers' caps must not be negative".into());
        }
        if self.high_refund_share_bp < self.watch_refund_share_bp || self.high_inr_delivered < self.watch_inr_delivered
        {
            return Err("refund: a high-risk threshold is below its watch threshold".into());
        }
        let unusable = self.shared.unusable();
        if !unusable.is_empty() {
            return Err(format!("refund.shared: {} is no key of its kind", unusable.join(", ")));
        }
        Ok(RefundConfig {
            every: Millis::from_secs(3600),
            policy: RefundPolicy { damaged_share_bp: self.damaged_share_bp, lost_after_days: self.lost_after_days },
            tiers: TierRules {
                watch_refund_share_bp: self.watch_refund_share_bp,
                high_refund_share_bp: self.high_refund_share_bp,
                min_refunds_for_share: self.min_refunds_for_share,
                watch_inr_delivered: self.watch_inr_delivered,
                high_inr_delivered: self.high_inr_delivered,
                ring_sharing: self.ring_sharing,
            },
            caps: TierCaps {
                currency,
                trusted: self.trusted_cap_cents,
                watch: self.watch_cap_cents,
                high: self.high_cap_cents,
            },
            identity_key: "dlft backtest".into(),
            shared: self.shared.clone(),
        })
    }
}

/// The kill loop's settings, as in a scenario's `[loop]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillSection {
    pub currency: String,
    pub kill_cpa_cents: i64,
    pub envelope_floor_cents: i64,
    pub maturation_s: u64,
    pub learning_s: u64,
    #[serde(default = "hour")]
    pub bucket_s: u64,
    #[serde(default = "hour")]
    pub tick_s: u64,
    #[serde(default = "week")]
    pub estimate_window_s: u64,
    #[serde(default = "fifty")]
    pub max_kill_share_pct: u32,
    #[serde(default)]
    pub kill_delay_s: u64,
}

fn hour() -> u64 {
    3600
}
fn week() -> u64 {
    7 * 86_400
}
fn fifty() -> u32 {
    50
}

/// The bandit's settings; anything left out takes core's defaults
/// ([`TsConfig::default`]), with the re-roll period in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BanditSection {
    pub prior_alpha: f64,
    pub prior_beta: f64,
    pub reroll_s: u64,
    pub mc_samples: u32,
    pub explore_floor: f64,
    pub seed: u64,
}

impl Default for BanditSection {
    fn default() -> Self {
        let ts = TsConfig::default();
        BanditSection {
            prior_alpha: ts.prior_alpha,
            prior_beta: ts.prior_beta,
            reroll_s: ts.reroll.0 / 1000,
            mc_samples: ts.mc_samples,
            explore_floor: ts.explore_floor,
            seed: 0,
        }
    }
}

impl BanditSection {
    pub fn ts_config(&self) -> TsConfig {
        TsConfig {
            prior_alpha: self.prior_alpha,
            prior_beta: self.prior_beta,
            reroll: Millis::from_secs(self.reroll_s),
            mc_samples: self.mc_samples,
            explore_floor: self.explore_floor,
        }
    }
}

/// The sweepable parameters of `[kill]`.
pub const SWEEPABLE: [&str; 6] =
    ["kill_cpa_cents", "envelope_floor_cents", "maturation_s", "learning_s", "max_kill_share_pct", "kill_delay_s"];

impl KillSection {
    pub fn set(&mut self, name: &str, value: i64) -> Result<(), String> {
        let unsigned = || u64::try_from(value).map_err(|_| format!("{name} must not be negative"));
        match name {
            "kill_cpa_cents" => self.kill_cpa_cents = value,
            "envelope_floor_cents" => self.envelope_floor_cents = value,
            "maturation_s" => self.maturation_s = unsigned()?,
            "learning_s" => self.learning_s = unsigned()?,
            "max_kill_share_pct" => self.max_kill_share_pct = u32::try_from(value).map_err(|e| e.to_string())?,
            "kill_delay_s" => self.kill_delay_s = unsigned()?,
            other => return Err(format!("`{other}` cannot be swept; one of {}", SWEEPABLE.join(", "))),
        }
        Ok(())
    }

    pub fn config(&self) -> Result<BacktestConfig, String> {
        let currency = Currency::parse(&self.currency).map_err(|e| format!("kill.currency: {e}"))?;
        if self.kill_cpa_cents <= 0 || self.envelope_floor_cents <= 0 {
            return Err("kill.kill_cpa_cents and kill.envelope_floor_cents must be positive".into());
        }
        if self.bucket_s == 0 || self.tick_s == 0 {
            return Err("kill.bucket_s and kill.tick_s must be positive".into());
        }
        if self.max_kill_share_pct == 0 || self.max_kill_share_pct > 100 {
            return Err("kill.max_kill_share_pct must be 1..=100".into());
        }
        Ok(BacktestConfig {
            estimator: EstimatorConfig {
                bucket: Millis::from_secs(self.bucket_s),
                maturation: Millis::from_secs(self.maturation_s),
                learning: Millis::from_secs(self.learning_s),
            },
            kill_rule: KillRule { kill_cpa: Money::new(self.kill_cpa_cents, currency) },
            envelope: EnvelopeConfig {
                kill_cpa_floor: Money::new(self.envelope_floor_cents, currency),
                max_attempts: 8,
                max_kill_share_pct: self.max_kill_share_pct,
            },
            tick_every: Millis::from_secs(self.tick_s),
            estimate_window: Millis::from_secs(self.estimate_window_s),
            kill_delay: Millis::from_secs(self.kill_delay_s),
        })
    }
}

pub fn load(path: &Path) -> Result<PolicyFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse(&text, path)
}

pub fn parse(text: &str, path: &Path) -> Result<PolicyFile, String> {
    let de = toml::Deserializer::parse(text).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: PolicyFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner().to_string();
        format!("{}: at `{}`: {}", path.display(), e.path(), inner.trim())
    })?;
    if let Some(k) = &file.kill {
        k.config().map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(r) = &file.refund {
        r.config().map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(b) = &file.bandit {
        b.ts_config().validate().map_err(|e| format!("{}: bandit: {e}", path.display()))?;
    }
    Ok(file)
}

/// `name=a..b:step` (inclusive of b) → (name, values), for `[kill]`.
pub fn parse_sweep(text: &str) -> Result<(String, Vec<i64>), String> {
    parse_sweep_of(text, &SWEEPABLE)
}

/// `name=a..b:step` (inclusive of b) → (name, values), `name` one of `sweepable`.
pub fn parse_sweep_of(text: &str, sweepable: &[&str]) -> Result<(String, Vec<i64>), String> {
    let bad = || format!("--sweep {text:?}: expected name=a..b:step, for example kill_cpa_cents=2000..8000:1000");
    let (name, range) = text.split_once('=').ok_or_else(bad)?;
    let (range, step) = range.split_once(':').ok_or_else(bad)?;
    let (a, b) = range.split_once("..").ok_or_else(bad)?;
    let (a, b, step): (i64, i64, i64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
        step.trim().parse().map_err(|_| bad())?,
    );
    if !sweepable.contains(&name) {
        return Err(format!("--sweep: `{name}` cannot be swept; one of {}", sweepable.join(", ")));
    }
    if step <= 0 || b < a {
        return Err(format!("--sweep {text:?}: need a <= b and a positive step"));
    }
    let values: Vec<i64> = (0..).map(|i| a + i * step).take_while(|v| *v <= b).collect();
    if values.len() > 1_000 {
        return Err(format!("--sweep {text:?}: {} values is too many (at most 1000)", values.len()));
    }
    Ok((name.to_string(), values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_parse_inclusively_and_refuse_nonsense() {
        assert_eq!(parse_sweep("kill_cpa_cents=2000..4000:1000").unwrap().1, vec![2000, 3000, 4000]);
        assert!(parse_sweep("kill_cpa_cents=4000..2000:1000").is_err());
        assert!(parse_sweep("kill_cpa_cents=2000..4000:0").is_err());
        assert!(parse_sweep("currency=1..2:1").unwrap_err().contains("cannot be swept"));
        assert!(parse_sweep("kill_cpa_cents=2000").is_err());
    }

    #[test]
    fn an_empty_bandit_section_is_cores_default() {
        let p = parse("[bandit]\n", Path::new("p.toml")).unwrap();
        assert_eq!(p.bandit.unwrap().ts_config(), TsConfig::default());
        let p = parse("[bandit]\nmc_samples = 7\n", Path::new("p.toml")).unwrap();
        assert_eq!(p.bandit.unwrap().ts_config().mc_samples, 7);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let p = Path::new("p.toml");
        let err = parse("[kill]\ncurrency = \"EUR\"\nkill_cpa = 5\n", p).unwrap_err();
        assert!(err.contains("p.toml") && err.contains("kill_cpa"), "{err}");
        let err = parse(
            "[kill]\ncurrency = \"EUR\"\nkill_cpa_cents = -5\nenvelope_floor_cents = 5\nmaturation_s = 1\nlearning_s = 1\n",
            p,
        )
        .unwrap_err();
        assert!(err.contains("must be positive"), "{err}");
        let err = parse("[bandit]\nexplore_floor = 1.5\n", p).unwrap_err();
        assert!(err.contains("explore_floor"), "{err}");
        let shared = parse("[refund.shared]\nphones = [\"+49 30 5550100\"]\n", p).unwrap();
        let cfg = shared.refund.unwrap().config().unwrap();
        assert_eq!(cfg.shared.phones, vec!["+49 30 5550100".to_string()]);
        let err = parse("[refund.shared]\ncards = [\"visa\"]\n", p).unwrap_err();
        assert!(err.contains("refund.shared: card \"visa\" is no key of its kind"), "{err}");
        let err = parse("[refund.shared]\nphone = []\n", p).unwrap_err();
        assert!(err.contains("refund.shared") && err.contains("phone"), "{err}");
    }
}
