//! The loop's configuration: what the sim's scenario files and the live
//! runner's config both build. Plain data with a validity check.

use serde::{Deserialize, Serialize};

use crate::envelope::EnvelopeConfig;
use crate::estimate::estimator::EstimatorConfig;
use crate::ids::{BrandId, WorkerId};
use crate::money::{Currency, Money};
use crate::propose::kill_rule::KillRule;
use crate::schedule::rules::RetryPolicy;
use crate::schedule::task::JobKind;
use crate::time::Millis;

pub use crate::probe::Sabotage;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopConfig {
    pub currency: Currency,
    pub estimator: EstimatorConfig,
    pub kill_rule: KillRule,
    pub envelope: EnvelopeConfig,
    /// How far back each tick re-reads insights (late conversions, missed ticks).
    pub insights_lookback: Millis,
    /// How far back the estimator reads the spend ledger.
    pub estimate_window: Millis,
    pub page_limit: u32,
    /// After a successful pause, a read-back still saying ACTIVE is re-read
    /// every `readback_poll` for this long before the kill pauses again.
    pub readback_confirm: Millis,
    pub readback_poll: Millis,
    /// A kill whose ad has not stopped itself this long after its intent
    /// escalates: its ad set is paused, then its campaign (`act::escalate`),
    /// and resumed once the ad is confirmed. `None`: no escalation.
    #[serde(default)]
    pub escalate_after: Option<Millis>,
    /// Competitor scans; `None` runs none.
    #[serde(default)]
    pub scan: Option<ScanConfig>,
    /// Supplier payouts; `None` pays nobody.
    #[serde(default)]
    pub payouts: Option<PayoutConfig>,
    /// Refunds of customers' claims; `None` refunds nobody.
    #[serde(default)]
    pub refunds: Option<RefundConfig>,
    /// The support inbox answered; `None` answers nobody.
    #[serde(default)]
    pub support: Option<SupportConfig>,
}

/// A brand's support inbox: where it is, how often it is read, the policy
/// and the gate's settings, and the text models in failover order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportConfig {
    /// How often the support job reads the inbox (schedule `support`).
    pub every: Millis,
    /// The inbox's id (AgentMail's `inbox_id`).
    pub inbox: String,
    /// The inbox's own address: messages from it are the brand's replies.
    pub address: String,
    pub policy: crate::propose::support::SupportPolicy,
    /// The text models, in failover order (at least one); a case tries the
    /// models of its tier first.
    pub deployments: Vec<crate::propose::router::Deployment>,
    /// How a case's tier is chosen (by value, risk and difficulty).
    #[serde(default)]
    pub tiers: crate::propose::router::TierRules,
    pub breaker: crate::propose::router::BreakerRules,
    /// Threads updated longer ago than this are not read again.
    pub lookback: Millis,
    /// The most a call may answer, in tokens: what its cost row books
    /// before the call, with the prompt's own estimate.
    pub max_output_tokens: u32,
    /// The store name the refunds of accepted offers carry.
    pub store: String,
    /// What the refund envelope lets each risk tier get back through an
    /// accepted offer (beside the offer itself and the order's refundable
    /// amount).
    pub refund_caps: crate::envelope::refund::TierCaps,
    /// How long a refund offer may be accepted.
    pub offer_valid: Millis,
}

/// A brand's refunds: how often its claims are reviewed, the policy that
/// proposes, the tiers and their caps, and the key its identity hashes are
/// made with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundConfig {
    /// How often the refund job reviews the claims (schedule `refunds`).
    pub every: Millis,
    pub policy: crate::propose::refund::RefundPolicy,
    pub tiers: crate::estimate::risk::TierRules,
    pub caps: crate::envelope::refund::TierCaps,
    /// The HMAC key of the identity graph's hashes (a secret: the sim's is
    /// fixed, production reads it from an env var).
    pub identity_key: String,
    /// Values many of the brand's customers carry that name none of them
    /// (the store's own phone, its warehouse): the graph drops them.
    #[serde(default)]
    pub shared: crate::estimate::identity::SharedValues,
}

