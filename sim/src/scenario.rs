//! Scenario files: the world, the platform's misbehaviour, the loop's
//! settings, the fault schedule's parameters and the assertions, in TOML.
//!
//! Loading is strict: unknown fields are refused, and every error names the
//! file, the line and the field.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use dlft_core::config::{LoopConfig, Sabotage, WorkerConfig};
use dlft_core::ids::WorkerId;
use dlft_core::money::{Currency, Money};
use dlft_core::time::Millis;

/// An inclusive integer range written `[lo, hi]`; a value is drawn from it per seed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "[u64; 2]", into = "[u64; 2]")]
pub struct Range {
    pub lo: u64,
    pub hi: u64,
}

impl TryFrom<[u64; 2]> for Range {
    type Error = String;
    fn try_from([lo, hi]: [u64; 2]) -> Result<Range, String> {
        if lo > hi {
            return Err(format!("range [{lo}, {hi}] is reversed: write [low, high]"));
        }
        Ok(Range { lo, hi })
    }
}

impl From<Range> for [u64; 2] {
    fn from(r: Range) -> [u64; 2] {
        [r.lo, r.hi]
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub run: RunSection,
    pub world: WorldSection,
    pub platform: PlatformSection,
    #[serde(rename = "loop")]
    pub control: LoopSection,
    pub faults: FaultSection,
    /// Competitor store scans (the checkpointed pipeline); absent: none.
    #[serde(default)]
    pub scan: Option<ScanSection>,
    /// Status webhooks from the platform to the workers; absent: none.
    #[serde(default)]
    pub webhooks: Option<WebhookSection>,
    /// Several brands, each on its own ad account in the one world; absent:
    /// one brand, `default`, on the world's one account.
    #[serde(default)]
    pub brands: Option<BrandsSection>,
    /// Supplier payouts: each brand's payables, its bank (Revolut's
    /// semantics and misbehaviour) and its budgets; absent: no payouts.
    #[serde(default)]
    pub bank: Option<BankSection>,
    /// Refunds: each brand's stores, customers and their claims, the
    /// shop's misbehaviour and the refund budgets; absent: no refunds.
    #[serde(default)]
    pub shop: Option<ShopSection>,
    /// The support inbox: each brand's customers writing (benign and
    /// hostile, in seven languages), the inbox's misbehaviour and the text
    /// model vendors; absent: no support.
    #[serde(default)]
    pub support: Option<SupportSection>,
    #[serde(rename = "assert")]
    pub assertions: AssertSection,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSection {
    pub pages: u32,
    /// New library ads per simulated day, drawn per page.
    pub new_ads_per_day: Range,
    /// Cadence tiers (periods) and their score thresholds; scaled down in the sim.
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub half_life_s: u64,
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub daily_s: u64,
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub three_day_s: u64,
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub weekly_s: u64,
    pub daily_at: u64,
    pub three_day_at: u64,
    pub model_call_cents: i64,
    /// The 1-based page whose scan kills the worker every time, right after
    /// its paid model call (a deterministic crash loop).
    #[serde(default)]
    pub crash_loop_page: Option<u32>,
}

/// Status webhooks, and how they lie. Every pause that takes effect sends a
/// true `PAUSED` webhook to one of the workers (round robin); the rest are lies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// Delivery delay of each webhook, drawn per webhook: a wide range reorders them.
    pub delay_ms: Range,
    /// Webhooks delivered a second time (after their own delay).
    pub duplicate_pct: u32,
    /// Pauses acknowledged without effect that are also "confirmed" by a false `PAUSED` webhook.
    pub lie_on_ack_pct: u32,
    /// False webhooks per simulated minute: a random ad, a random status.
    pub false_per_min: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// `turmoil` (simulated TCP in fixed ticks: socket-level fidelity) or
    /// `event` (in-process links, virtual time jumps to the next timer: long
    /// horizons and many seeds). Both inject every fault in the file.
    #[serde(default)]
    pub driver: Driver,
    /// Worker processes racing for the same jobs.
    #[serde(default = "one")]
    pub workers: u32,
    /// Simulated length of one seed's run.
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub duration_s: u64,
    /// Faults stop this long before the end: the liveness phase, in which the
    /// system must converge.
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub heal_s: u64,
    /// turmoil's fixed tick.
    #[serde(deserialize_with = "dlft_core::time::de_ms")]
    pub tick_ms: u64,
    /// When virtual time starts (an ISO-8601 instant in UTC); absent:
    /// 2026-01-01T00:00:00Z. Calendar windows (days, months, a DST change
    /// in a brand's time zone) fall where this puts them.
    #[serde(default)]
    pub start: Option<String>,
    /// Per-message network latency.
    pub net_latency_ms: Range,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldSection {
    pub ads: u32,
    pub loser_pct: u32,
    pub currency: String,
    pub spend_cents_per_min: Range,
    pub winner_cpa_cents: Range,
    pub loser_cpa_cents: Range,
    pub order_value_cents: Range,
    /// Attribution lag of each purchase.
    pub purchase_delay_s: Range,
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub bucket_s: u64,
    /// Ads per ad set and ad sets per campaign (Meta's hierarchy, where a
    /// kill escalates), within each brand's account.
    #[serde(default = "ads_per_adset")]
    pub ads_per_adset: u32,
    #[serde(default = "adsets_per_campaign")]
    pub adsets_per_campaign: u32,
}

fn ads_per_adset() -> u32 {
    4
}

fn adsets_per_campaign() -> u32 {
    3
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSection {
    pub latency_ms: Range,
    /// Requests that get no reply at all (the client times out).
    pub timeout_pct: u32,
    /// Share of timed-out pause calls that took effect anyway.
    pub timeout_applied_pct: u32,
    /// Requests refused with Graph error 17 (user request limit).
    pub rate_limit_pct: u32,
    /// Pause calls answered `{"success": true}` that did not take effect.
    pub ack_without_effect_pct: u32,
    /// Status read-backs show the ad as it was this long ago (eventual consistency).
    #[serde(default)]
    #[serde(deserialize_with = "dlft_core::time::de_ms")]
    pub stale_read_ms: u64,
    /// Batch pauses the platform carries out only in part: each item of such
    /// a batch is paused or not, and reported truly, as `null` (did not
    /// complete) or, if `ack_without_effect_pct` says so, as a success.
    #[serde(default)]
    pub partial_batch_pct: u32,
    pub page_limit: u32,
}

/// The loop's settings: shared with `dlft run`'s config file (core owns the shape).
pub use dlft_core::config::LoopSettings as LoopSection;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSection {
    /// Container losses at instants drawn uniformly from the fault phase.
    pub crashes: Range,
    /// Container losses at probe sites (between the phases of a kill, mid-paging, …).
    pub site_crashes: Range,
    /// How long a lost container takes to come back.
    pub restart_delay_ms: Range,
    /// Partitions worker↔database.
    pub db_partitions: Range,
    /// Partitions worker↔ads platform.
    pub ads_partitions: Range,
    pub partition_ms: Range,
    /// Windows in which the platform times out `storm_timeout_pct` of requests.
    pub timeout_storms: Range,
    pub storm_s: Range,
    pub storm_timeout_pct: u32,
    /// Share of partitions that cut one direction only (worker → peer, or back).
    #[serde(default)]
    pub oneway_partition_pct: u32,
    /// Swarm testing: each seed draws its own platform fault rates, each
    /// uniformly from 0 to the `[platform]` rate, and prints them with its plan.
    #[serde(default)]
    pub swarm: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertSection {
    pub mttr_p99_ms_max: u64,
    pub leak_cents_max: i64,
    /// After a kill intent is written, the ad must stop spending within this.
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub kill_deadline_s: u64,
    /// The bad path must be exercised: on average at least this many kills per seed.
    pub min_mean_kills: u64,
    /// Every seed must end with the crash-looping page's schedule disabled by the breaker.
    #[serde(default)]
    pub breaker_trips: bool,
    /// Model spend per seed at most (the budget a crash loop may burn).
    #[serde(default)]
    pub model_cents_per_seed_max: Option<i64>,
    /// Reconciliation window: every pause that took effect is committed in
    /// the store within this long (judged for pauses this long before the end).
    #[serde(default)]
    #[serde(deserialize_with = "dlft_core::time::de_opt_secs")]
    pub commit_within_s: Option<u64>,
    /// Payouts committed per seed on average, at least (scenarios with a bank).
    #[serde(default)]
    pub min_mean_payouts: Option<u64>,
    /// In every seed, payouts reserved in at least this many days of the
    /// brand's calendar (a cap that rolls over lets them resume).
    #[serde(default)]
    pub min_payout_days: Option<u64>,
    /// Refunds committed per seed on average, at least (scenarios with a shop).
    #[serde(default)]
    pub min_mean_refunds: Option<u64>,
    /// Ring claims refunded before the profile caught the ring, per seed at
    /// most (scenarios with a ring).
    #[serde(default)]
    pub ring_refunds_max: Option<u32>,
    /// Support replies committed per seed on average, at least (scenarios
    /// with an inbox).
    #[serde(default)]
    pub min_mean_replies: Option<u64>,
}

/// The brands of a run: the world's ads are dealt to them in turn (ad `i`
/// is brand `i mod n`'s), every worker serves them all, each through its own
/// account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandsSection {
    pub ids: Vec<String>,
    /// Brands whose account lost its access for the whole run (a revoked
    /// token: the platform answers their insights with Graph error 190).
    /// The loop cannot see or act on their ads: the checker leaves those ads
    /// out, and every other brand must be unharmed.
    #[serde(default)]
    pub revoked: Vec<String>,
    /// A brand whose every insights tick crashes the worker right after
    /// reading its page (a poison input: every worker serving it dies). The
    /// circuit breaker must disable that brand's tick schedule, and only
    /// that; the checker leaves its ads out (nothing acts on them once the
    /// breaker is open), and every other brand must be unharmed.
    #[serde(default)]
    pub crash_loop: Option<String>,
}

/// Payables arriving as files, the bank that pays them, and the caps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankSection {
    /// Counterparties on every brand's allow-list (`cp-1`…).
    pub counterparties: u32,
    /// Payables files per simulated hour per brand (drawn per seed).
    pub files_per_hour: Range,
    pub invoices_per_file: Range,
    pub amount_cents: Range,
    /// Invoices naming a counterparty off the allow-list.
    #[serde(default)]
    pub stranger_pct: u32,
    /// Invoices naming other bank details for a known counterparty.
    #[serde(default)]
    pub changed_details_pct: u32,
    /// Files delivered a second time (a copy under another name).
    #[serde(default)]
    pub duplicate_file_pct: u32,
    /// Files seen half-written for their first `half_written_ms`.
    #[serde(default)]
    pub half_written_pct: u32,
    #[serde(default)]
    #[serde(deserialize_with = "dlft_core::time::de_ms")]
    pub half_written_ms: u64,
    /// Files with a bad row (refused whole).
    #[serde(default)]
    pub malformed_file_pct: u32,
    /// How often each brand's payables job runs.
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub payables_every_s: u64,
    /// The bank's per-request latency.
    pub latency_ms: Range,
    #[serde(deserialize_with = "dlft_core::time::de_ms")]
    pub to_pending_ms: u64,
    #[serde(deserialize_with = "dlft_core::time::de_ms")]
    pub to_settled_ms: u64,
    #[serde(default)]
    pub decline_pct: u32,
    #[serde(default)]
    pub revert_pct: u32,
    #[serde(default)]
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub revert_after_s: u64,
    /// Payments made whose reply is lost (the caller times out).
    #[serde(default)]
    pub lost_reply_pct: u32,
    /// Requests lost before the bank saw them.
    #[serde(default)]
    pub timeout_pct: u32,
    /// 429 with Retry-After (not made).
    #[serde(default)]
    pub rate_limit_pct: u32,
    /// 5xx: half of them after the payment was made.
    #[serde(default)]
    pub server_error_pct: u32,
    /// Every brand's budgets: its time zone and payout caps.
    pub time_zone: String,
    #[serde(default)]
    pub daily_cap_cents: Option<i64>,
    #[serde(default)]
    pub monthly_cap_cents: Option<i64>,
    #[serde(default)]
    pub lifetime_cap_cents: Option<i64>,
    /// A daily cap on each counterparty of the allow-list, beside the
    /// brand's caps.
    #[serde(default)]
    pub counterparty_daily_cap_cents: Option<i64>,
}

/// The support inbox (issue 15): customers write to each brand's inbox in
/// seven languages, some of them hostile (the lines of
/// `corpora/support/`); the inbox (AgentMail's semantics: no idempotency
/// key) loses replies, times out, answers 5xx and rate limits; the text
/// model vendors answer honestly or as fully compromised, and may be down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportSection {
    /// How often each brand's support job reads its inbox.
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub review_every_s: u64,
    /// Messages per simulated hour per brand (drawn per seed).
    pub messages_per_hour: Range,
    /// Messages drawn from the hostile corpus (the rest from the benign).
    pub hostile_pct: u32,
    /// Messages written into one of the customer's earlier threads.
    #[serde(default)]
    pub follow_up_pct: u32,
    /// The inbox's per-request latency.
    pub latency_ms: Range,
    /// Sends carried out whose reply is lost.
    #[serde(default)]
    pub lost_reply_pct: u32,
    /// Requests lost before the inbox saw them.
    #[serde(default)]
    pub timeout_pct: u32,
    #[serde(default)]
    pub rate_limit_pct: u32,
    /// 5xx: half of the sends among them after the reply was sent.
    #[serde(default)]
    pub server_error_pct: u32,
    /// The vendors' latency as a share of the sim vendor's assumed
    /// distribution (p50 ≈ 900 ms at 100).
    pub model_latency_pct: u64,
    /// The text models, in the loop's failover order.
    pub vendors: Vec<VendorSection>,
    /// Threads not updated for this long are not read again.
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub lookback_s: u64,
    /// The breakers' failure window and the calls it needs before it may
    /// trip (defaults: the router's, 60 s and 5; a small inbox needs a
    /// longer window to see enough calls).
    #[serde(default)]
    #[serde(deserialize_with = "dlft_core::time::de_opt_secs")]
    pub breaker_window_s: Option<u64>,
    #[serde(default)]
    pub breaker_min_calls: Option<u32>,
    /// Each brand's daily `model` cap: every call is charged to it, at the
    /// most it can cost, before it is made (required: budgets fail closed).
    pub model_daily_cap_cents: i64,
    /// Replies offering an amount that the customer accepts with a plain
    /// yes, 30 s to 4 min later (the refund then goes through the refund
    /// envelope and actuator, against the support world's shop).
    #[serde(default)]
    pub accept_pct: u32,
    /// Each brand's daily `refund` cap for accepted offers (absent: no
    /// refund cap, so every accepted offer is refused by the ledger; a
    /// [shop] section's cap takes its place).
    #[serde(default)]
    pub refund_daily_cap_cents: Option<i64>,
}

/// One text model vendor of the sim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorSection {
    /// `anthropic` or `gemini` (any name: the sim's vendors are alike).
    pub vendor: String,
    pub model: String,
    /// `honest` or `compromised`.
    pub behaviour: String,
    /// Price per million tokens, in cents.
    pub input_per_mtok_cents: i64,
    pub output_per_mtok_cents: i64,
    /// Windows, in seconds from the start, in which the vendor answers
    /// every call "overloaded".
    #[serde(default)]
    pub down_s: Vec<Range>,
    /// The tier of cases it serves first (`fast`, `standard`, `careful`);
    /// absent: every tier.
    #[serde(default)]
    pub tier: Option<dlft_core::propose::router::Tier>,
}

