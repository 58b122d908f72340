//! The model router's rules, pure (issue 15 part 2): which tier a case
//! gets, what a call costs, and when a deployment (vendor, model) is taken
//! out of rotation and put back. The async shell that calls vendors and
//! keeps the breakers where every worker sees them is built on these.
//!
//! Anchors (support-and-models.md): retry, fallback and cooldown are
//! separate; errors are classified before they count (a rate limit waits
//! and does not trip; an overload, a timeout or a 5xx counts toward the
//! failure rate; bad credentials trip at once; an exhausted spend limit
//! trips for hours and is never retried; a content refusal does not trip,
//! its proposal is dropped); a breaker trips when more than half of at
//! least `min_calls` calls in a window failed, cools down at least 30 s,
//! then lets one probe through before it closes; when every deployment of
//! a tier is open for failures, the breakers are bypassed (never for a
//! spend limit or bad credentials).

use serde::{Deserialize, Serialize};

use crate::estimate::risk::RiskTier;
use crate::money::{Currency, Money};
use crate::sense::models::ModelError;
use crate::time::{Millis, Timestamp};

/// How much model a case deserves.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Small, cheap (e.g. Haiku): routine questions of trusted customers.
    Fast,
    /// Mid (e.g. Sonnet): money on the table, long or unclear messages.
    Standard,
    /// Large (e.g. Opus): high value, high risk, or manipulation signals.
    Careful,
}

/// What the router knows of a case before any model reads it (all from
/// code: the order, the profile, the scanners).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseSignals {
    pub order_value: Money,
    pub tier: RiskTier,
    /// Manipulation signals were seen.
    pub flagged: bool,
    pub message_chars: usize,
    /// The message is in none of the seven languages.
    pub unsupported_language: bool,
}

/// The thresholds of [`choose_tier`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierRules {
    /// From this order value (minor units) a case is `Standard`.
    pub standard_from_minor: i64,
    /// From this order value a case is `Careful`.
    pub careful_from_minor: i64,
    /// Messages longer than this are `Standard` at least.
    pub long_message_chars: usize,
}

impl Default for TierRules {
    fn default() -> Self {
        TierRules { standard_from_minor: 5_000, careful_from_minor: 50_000, long_message_chars: 1_500 }
    }
}

/// The tier of a case: by value, risk and difficulty.
pub fn choose_tier(case: &CaseSignals, rules: &TierRules) -> Tier {
    let value = case.order_value.minor;
    if case.flagged || matches!(case.tier, RiskTier::High | RiskTier::Blocked) || value >= rules.careful_from_minor {
        Tier::Careful
    } else if value >= rules.standard_from_minor
        || case.tier == RiskTier::Watch
        || case.message_chars > rules.long_message_chars
        || case.unsupported_language
    {
        Tier::Standard
    } else {
        Tier::Fast
    }
}

/// One model at one vendor, with its price.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Deployment {
    pub vendor: String,
    pub model: String,
    /// Price per million input tokens, in minor units of `currency`.
    pub input_per_mtok: i64,
    /// Price per million output tokens.
    pub output_per_mtok: i64,
    pub currency: Currency,
    /// The tier of cases it serves first (`None`: every tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
}

impl Deployment {
    /// The cost of a call, rounded up to the minor unit (a bill is never
    /// under-booked).
    pub fn cost(&self, input_tokens: u32, output_tokens: u32) -> Money {
        let micro = i128::from(input_tokens) * i128::from(self.input_per_mtok)
            + i128::from(output_tokens) * i128::from(self.output_per_mtok);
        let minor = (micro + 999_999) / 1_000_000;
        Money::new(i64::try_from(minor).unwrap_or(i64::MAX), self.currency)
    }

    /// The breaker's key.
    pub fn key(&self) -> (String, String) {
        (self.vendor.clone(), self.model.clone())
    }
}

/// The failover order for a case of `tier`: the deployments of that tier
/// (or of none) first, in their configured order, then the rest (a model
/// of another tier beats none; the gate judges every answer alike).
pub fn tier_order(deployments: &[Deployment], tier: Tier) -> Vec<Deployment> {
    let serves = |d: &&Deployment| d.tier.is_none_or(|t| t == tier);
    let first = deployments.iter().filter(serves);
    let rest = deployments.iter().filter(|d| !serves(d));
    first.chain(rest).cloned().collect()
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Fast => "fast",
            Tier::Standard => "standard",
            Tier::Careful => "careful",
        }
    }
}