/// A brand's supplier payouts: where the money leaves, whom it may go to,
/// and how often the payables are read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutConfig {
    /// The brand's bank account payouts leave from.
    pub from_account: String,
    /// The allow-list: the only payees, with their bank details on record.
    pub counterparties: Vec<crate::envelope::payout::Counterparty>,
    /// How often the payables job reads the source (schedule `payables`).
    pub every: Millis,
}

/// The store-scan pipeline's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanConfig {
    /// The stores' pages to scan, each on its own adaptive schedule `scan/{page}`.
    pub pages: Vec<String>,
    pub cadence: crate::estimate::cadence::CadenceConfig,
    /// The price of one model call, booked before the call.
    pub model_call: crate::money::Money,
}

/// One job kind's pool: its own claims, concurrency and hang limit, so that
/// a crash loop or a hang in one kind cannot starve another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolConfig {
    pub kind: JobKind,
    /// Jobs of this kind running at once in this worker.
    pub concurrency: u32,
    /// A job running longer than this is abandoned (and retried).
    pub job_timeout: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerConfig {
    pub worker: WorkerId,
    /// The brands this worker serves: it fires each brand's schedules and
    /// claims fairly across them. At least one.
    #[serde(default = "default_brands")]
    pub brands: Vec<BrandId>,
    /// How often each pool polls for work (the "per-second claim", finer in the sim).
    pub claim_poll: Millis,
    pub pools: Vec<PoolConfig>,
    pub lease_for: Millis,
    /// Period of the insights tick schedule.
    pub tick_every: Millis,
    /// Period of the bandit re-roll schedule (hourly in production).
    pub reroll_every: Millis,
    /// Wait after the store did not answer, before trying again.
    pub store_backoff: Millis,
    pub retry: RetryPolicy,
    #[serde(default)]
    pub sabotage: Sabotage,
    /// Where this worker runs, beaten into the store (production); `None`
    /// in the sim, whose workers are told apart by the scenario.
    #[serde(default)]
    pub presence: Option<PresenceConfig>,
    /// Each brand's schedules fire at their own offset within the period
    /// ([`crate::schedule::rules::slot_phase`]), not all at its start.
    #[serde(default)]
    pub spread_slots: bool,
}

/// One brand, [`BrandId::DEFAULT`]: a deployment that names none.
pub fn default_brands() -> Vec<BrandId> {
    vec![BrandId::default()]
}

/// A worker's presence: its host and process, and how often it beats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceConfig {
    pub host: String,
    pub pid: u32,
    pub every: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// The loop's settings as written in files: a scenario's `[loop]` and the
/// `[loop]` of `dlft run`'s config share this shape, and [`LoopSettings::loop_config`]
/// and [`LoopSettings::worker_config`] turn it into the configs the worker runs.
pub struct LoopSettings {
    pub kill_cpa_cents: i64,
    pub envelope_floor_cents: i64,
    #[serde(deserialize_with = "crate::time::de_secs")]
    pub maturation_s: u64,
    #[serde(deserialize_with = "crate::time::de_secs")]
    pub learning_s: u64,
    #[serde(deserialize_with = "crate::time::de_secs")]
    pub lookback_s: u64,
    pub max_attempts: u32,
    pub max_kill_share_pct: u32,
    #[serde(deserialize_with = "crate::time::de_ms")]
    pub claim_poll_ms: u64,
    #[serde(deserialize_with = "crate::time::de_ms")]
    pub lease_ms: u64,
    #[serde(deserialize_with = "crate::time::de_ms")]
    pub rpc_timeout_ms: u64,
    #[serde(deserialize_with = "crate::time::de_ms")]
    pub retry_base_ms: u64,
    #[serde(deserialize_with = "crate::time::de_ms")]
    pub retry_cap_ms: u64,
    pub retry_max_attempts: u32,
    /// No retry later than this after a job was created.
    #[serde(deserialize_with = "crate::time::de_secs")]
    pub retry_window_s: u64,
    /// Concurrency of the tick pool and of the kill pool.
    pub tick_concurrency: u32,
    pub kill_concurrency: u32,
    /// A job running longer than this is abandoned and retried.
    #[serde(deserialize_with = "crate::time::de_ms")]
    pub job_timeout_ms: u64,
    /// Read-back confirmation window and poll after a successful pause.
    #[serde(default = "readback_confirm_ms")]
    #[serde(deserialize_with = "crate::time::de_ms")]
    pub readback_confirm_ms: u64,
    #[serde(default = "readback_poll_ms")]
    #[serde(deserialize_with = "crate::time::de_ms")]
    pub readback_poll_ms: u64,
    /// Escalate a kill not confirmed this long after its intent (pause its
    /// ad set, then its campaign); a share of the kill deadline. None: never.
    #[serde(default)]
    #[serde(deserialize_with = "crate::time::de_opt_secs")]
    pub escalate_after_s: Option<u64>,
    /// Period of the insights tick (the per-minute tick; shorter against a fast sandbox).
    #[serde(default = "tick_s")]
    #[serde(deserialize_with = "crate::time::de_secs")]
    pub tick_s: u64,
    /// Period of the bandit re-roll (the per-hour re-roll; shorter in short scenarios).
    #[serde(default = "reroll_s")]
    #[serde(deserialize_with = "crate::time::de_secs")]
    pub reroll_s: u64,
    /// Fire each brand's schedules at an offset of their own within the
    /// period ([`crate::schedule::rules::slot_phase`]) rather than all at
    /// its start. Unset: on in `dlft run` (a thousand brands' ticks must not
    /// fall due in one second), off in scenarios (whose timings read as
    /// whole periods).
    #[serde(default)]
    pub spread_schedules: Option<bool>,
}