/// Refunds: every brand's stores, its customers (honest, abusers, a ring
/// at one address) and their claims, the shop (Shopify's refund semantics)
/// and how it misbehaves, and the refund caps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopSection {
    /// Stores per brand.
    pub stores: u32,
    /// Claims per simulated hour per brand (drawn per seed).
    pub claims_per_hour: Range,
    /// The claimed item's value, and what else the order holds.
    pub item_cents: Range,
    pub order_extra_cents: Range,
    pub honest_customers: u32,
    #[serde(default)]
    pub abusers: u32,
    /// Claims made by abusers.
    #[serde(default)]
    pub abuser_pct: u32,
    /// Identities of one ring, all shipping to one address.
    #[serde(default)]
    pub ring: u32,
    /// Claims made by the ring.
    #[serde(default)]
    pub ring_pct: u32,
    /// Abusers' orders charged back, this long after the claim.
    #[serde(default)]
    pub chargeback_pct: u32,
    #[serde(default)]
    pub chargeback_after_s: Option<Range>,
    /// Honest "did not arrive" claims whose parcel tracking shows lost.
    #[serde(default)]
    pub lost_pct: u32,
    /// How often each brand's refund job reviews the claims.
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub review_every_s: u64,
    /// The shop's per-request latency.
    pub latency_ms: Range,
    /// A refund's transaction is pending this long, then succeeds (or fails).
    #[serde(deserialize_with = "dlft_core::time::de_ms")]
    pub settle_ms: u64,
    #[serde(default)]
    pub failure_pct: u32,
    /// `refundCreate` calls carried out whose reply is lost.
    #[serde(default)]
    pub lost_reply_pct: u32,
    /// Requests lost before the shop saw them.
    #[serde(default)]
    pub timeout_pct: u32,
    /// THROTTLED (not made).
    #[serde(default)]
    pub throttle_pct: u32,
    /// 5xx: half of the refunds among them after the refund was made.
    #[serde(default)]
    pub server_error_pct: u32,
    /// The refund tiers' caps (watched, high risk).
    pub watch_cap_cents: i64,
    pub high_cap_cents: i64,
    /// The brands' time zone (unless `[bank]` names one) and refund caps.
    pub time_zone: String,
    #[serde(default)]
    pub daily_cap_cents: Option<i64>,
    /// Each brand has a parcel tracker (17TRACK): every order ships with a
    /// tracking number, the tracker knows each parcel's truth, and the desk
    /// takes the customer's word for the tracking (an abuser says "lost"
    /// of a parcel delivered).
    #[serde(default)]
    pub tracker: bool,
    /// Each brand's loop mirrors its stores' orders (`jobs::mirror`), so
    /// the identity graph sees every order, not only the claimed ones.
    #[serde(default)]
    pub mirror: bool,
    /// How far the shop's order search lags its writes: the mirror's
    /// orders query answers as the shop stood this long ago.
    #[serde(default)]
    pub search_lag_ms: u64,
    /// Orders each customer (honest, abuser or ring member) placed in the
    /// 30 days before the run and never claimed on: a shop's customers
    /// buy far more than they claim, which only the mirror shows the
    /// identity graph. Unset: the shop's only orders are the claimed ones.
    #[serde(default)]
    pub orders_before: Option<Range>,
    /// The share of claimed orders, in percent, the brand's staff took by
    /// phone and entered with the call centre's number
    /// (`refunds::CALL_CENTRE`) for the customer's: one phone on many
    /// unrelated customers, which the loop declares shared. Any kind of
    /// customer's order may be one.
    #[serde(default)]
    pub phone_orders_pct: u32,
}