/// How a call ended, as the breaker counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallClass {
    Ok,
    /// Wait as told; the deployment is not failing.
    RateLimited(Millis),
    /// Overload, timeout, 5xx: counts toward the failure rate.
    Failure,
    /// Bad credentials: trip at once.
    Auth,
    /// Spend limit or credits exhausted: trip for hours, never retry.
    SpendLimit,
    /// The model refused the content: no trip; the proposal is dropped.
    Refusal,
}

impl CallClass {
    pub fn of(result: &Result<(), ModelError>) -> CallClass {
        match result {
            Ok(()) => CallClass::Ok,
            Err(ModelError::RateLimited { retry_after }) => CallClass::RateLimited(*retry_after),
            Err(ModelError::Timeout | ModelError::Overloaded) => CallClass::Failure,
            Err(ModelError::Auth(_)) => CallClass::Auth,
            Err(ModelError::SpendLimit(_)) => CallClass::SpendLimit,
            Err(ModelError::Refused(_)) => CallClass::Refusal,
        }
    }
}

/// The breaker's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerRules {
    pub window: Millis,
    pub min_calls: u32,
    /// How long a tripped breaker stays open (at least 30 s).
    pub cooldown: Millis,
    pub auth_open: Millis,
    pub spend_open: Millis,
}

impl Default for BreakerRules {
    fn default() -> Self {
        BreakerRules {
            window: Millis::from_secs(60),
            min_calls: 5,
            cooldown: Millis::from_secs(30),
            auth_open: Millis::from_secs(3_600),
            spend_open: Millis::from_secs(6 * 3_600),
        }
    }
}

/// Why a breaker is open.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenFor {
    Failures,
    Auth,
    SpendLimit,
}

/// One deployment's breaker (serialisable: the store keeps it so every
/// worker agrees).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Breaker {
    Closed {
        window_start: Timestamp,
        calls: u32,
        failures: u32,
        /// A rate limit's wait: no call before it.
        #[serde(default)]
        cool_until: Option<Timestamp>,
    },
    Open {
        until: Timestamp,
        why: OpenFor,
    },
    /// Cooled down: one probe call may go; `probing` once it went.
    HalfOpen {
        probing: bool,
    },
}

impl Breaker {
    /// The state's name, for event rows: `closed`, `open`, `half_open`.
    pub fn state(&self) -> &'static str {
        match self {
            Breaker::Closed { .. } => "closed",
            Breaker::Open { .. } => "open",
            Breaker::HalfOpen { .. } => "half_open",
        }
    }

    pub fn closed(now: Timestamp) -> Breaker {
        Breaker::Closed { window_start: now, calls: 0, failures: 0, cool_until: None }
    }

    /// The breaker as of `now` (an open one whose time is up is half open).
    pub fn at(&self, now: Timestamp) -> Breaker {
        match self {
            Breaker::Open { until, .. } if now >= *until => Breaker::HalfOpen { probing: false },
            other => other.clone(),
        }
    }

    /// Whether a call may go now, and whether it is the half-open probe.
    pub fn admits(&self, now: Timestamp) -> Option<bool> {
        match self.at(now) {
            Breaker::Closed { cool_until: Some(t), .. } if now < t => None,
            Breaker::Closed { .. } => Some(false),
            Breaker::HalfOpen { probing: false } => Some(true),
            Breaker::HalfOpen { probing: true } | Breaker::Open { .. } => None,
        }
    }

    /// The breaker once its probe went out.
    pub fn probe_sent(&self, now: Timestamp) -> Breaker {
        match self.at(now) {
            Breaker::HalfOpen { .. } => Breaker::HalfOpen { probing: true },
            other => other,
        }
    }

    /// The breaker after a call that ended as `class`.
    pub fn after(&self, class: &CallClass, now: Timestamp, rules: &BreakerRules) -> Breaker {
        let open = |why: OpenFor, for_: Millis| Breaker::Open { until: now + for_, why };
        match class {
            CallClass::Auth => return open(OpenFor::Auth, rules.auth_open),
            CallClass::SpendLimit => return open(OpenFor::SpendLimit, rules.spend_open),
            _ => {}
        }
        match self.at(now) {
            Breaker::HalfOpen { .. } => match class {
                CallClass::Failure => open(OpenFor::Failures, rules.cooldown.max(Millis::from_secs(30))),
                _ => Breaker::closed(now),
            },
            Breaker::Open { until, why } => Breaker::Open { until, why },
            Breaker::Closed { window_start, calls, failures, cool_until } => {
                let (mut calls, mut failures, window_start) =
                    if now.since(window_start) >= rules.window { (0, 0, now) } else { (calls, failures, window_start) };
                let mut cool_until = cool_until.filter(|t| now < *t);
                match class {
                    CallClass::RateLimited(wait) => cool_until = Some(now + *wait),
                    CallClass::Failure => {
                        calls += 1;
                        failures += 1;
                    }
                    _ => calls += 1,
                }
                if calls >= rules.min_calls && failures * 2 > calls {
                    open(OpenFor::Failures, rules.cooldown.max(Millis::from_secs(30)))
                } else {
                    Breaker::Closed { window_start, calls, failures, cool_until }
                }
            }
        }
    }
}