fn reroll_s() -> u64 {
    3_600
}

fn tick_s() -> u64 {
    60
}

fn readback_confirm_ms() -> u64 {
    10_000
}

fn readback_poll_ms() -> u64 {
    1_000
}

/// What the loop must know of the platform it talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformShape {
    pub currency: Currency,
    /// The insights bucket (an hour on Meta; shorter in the sim and sandbox).
    pub bucket: Millis,
    pub page_limit: u32,
}

impl LoopSettings {
    pub fn loop_config(
        &self,
        platform: &PlatformShape,
        estimate_window: Millis,
        scan: Option<ScanConfig>,
    ) -> LoopConfig {
        let cur = platform.currency;
        LoopConfig {
            currency: cur,
            estimator: EstimatorConfig {
                bucket: platform.bucket,
                maturation: Millis::from_secs(self.maturation_s),
                learning: Millis::from_secs(self.learning_s),
            },
            kill_rule: KillRule { kill_cpa: Money::new(self.kill_cpa_cents, cur) },
            envelope: EnvelopeConfig {
                kill_cpa_floor: Money::new(self.envelope_floor_cents, cur),
                max_attempts: self.max_attempts,
                max_kill_share_pct: self.max_kill_share_pct,
            },
            insights_lookback: Millis::from_secs(self.lookback_s),
            estimate_window,
            page_limit: platform.page_limit,
            readback_confirm: Millis(self.readback_confirm_ms),
            readback_poll: Millis(self.readback_poll_ms),
            escalate_after: self.escalate_after_s.map(Millis::from_secs),
            scan,
            payouts: None,
            refunds: None,
            support: None,
        }
    }

    pub fn worker_config(&self, worker: WorkerId, sabotage: Sabotage) -> WorkerConfig {
        WorkerConfig {
            worker,
            brands: default_brands(),
            claim_poll: Millis(self.claim_poll_ms),
            pools: vec![
                PoolConfig {
                    kind: JobKind::PollInsights,
                    concurrency: self.tick_concurrency,
                    job_timeout: Millis(self.job_timeout_ms),
                },
                PoolConfig {
                    kind: JobKind::KillAd,
                    concurrency: self.kill_concurrency,
                    job_timeout: Millis(self.job_timeout_ms),
                },
                PoolConfig { kind: JobKind::ScanStore, concurrency: 1, job_timeout: Millis(self.job_timeout_ms) },
                PoolConfig { kind: JobKind::RerollBandit, concurrency: 1, job_timeout: Millis(self.job_timeout_ms) },
                PoolConfig {
                    kind: JobKind::ReconcileAd,
                    concurrency: self.kill_concurrency,
                    job_timeout: Millis(self.job_timeout_ms),
                },
            ]
            .into_iter()
            .chain(self.escalate_after_s.map(|_| PoolConfig {
                kind: JobKind::Escalate,
                concurrency: self.kill_concurrency,
                job_timeout: Millis(self.job_timeout_ms),
            }))
            .collect(),
            spread_slots: self.spread_schedules.unwrap_or(false),
            lease_for: Millis(self.lease_ms),
            tick_every: Millis::from_secs(self.tick_s),
            reroll_every: Millis::from_secs(self.reroll_s),
            store_backoff: Millis(self.claim_poll_ms),
            retry: RetryPolicy {
                base: Millis(self.retry_base_ms),
                cap: Millis(self.retry_cap_ms),
                max_attempts: self.retry_max_attempts,
                window: Millis::from_secs(self.retry_window_s),
            },
            sabotage,
            presence: None,
        }
    }
}