fn one() -> u32 {
    1
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    #[default]
    Turmoil,
    Event,
}

/// A scenario file that could not be used, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// The longest window the sim's estimator reads: a week, as in production.
pub const ESTIMATE_WINDOW_MAX_S: u64 = 7 * 86_400;

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.to_path_buf(),
            line: None,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        Scenario::parse(&text, path)
    }

    /// Parses and validates scenario text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let err = |line: Option<usize>, field: Option<String>, message: String| ScenarioError {
            file: path.to_path_buf(),
            line,
            field,
            message,
        };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            let line = e.span().map(|s| line_of_offset(text, s.start));
            err(line, None, e.message().to_string())
        })?;
        let scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = (path != ".").then_some(path);
            let line = inner
                .span()
                .map(|s| line_of_offset(text, s.start))
                .or_else(|| field.as_deref().and_then(|f| line_of_field(text, f)));
            err(line, field, inner.message().to_string())
        })?;
        scenario.validate().map_err(|(field, message)| err(line_of_field(text, &field), Some(field), message))?;
        Ok(scenario)
    }

    /// Relations between fields that types cannot express.
    fn validate(&self) -> Result<(), (String, String)> {
        let f = |field: &str, msg: &str| Err((field.to_string(), msg.to_string()));
        let pct = |field: &str, v: u32| {
            if v > 100 { f(field, "a percentage must be 0..=100") } else { Ok(()) }
        };
        if self.run.tick_ms == 0 || self.run.tick_ms > 1000 {
            return f("run.tick_ms", "must be 1..=1000");
        }
        // Turmoil steps every tick_ms: a week is already hours of wall time.
        // The event driver jumps to the next timer: a month of fifty brands
        // is a benchmark (benches/month.toml).
        match self.run.driver {
            Driver::Turmoil if self.run.duration_s == 0 || self.run.duration_s > 7 * 24 * 3600 => {
                return f("run.duration_s", "must be 1 s ..= 7 days on turmoil");
            }
            Driver::Event if self.run.duration_s == 0 || self.run.duration_s > 31 * 24 * 3600 => {
                return f("run.duration_s", "must be 1 s ..= 31 days on the event driver");
            }
            _ => {}
        }
        if self.run.heal_s >= self.run.duration_s {
            return f("run.heal_s", "must be shorter than run.duration_s");
        }
        if let Some(start) = &self.run.start {
            match dlft_core::sense::wire::revolut::instant_of(start) {
                Ok(t) if t.0 % 1000 == 0 => {}
                Ok(_) => return f("run.start", "must be a whole second"),
                Err(e) => return Err(("run.start".into(), e)),
            }
        }
        if self.run.workers == 0 || self.run.workers > 16 {
            return f("run.workers", "must be 1..=16");
        }
        if self.world.ads == 0 || self.world.ads > 10_000 {
            return f("world.ads", "must be 1..=10000");
        }
        pct("world.loser_pct", self.world.loser_pct)?;
        if let Some(b) = &self.brands {
            if b.ids.is_empty() || b.ids.len() > 64 {
                return f("brands.ids", "must name 1..=64 brands");
            }
            let mut seen = std::collections::BTreeSet::new();
            for id in &b.ids {
                if let Err(e) = dlft_core::ids::BrandId::parse(id) {
                    return Err(("brands.ids".into(), e));
                }
                if !seen.insert(id) {
                    return Err(("brands.ids".into(), format!("{id:?} is named twice")));
                }
            }
            if let Some(r) = b.revoked.iter().find(|r| !b.ids.contains(r)) {
                return Err(("brands.revoked".into(), format!("{r:?} is not in brands.ids")));
            }
            if b.revoked.len() == b.ids.len() {
                return f("brands.revoked", "at least one brand must keep its account");
            }
            if let Some(c) = &b.crash_loop {
                if !b.ids.contains(c) {
                    return Err(("brands.crash_loop".into(), format!("{c:?} is not in brands.ids")));
                }
                if b.revoked.contains(c) {
                    return Err(("brands.crash_loop".into(), format!("{c:?} is revoked: its ticks never read a page")));
                }
                if self.scan.as_ref().is_some_and(|s| s.crash_loop_page.is_some()) {
                    return f("brands.crash_loop", "one crash loop per scenario (scan.crash_loop_page is set)");
                }
            }
        }
        if Currency::parse(&self.world.currency).is_err() {
            return f("world.currency", "must be an ISO 4217 code such as \"EUR\"");
        }
        if self.world.bucket_s == 0 {
            return f("world.bucket_s", "must be positive");
        }
        if self.world.winner_cpa_cents.lo == 0 || self.world.loser_cpa_cents.lo == 0 {
            return f("world.winner_cpa_cents", "cost per purchase must be positive");
        }
        pct("platform.timeout_pct", self.platform.timeout_pct)?;
        pct("platform.timeout_applied_pct", self.platform.timeout_applied_pct)?;
        pct("platform.rate_limit_pct", self.platform.rate_limit_pct)?;
        pct("platform.ack_without_effect_pct", self.platform.ack_without_effect_pct)?;
        pct("platform.partial_batch_pct", self.platform.partial_batch_pct)?;
        pct("faults.storm_timeout_pct", self.faults.storm_timeout_pct)?;
        pct("faults.oneway_partition_pct", self.faults.oneway_partition_pct)?;
        pct("loop.max_kill_share_pct", self.control.max_kill_share_pct)?;
        if let Some(sc) = &self.scan {
            if sc.pages == 0 || sc.pages > 1_000 {
                return f("scan.pages", "must be 1..=1000");
            }
            if sc.half_life_s == 0 || !(sc.daily_s > 0 && sc.daily_s <= sc.three_day_s && sc.three_day_s <= sc.weekly_s)
            {
                return f("scan.daily_s", "cadence periods must be positive and daily <= three_day <= weekly");
            }
            if sc.crash_loop_page.is_some_and(|p| p == 0 || p > sc.pages) {
                return f("scan.crash_loop_page", "must name a page, 1..=pages");
            }
            if sc.model_call_cents < 0 {
                return f("scan.model_call_cents", "must not be negative");
            }
        }
        if let Some(wh) = &self.webhooks {
            pct("webhooks.duplicate_pct", wh.duplicate_pct)?;
            pct("webhooks.lie_on_ack_pct", wh.lie_on_ack_pct)?;
            if wh.false_per_min > 600 {
                return f("webhooks.false_per_min", "must be 0..=600");
            }
        }
        if let Some(b) = &self.bank {
            if b.counterparties == 0 || b.counterparties > 1_000 {
                return f("bank.counterparties", "must be 1..=1000");
            }
            for (field, v) in [
                ("bank.stranger_pct", b.stranger_pct),
                ("bank.changed_details_pct", b.changed_details_pct),
                ("bank.duplicate_file_pct", b.duplicate_file_pct),
                ("bank.half_written_pct", b.half_written_pct),
                ("bank.malformed_file_pct", b.malformed_file_pct),
                ("bank.decline_pct", b.decline_pct),
                ("bank.revert_pct", b.revert_pct),
                ("bank.lost_reply_pct", b.lost_reply_pct),
                ("bank.timeout_pct", b.timeout_pct),
                ("bank.rate_limit_pct", b.rate_limit_pct),
                ("bank.server_error_pct", b.server_error_pct),
            ] {
                pct(field, v)?;
            }
            if b.lost_reply_pct + b.timeout_pct + b.rate_limit_pct + b.server_error_pct > 100 {
                return f("bank.lost_reply_pct", "the bank's fault rates sum to more than 100%");
            }
            if b.payables_every_s == 0 {
                return f("bank.payables_every_s", "must be positive");
            }
            if b.amount_cents.lo == 0 {
                return f("bank.amount_cents", "amounts must be positive");
            }
            if b.invoices_per_file.lo == 0 || b.invoices_per_file.hi > 1_000 {
                return f("bank.invoices_per_file", "must be 1..=1000");
            }
            if let Err(e) = self.budgets() {
                return Err(("bank.time_zone".into(), e));
            }
        }
        if let Some(s) = &self.support {
            for (field, v) in [
                ("support.hostile_pct", s.hostile_pct),
                ("support.follow_up_pct", s.follow_up_pct),
                ("support.lost_reply_pct", s.lost_reply_pct),
                ("support.timeout_pct", s.timeout_pct),
                ("support.rate_limit_pct", s.rate_limit_pct),
                ("support.server_error_pct", s.server_error_pct),
                ("support.accept_pct", s.accept_pct),
            ] {
                pct(field, v)?;
            }
            if s.lost_reply_pct + s.timeout_pct + s.rate_limit_pct + s.server_error_pct > 100 {
                return f("support.lost_reply_pct", "the inbox's fault rates sum to more than 100%");
            }
            if s.review_every_s == 0 || s.lookback_s == 0 {
                return f("support.review_every_s", "review_every_s and lookback_s must be positive");
            }
            if s.model_daily_cap_cents < 0 {
                return f("support.model_daily_cap_cents", "may not be negative");
            }
            if s.vendors.is_empty() {
                return f("support.vendors", "at least one text model vendor");
            }
            for (i, v) in s.vendors.iter().enumerate() {
                if crate::support::Behaviour::parse(&v.behaviour).is_none() {
                    return Err((format!("support.vendors[{i}].behaviour"), "must be honest or compromised".into()));
                }
                if v.input_per_mtok_cents < 0 || v.output_per_mtok_cents < 0 {
                    return Err((format!("support.vendors[{i}]"), "prices must not be negative".into()));
                }
            }
        }
        if let Some(s) = &self.shop {
            for (field, v) in [
                ("shop.abuser_pct", s.abuser_pct),
                ("shop.ring_pct", s.ring_pct),
                ("shop.chargeback_pct", s.chargeback_pct),
                ("shop.lost_pct", s.lost_pct),
                ("shop.failure_pct", s.failure_pct),
                ("shop.lost_reply_pct", s.lost_reply_pct),
                ("shop.timeout_pct", s.timeout_pct),
                ("shop.throttle_pct", s.throttle_pct),
                ("shop.server_error_pct", s.server_error_pct),
                ("shop.phone_orders_pct", s.phone_orders_pct),
            ] {
                pct(field, v)?;
            }
        }
        if self.platform.page_limit == 0 {
            return f("platform.page_limit", "must be positive");
        }
        if self.world.purchase_delay_s.hi > self.control.maturation_s {
            return f("loop.maturation_s", "must cover world.purchase_delay_s (else matured data is not mature)");
        }
        let (w, l) = (self.worker_config(Sabotage::None), self.loop_config());
        dlft_core::config::validate(&w, &l).map_err(|m| ("loop".to_string(), m))
    }

    /// When the run's virtual time starts.
    pub fn start(&self) -> dlft_core::time::Timestamp {
        self.run
            .start
            .as_deref()
            .map_or(crate::run::EPOCH, |s| dlft_core::sense::wire::revolut::instant_of(s).expect("validated"))
    }

    /// Every brand's budgets (`[bank]`'s time zone and caps).
    pub fn budgets(&self) -> Result<Option<dlft_core::envelope::budget::Budgets>, String> {
        use dlft_core::envelope::budget::{Budgets, Cap, Purpose, Window, Zone};
        let zone_name = match (&self.bank, &self.shop, &self.support) {
            (Some(b), _, _) => b.time_zone.as_str(),
            (None, Some(s), _) => s.time_zone.as_str(),
            (None, None, Some(_)) => "UTC",
            (None, None, None) => return Ok(None),
        };
        let zone = Zone::parse(zone_name).map_err(|e| e.to_string())?;
        let mut caps: Vec<Cap> = Vec::new();
        if let Some(s) = &self.support {
            caps.push(Cap::brand(Purpose::Model, Window::Daily, Money::new(s.model_daily_cap_cents, self.currency())));
            if let (Some(c), None) = (s.refund_daily_cap_cents, &self.shop) {
                caps.push(Cap::brand(Purpose::Refund, Window::Daily, Money::new(c, self.currency())));
            }
        }
        if let Some(c) = self.shop.as_ref().and_then(|s| s.daily_cap_cents) {
            caps.push(Cap::brand(Purpose::Refund, Window::Daily, Money::new(c, self.currency())));
        }
        let Some(b) = &self.bank else { return Budgets::new(zone, caps).map(Some).map_err(|e| e.to_string()) };
        caps.extend(
            [
                (Window::Daily, b.daily_cap_cents),
                (Window::Monthly, b.monthly_cap_cents),
                (Window::Lifetime, b.lifetime_cap_cents),
            ]
            .into_iter()
            .filter_map(|(window, cents)| {
                cents.map(|c| Cap::brand(Purpose::Payout, window, Money::new(c, self.currency())))
            }),
        );
        if let Some(c) = b.counterparty_daily_cap_cents {
            caps.extend(crate::payouts::allow_list(b.counterparties, self.currency()).into_iter().map(|cp| Cap {
                counterparty: Some(cp.id),
                ..Cap::brand(Purpose::Payout, Window::Daily, Money::new(c, self.currency()))
            }));
        }
        Budgets::new(zone, caps).map(Some).map_err(|e| e.to_string())
    }

    pub fn currency(&self) -> Currency {
        Currency::parse(&self.world.currency).expect("validated")
    }

    pub fn loop_config(&self) -> LoopConfig {
        let scan = self.scan.as_ref().map(|sc| dlft_core::config::ScanConfig {
            pages: (0..sc.pages).map(crate::world::page_name).collect(),
            cadence: dlft_core::estimate::cadence::CadenceConfig {
                half_life: Millis::from_secs(sc.half_life_s),
                daily_at: sc.daily_at,
                three_day_at: sc.three_day_at,
                daily: Millis::from_secs(sc.daily_s),
                three_day: Millis::from_secs(sc.three_day_s),
                weekly: Millis::from_secs(sc.weekly_s),
            },
            model_call: Money::new(sc.model_call_cents, self.currency()),
        });
        let platform = dlft_core::config::PlatformShape {
            currency: self.currency(),
            bucket: Millis::from_secs(self.world.bucket_s),
            page_limit: self.platform.page_limit,
        };
        // The estimator reads the run so far, up to a week back: what `dlft
        // run` reads by default (`estimate_window_s`). A month's tick read a
        // month of buckets every minute before.
        let window = Millis::from_secs(self.run.duration_s.min(ESTIMATE_WINDOW_MAX_S));
        let mut cfg = self.control.loop_config(&platform, window, scan);
        cfg.payouts = self.bank.as_ref().map(|b| dlft_core::config::PayoutConfig {
            from_account: crate::payouts::from_account(&dlft_core::ids::BrandId::default()),
            counterparties: crate::payouts::allow_list(b.counterparties, self.currency()),
            every: Millis::from_secs(b.payables_every_s),
        });
        cfg.refunds = self.shop.as_ref().map(|s| crate::refunds::refund_config(s, self.currency()));
        cfg.support = self.support.as_ref().map(|s| crate::inbox::support_config(s, self.currency()));
        cfg
    }

    pub fn worker_config(&self, sabotage: Sabotage) -> WorkerConfig {
        self.worker_config_for(0, sabotage)
    }

    /// The config of worker `i` (0-based); ids are `worker-1`, `worker-2`, ….
    pub fn worker_config_for(&self, i: usize, sabotage: Sabotage) -> WorkerConfig {
        let mut cfg = self.control.worker_config(WorkerId::new(format!("worker-{}", i + 1)), sabotage);
        if let Some(b) = &self.brands {
            cfg.brands = b.ids.iter().map(|id| dlft_core::ids::BrandId::new(id.clone())).collect();
        }
        cfg
    }

    /// The brands' ids and accounts (a brand's account is its id), empty
    /// for a one-brand run (the default brand on the world's one account).
    pub fn brand_accounts(&self) -> Vec<String> {
        self.brands.as_ref().map_or_else(Vec::new, |b| b.ids.clone())
    }

    /// The stores `brand`'s shop mirror reads (`[shop] mirror`; none without).
    pub fn mirrored(&self, brand: &dlft_core::ids::BrandId) -> Vec<String> {
        match &self.shop {
            Some(s) if s.mirror => crate::refunds::store_names(brand, s),
            _ => Vec::new(),
        }
    }

    /// Whether the brands have a parcel tracker (`[shop] tracker`).
    pub fn has_tracker(&self) -> bool {
        self.shop.as_ref().is_some_and(|s| s.tracker)
    }

    /// Every brand the run serves (`default` alone without `[brands]`).
    pub fn brand_ids(&self) -> Vec<dlft_core::ids::BrandId> {
        match &self.brands {
            Some(b) => b.ids.iter().map(dlft_core::ids::BrandId::new).collect(),
            None => dlft_core::config::default_brands(),
        }
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The line where dotted `field` (`faults.crashes`) is set, found by tracking
/// `[table]` headers. Good enough for messages; `None` if not written out.
fn line_of_field(text: &str, field: &str) -> Option<usize> {
    let (table, key) = field.rsplit_once('.').unwrap_or(("", field));
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = header.trim().to_string();
            if current == field {
                return Some(i + 1);
            }
            continue;
        }
        let Some((k, _)) = line.split_once('=') else {
            continue;
        };
        if current == table && k.trim() == key {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = include_str!("../../scenarios/ad-kill-container-loss.toml");

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, Path::new("s.toml"))
    }

    #[test]
    fn the_shipped_scenario_parses() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.name, "ad-kill-container-loss");
    }

    fn line_with(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.trim_start().starts_with(needle)).unwrap() + 1
    }

    #[test]
    fn errors_name_file_line_and_field() {
        // (edit, expected field, expected message fragment, line of the edit)
        let cases = [
            ("ads = 24", "ads = \"many\"", "world.ads", "invalid type"),
            ("ads = 24", "ads = 24\nfavourite_colour = 3", "world", "unknown field `favourite_colour`"),
            ("crashes = [2, 4]", "crashes = [4, 2]", "faults.crashes", "reversed"),
            ("loser_pct = 25", "loser_pct = 250", "world.loser_pct", "percentage"),
            ("heal_s = 300", "heal_s = 99999", "run.heal_s", "shorter"),
        ];
        for (from, to, field, fragment) in cases {
            assert!(GOOD.contains(from), "fixture has {from}");
            let text = GOOD.replacen(from, to, 1);
            let e = parse(&text).unwrap_err();
            let shown = e.to_string();
            assert!(shown.starts_with("s.toml:"), "{shown}");
            assert!(e.field.as_deref().unwrap_or("").starts_with(field), "{shown}");
            assert!(shown.contains(fragment), "{shown}");
            let want_line = line_with(&text, to.lines().last().unwrap().split('=').next().unwrap().trim());
            assert_eq!(e.line, Some(want_line), "{shown}");
        }
    }

    #[test]
    fn broken_toml_names_the_line() {
        let e = parse("name = \"x\"\n[run\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }
}