/// The deployments a call of `tier` may try now, in failover order: those
/// whose breakers admit a call. When none does and every one is open only
/// for failures (or cooling after a rate limit), the breakers are bypassed
/// and all are returned (a degraded vendor beats none); deployments open
/// for a spend limit or bad credentials are never tried.
pub fn route<'a>(
    order: &'a [Deployment],
    breaker_of: impl Fn(&Deployment) -> Option<&'a Breaker>,
    now: Timestamp,
) -> Vec<&'a Deployment> {
    let usable: Vec<&Deployment> = order
        .iter()
        .filter(|d| {
            !matches!(
                breaker_of(d).map(|b| b.at(now)),
                Some(Breaker::Open { why: OpenFor::Auth | OpenFor::SpendLimit, .. })
            )
        })
        .collect();
    let admitted: Vec<&Deployment> =
        usable.iter().copied().filter(|d| breaker_of(d).is_none_or(|b| b.admits(now).is_some())).collect();
    if admitted.is_empty() { usable } else { admitted }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::EUR)
    }

    fn case(value: i64, tier: RiskTier) -> CaseSignals {
        CaseSignals { order_value: eur(value), tier, flagged: false, message_chars: 200, unsupported_language: false }
    }

    #[test]
    fn a_case_tries_its_tiers_models_first_then_the_rest() {
        let tiered = |model: &str, tier: Option<Tier>| Deployment { tier, ..dep("anthropic", model) };
        let all = vec![
            tiered("haiku", Some(Tier::Fast)),
            tiered("opus", Some(Tier::Careful)),
            tiered("any", None),
            tiered("sonnet", Some(Tier::Standard)),
        ];
        let names = |t: Tier| tier_order(&all, t).into_iter().map(|d| d.model).collect::<Vec<_>>();
        assert_eq!(names(Tier::Careful), ["opus", "any", "haiku", "sonnet"]);
        assert_eq!(names(Tier::Fast), ["haiku", "any", "opus", "sonnet"]);
        assert_eq!(names(Tier::Standard), ["any", "sonnet", "haiku", "opus"]);
    }

    fn dep(vendor: &str, model: &str) -> Deployment {
        Deployment {
            tier: None,
            vendor: vendor.into(),
            model: model.into(),
            input_per_mtok: 300,
            output_per_mtok: 1_500,
            currency: Currency::USD,
        }
    }

    #[test]
    fn tiers_follow_value_risk_and_difficulty() {
        let r = TierRules::default();
        assert_eq!(choose_tier(&case(4_990, RiskTier::Trusted), &r), Tier::Fast);
        assert_eq!(choose_tier(&case(7_900, RiskTier::Trusted), &r), Tier::Standard);
        assert_eq!(choose_tier(&case(4_990, RiskTier::Watch), &r), Tier::Standard);
        assert_eq!(choose_tier(&case(60_000, RiskTier::Trusted), &r), Tier::Careful);
        assert_eq!(choose_tier(&case(1_000, RiskTier::High), &r), Tier::Careful);
        assert_eq!(choose_tier(&CaseSignals { flagged: true, ..case(1_000, RiskTier::Trusted) }, &r), Tier::Careful);
        assert_eq!(
            choose_tier(&CaseSignals { message_chars: 3_000, ..case(1_000, RiskTier::Trusted) }, &r),
            Tier::Standard
        );
    }

    #[test]
    fn a_call_costs_its_tokens_rounded_up() {
        let d = dep("anthropic", "sonnet");
        // 412 in × 300 + 38 out × 1500 = 180,600 micro-cents → 1 cent.
        assert_eq!(d.cost(412, 38), Money::new(1, Currency::USD));
        assert_eq!(d.cost(0, 0), Money::new(0, Currency::USD));
        assert_eq!(d.cost(1_000_000, 1_000_000), Money::new(1_800, Currency::USD));
    }

    #[test]
    fn a_breaker_trips_on_a_failing_majority_cools_down_and_probes_once() {
        let rules = BreakerRules::default();
        let t0 = Timestamp(1_000_000);
        let mut b = Breaker::closed(t0);
        for (i, class) in [CallClass::Ok, CallClass::Failure, CallClass::Ok, CallClass::Failure].iter().enumerate() {
            b = b.after(class, t0 + Millis(i as u64), &rules);
        }
        assert!(matches!(b, Breaker::Closed { calls: 4, failures: 2, .. }), "half is not more than half: {b:?}");
        b = b.after(&CallClass::Failure, t0 + Millis(10), &rules);
        assert!(matches!(b, Breaker::Open { why: OpenFor::Failures, .. }), "3 of 5 failed: {b:?}");
        assert_eq!(b.admits(t0 + Millis::from_secs(29)), None, "cooling down");
        let t1 = t0 + Millis::from_secs(31);
        assert_eq!(b.admits(t1), Some(true), "one probe");
        b = b.probe_sent(t1);
        assert_eq!(b.admits(t1), None, "only one");
        let again = b.after(&CallClass::Failure, t1, &rules);
        assert!(matches!(again, Breaker::Open { .. }), "a failed probe opens it again");
        let closed = b.after(&CallClass::Ok, t1, &rules);
        assert_eq!(closed.admits(t1), Some(false), "a good probe closes it");
    }

    #[test]
    fn errors_are_classified_before_they_count() {
        let rules = BreakerRules::default();
        let t0 = Timestamp(0);
        let mut b = Breaker::closed(t0);
        for _ in 0..10 {
            b = b.after(&CallClass::RateLimited(Millis(2_000)), t0, &rules);
        }
        assert!(matches!(b, Breaker::Closed { calls: 0, .. }), "rate limits do not trip: {b:?}");
        assert_eq!(b.admits(t0 + Millis(1_000)), None, "but the wait is honoured");
        assert_eq!(b.admits(t0 + Millis(2_000)), Some(false));
        for _ in 0..10 {
            b = b.after(&CallClass::Refusal, t0, &rules);
        }
        assert!(matches!(b, Breaker::Closed { failures: 0, .. }), "refusals do not trip");
        let auth = Breaker::closed(t0).after(&CallClass::Auth, t0, &rules);
        assert!(matches!(auth, Breaker::Open { why: OpenFor::Auth, .. }), "bad credentials trip at once");
        let spent = Breaker::closed(t0).after(&CallClass::SpendLimit, t0, &rules);
        assert_eq!(spent.admits(t0 + Millis::from_secs(5 * 3_600)), None, "a spend limit holds for hours");
        assert_eq!(
            CallClass::of(&Err(ModelError::SpendLimit("enforced spend limit reached".into()))),
            CallClass::SpendLimit
        );
    }

    #[test]
    fn routing_fails_over_and_bypasses_only_breakers_open_for_failures() {
        let t0 = Timestamp(0);
        let rules = BreakerRules::default();
        let order = vec![dep("anthropic", "sonnet"), dep("gemini", "flash")];
        let failing = (0..5).fold(Breaker::closed(t0), |b, _| b.after(&CallClass::Failure, t0, &rules));
        let spent = Breaker::closed(t0).after(&CallClass::SpendLimit, t0, &rules);
        let names = |v: Vec<&Deployment>| v.iter().map(|d| d.vendor.clone()).collect::<Vec<_>>();
        assert_eq!(names(route(&order, |_| None, t0)), vec!["anthropic", "gemini"]);
        let first_down = |d: &Deployment| (d.vendor == "anthropic").then_some(&failing);
        assert_eq!(names(route(&order, first_down, t0)), vec!["gemini"], "fail over");
        assert_eq!(names(route(&order, |_| Some(&failing), t0)), vec!["anthropic", "gemini"], "all down: bypass");
        let first_spent = |d: &Deployment| if d.vendor == "anthropic" { Some(&spent) } else { Some(&failing) };
        assert_eq!(names(route(&order, first_spent, t0)), vec!["gemini"], "never bypass a spend limit");
        assert!(route(&order, |_| Some(&spent), t0).is_empty(), "every vendor out of money: no call");
    }
}