/// Limits that hold between settings. Checked at start-up.
pub fn validate(w: &WorkerConfig, l: &LoopConfig) -> Result<(), String> {
    let mut errs = Vec::new();
    if w.lease_for.0 < 2 * w.claim_poll.0 {
        errs.push("lease_for must be at least twice claim_poll".to_string());
    }
    for p in &w.pools {
        if p.concurrency == 0 || p.concurrency > crate::store::CLAIM_LIMIT_MAX {
            errs.push(format!("pool {:?}: concurrency must be 1..={}", p.kind, crate::store::CLAIM_LIMIT_MAX));
        }
        if p.job_timeout.0 == 0 {
            errs.push(format!("pool {:?}: job_timeout must be positive", p.kind));
        }
    }
    for kind in JobKind::ALL {
        // Escalations run in their own pool, which exists only where a
        // kill escalates.
        if kind == JobKind::Escalate && l.escalate_after.is_none() {
            continue;
        }
        if w.pools.iter().filter(|p| p.kind.pool_kinds().contains(&kind)).count() != 1 {
            errs.push(format!("exactly one pool per job kind: {kind:?}"));
        }
    }
    if w.tick_every.0 == 0 || l.estimator.bucket.0 == 0 {
        errs.push("tick_every and bucket must be positive".to_string());
    }
    if w.reroll_every.0 < 1_000 {
        errs.push("the re-roll period (reroll_s) must be at least 1 s".to_string());
    }
    if l.insights_lookback.0 < l.estimator.bucket.0 {
        errs.push("insights_lookback must cover at least one bucket".to_string());
    }
    if l.readback_poll.0 == 0 || l.readback_confirm.0 > 10 * 60_000 {
        errs.push("readback_poll must be positive and readback_confirm at most 10 minutes".to_string());
    }
    if let Some(after) = l.escalate_after
        && (after.0 == 0 || after.0 > 24 * 3_600_000)
    {
        errs.push("escalate_after_s must be positive and at most a day".to_string());
    }
    if l.page_limit == 0 {
        errs.push("page_limit must be positive".to_string());
    }
    if let Some(s) = &l.support {
        if s.deployments.is_empty() {
            errs.push("support: at least one text model deployment".to_string());
        }
        if s.every.0 == 0 || s.lookback.0 == 0 || s.max_output_tokens == 0 {
            errs.push("support: every, lookback and max_output_tokens must be positive".to_string());
        }
        if s.inbox.is_empty() || !s.address.contains('@') {
            errs.push("support: an inbox id and its address".to_string());
        }
    }
    if l.kill_rule.kill_cpa.currency != l.currency || l.envelope.kill_cpa_floor.currency != l.currency {
        errs.push("kill thresholds must be in the loop's currency".to_string());
    }
    if l.kill_rule.kill_cpa.minor <= 0 || l.envelope.kill_cpa_floor.minor <= 0 {
        errs.push("kill thresholds must be positive".to_string());
    }
    if l.envelope.max_attempts == 0 || w.retry.max_attempts == 0 {
        errs.push("attempt caps must be positive".to_string());
    }
    if errs.is_empty() { Ok(()) } else { Err(errs.join("; ")) }
}
