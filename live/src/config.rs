//! `dlft run`'s config file (`dlft.toml`). Strict: an unknown key is an
//! error naming it; a secret is never in the file, only the name of the
//! environment variable that holds it.

#![allow(clippy::disallowed_methods, reason = "live is where the environment is read (secrets, test settings)")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use dlft_core::config::{LoopSettings, PlatformShape};
use dlft_core::envelope::budget::{Budgets, Cap, Purpose, Window, Zone};
use dlft_core::ids::BrandId;
use dlft_core::money::{Currency, Money};
use dlft_core::time::Millis;
use serde::Deserialize;

use crate::meta::{MetaConfig, Secret};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default)]
    pub store: StoreSection,
    pub runner: RunnerSection,
    /// The ads account of the brand `default` (and the app's webhook secret).
    pub meta: MetaSection,
    /// Further brands, one section each (`[brands.<id>.meta]`: its own ad
    /// account, token and currency). Every worker serves every brand,
    /// claiming fairly across them; the `[loop]` rules apply to all.
    #[serde(default)]
    pub brands: BTreeMap<String, BrandSection>,
    #[serde(rename = "loop")]
    pub control: LoopSettings,
    /// The default brand's time zone and budget caps.
    #[serde(default)]
    pub budgets: Option<BudgetsSection>,
    /// The default brand's supplier payouts.
    #[serde(default)]
    pub payouts: Option<PayoutsSection>,
    /// The default brand's refunds.
    #[serde(default)]
    pub refunds: Option<RefundsSection>,
    /// The default brand's support inbox.
    #[serde(default)]
    pub support: Option<SupportSection>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandSection {
    pub meta: MetaSection,
    /// The brand's time zone and budget caps (`[brands.<id>.budgets]`).
    #[serde(default)]
    pub budgets: Option<BudgetsSection>,
    /// The brand's supplier payouts (`[brands.<id>.payouts]`).
    #[serde(default)]
    pub payouts: Option<PayoutsSection>,
    /// The brand's refunds (`[brands.<id>.refunds]`).
    #[serde(default)]
    pub refunds: Option<RefundsSection>,
    /// The brand's support inbox (`[brands.<id>.support]`).
    #[serde(default)]
    pub support: Option<SupportSection>,
}

/// A brand's support inbox: its AgentMail inbox, the text models it may
/// call in failover order (each vendor's endpoint and key), and how often
/// the inbox is read. Secrets by environment variable name. The gate's
/// policy is the default one with this inbox's address and link hosts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportSection {
    /// `https://api.agentmail.to` (or a sandbox's `/agentmail`).
    pub agentmail_url: String,
    pub agentmail_key_env: String,
    /// The inbox's id, and its address (the only one a reply may name).
    pub inbox: String,
    pub address: String,
    /// Hosts a reply may link to (and their subdomains).
    #[serde(default)]
    pub link_hosts: Vec<String>,
    /// Where the customers' orders are read (the shop's records: never the
    /// message), when the brand has no `[refunds]` store to read them from;
    /// without either, every customer is one without an order (offers
    /// become requests for evidence).
    #[serde(default)]
    pub shopify_url: Option<String>,
    #[serde(default)]
    pub shopify_token_env: Option<String>,
    /// The text models, in failover order.
    pub models: Vec<ModelSection>,
    #[serde(default)]
    pub anthropic_url: Option<String>,
    #[serde(default)]
    pub anthropic_key_env: Option<String>,
    #[serde(default)]
    pub gemini_url: Option<String>,
    #[serde(default)]
    pub gemini_key_env: Option<String>,
    #[serde(default = "twenty")]
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub every_s: u64,
    /// Threads not updated for this long are not read again.
    #[serde(default = "one_day")]
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub lookback_s: u64,
    #[serde(default = "max_output_tokens")]
    pub max_output_tokens: u32,
    /// The environment variable holding the `whsec_…` secret of the
    /// inbox's AgentMail webhook (Svix-signed): with it, `dlft run` serves
    /// `POST /webhooks/agentmail/<brand>` and a `message.received` event
    /// brings the brand's support run forward (a hint: the run reads the
    /// inbox itself). Without it the job only polls.
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    /// What an accepted refund offer may refund a watched and a high-risk
    /// customer, in minor units (the offer and the order bound it too; a
    /// brand with [refunds] uses that section's caps instead).
    #[serde(default = "support_watch_cap")]
    pub watch_cap_cents: i64,
    #[serde(default = "support_high_cap")]
    pub high_cap_cents: i64,
    /// How long a refund offer may be accepted.
    #[serde(default = "offer_valid_s")]
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub offer_valid_s: u64,
    #[serde(default = "default_timeout")]
    #[serde(deserialize_with = "dlft_core::time::de_ms")]
    pub timeout_ms: u64,
}

fn support_watch_cap() -> i64 {
    3_000
}

fn support_high_cap() -> i64 {
    1_000
}

fn offer_valid_s() -> u64 {
    14 * 86_400
}

/// One text model: its vendor (`anthropic` or `gemini`), its id, and its
/// price per million tokens in minor units of the brand's currency.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub vendor: String,
    pub model: String,
    pub input_per_mtok_cents: i64,
    pub output_per_mtok_cents: i64,
    /// The tier of cases it serves first (`fast`, `standard`, `careful`:
    /// chosen per case by value, risk and difficulty); absent: every tier.
    #[serde(default)]
    pub tier: Option<dlft_core::propose::router::Tier>,
}

fn twenty() -> u64 {
    20
}
fn one_day() -> u64 {
    24 * 3600
}
fn max_output_tokens() -> u32 {
    1_024
}

/// A brand's refunds: its Shopify store, its watched folder of customers'
/// claims, the tiers' caps and the key its identity hashes are made with.
/// Secrets by environment variable name. Refunds reserve against the
/// brand's `refund` caps (declare one in the brand's currency, or nothing
/// is ever refunded).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundsSection {
    /// `https://{shop}.myshopify.com` (or a sandbox's `/shopify`).
    pub shopify_url: String,
    /// The environment variable holding the Admin API access token.
    pub token_env: String,
    /// The store's name in claims and keys.
    pub store: String,
    /// The watched folder of claim files (`*.json`; settled ones in `done/`).
    pub claims_dir: String,
    /// The environment variable holding the identity graph's HMAC key.
    pub identity_key_env: String,
    /// What a watched and a high-risk identity may get back without a person,
    /// in minor units of the brand's currency (trusted: the policy's and
    /// the order's bounds only; blocked: nothing).
    pub watch_cap_cents: i64,
    pub high_cap_cents: i64,
    /// The environment variable holding the app's client secret, when the
    /// shop sends webhooks (`POST /webhooks/shopify/<brand>`): each verified
    /// order, refund, fulfillment or dispute webhook enqueues one claims
    /// review, keyed by its `X-Shopify-Webhook-Id`.
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    /// The brand's 17TRACK (`https://api.17track.net`, or a sandbox's
    /// `/17track`) and the variable holding its key (both or neither):
    /// with them, every claim is judged against its parcels' tracking as
    /// the carrier reports it, not as the claim file says.
    #[serde(default)]
    pub tracking_url: Option<String>,
    #[serde(default)]
    pub tracking_token_env: Option<String>,
    /// How often the claims are reviewed.
    #[serde(default = "five_minutes")]
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub every_s: u64,
    #[serde(default = "default_timeout")]
    #[serde(deserialize_with = "dlft_core::time::de_ms")]
    pub timeout_ms: u64,
    /// `[refunds.shared]`: values many of the brand's customers carry that
    /// name none of them (`emails`, `phones`, `addresses`, `cards`): the
    /// store's own phone on orders its staff took, its warehouse's address.
    /// The identity graph drops them, so they join no one.
    #[serde(default)]
    pub shared: dlft_core::estimate::identity::SharedValues,
}

/// A brand's supplier payouts: its Revolut Business account, its watched
/// folder of payables and its allow-list of counterparties. Secrets by
/// environment variable name.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutsSection {
    /// `https://b2b.revolut.com/api/1.0` (or a sandbox's `/revolut`).
    pub revolut_url: String,
    /// The environment variable holding the access token.
    pub token_env: String,
    /// The refresh grant (all three or none): the refresh token's variable,
    /// the app's client id, and the variable holding the client assertion
    /// JWT signed with the app's private key.
    #[serde(default)]
    pub refresh_token_env: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_assertion_env: Option<String>,
    /// The brand's Revolut account payouts leave from.
    pub from_account: String,
    /// The watched folder of payables files (`*.csv`, `*.json`).
    pub payables_dir: String,
    /// How often the payables are read.
    #[serde(default = "five_minutes")]
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub every_s: u64,
    #[serde(default = "default_timeout")]
    #[serde(deserialize_with = "dlft_core::time::de_ms")]
    pub timeout_ms: u64,
    /// Requests a minute at most (Revolut allows 60 per business).
    #[serde(default = "sixty")]
    pub requests_per_minute: u32,
    /// The allow-list: the only payees, with their bank details on record.
    pub counterparties: Vec<CounterpartySection>,
}

/// `{ id = "…", name = "Fabrik GmbH", account_id = "…", iban = "DE89 3704 …", currency = "EUR" }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterpartySection {
    /// Revolut's counterparty id.
    pub id: String,
    pub name: String,
    /// Revolut's id of the counterparty's account.
    pub account_id: String,
    pub iban: String,
    pub currency: String,
}

fn five_minutes() -> u64 {
    300
}
fn sixty() -> u32 {
    60
}

impl PayoutsSection {
    /// The allow-list, or what is wrong with it (`at` names the section).
    fn counterparties(&self, at: &str) -> Result<Vec<dlft_core::envelope::payout::Counterparty>, String> {
        let mut out: Vec<dlft_core::envelope::payout::Counterparty> = Vec::new();
        for (i, c) in self.counterparties.iter().enumerate() {
            let field = |name: &str| format!("field `{at}.counterparties[{i}].{name}`");
            let iban = dlft_core::envelope::payout::iban(&c.iban).map_err(|e| format!("{}: {e}", field("iban")))?;
            let currency = Currency::parse(&c.currency).map_err(|e| format!("{}: {e}", field("currency")))?;
            if c.id.is_empty() || c.account_id.is_empty() {
                return Err(format!("{}: a counterparty needs its id and its account_id", field("id")));
            }
            if out.iter().any(|o| o.id == c.id) {
                return Err(format!("{}: {:?} is listed twice", field("id"), c.id));
            }
            out.push(dlft_core::envelope::payout::Counterparty {
                id: c.id.clone(),
                name: c.name.clone(),
                account_id: c.account_id.clone(),
                iban,
                currency,
            });
        }
        Ok(out)
    }
}

/// A brand's budgets: its time zone (its calendar windows start at its
/// midnights) and its caps. A brand without one declares no caps: its
/// money-moving actions are refused (budgets fail closed).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetsSection {
    /// An IANA name: `Europe/Berlin`, `America/New_York`, `UTC`.
    pub time_zone: String,
    #[serde(default)]
    pub caps: Vec<CapSection>,
}

/// `{ purpose = "payout", window = "daily", limit = "1500.00", currency = "EUR" }`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapSection {
    /// payout, refund or model.
    pub purpose: String,
    /// daily, monthly (calendar, in the brand's time zone) or lifetime.
    pub window: String,
    /// A decimal string in major units, at most two decimals (`"1500.00"`).
    pub limit: String,
    pub currency: String,
    /// A payout cap on one payee of the allow-list (its `id`), beside the
    /// brand's caps; absent: the cap bounds all of the purpose's money.
    #[serde(default)]
    pub counterparty: Option<String>,
}

impl BudgetsSection {
    /// The declared budgets, or what is wrong with them (`at` names the section).
    fn budgets(&self, at: &str) -> Result<Budgets, String> {
        let zone = Zone::parse(&self.time_zone).map_err(|e| format!("field `{at}.time_zone`: {e}"))?;
        let mut caps = Vec::new();
        for (i, c) in self.caps.iter().enumerate() {
            let field = |name: &str| format!("field `{at}.caps[{i}].{name}`");
            let purpose = Purpose::parse(&c.purpose).map_err(|e| format!("{}: {e}", field("purpose")))?;
            let window = Window::parse(&c.window).map_err(|e| format!("{}: {e}", field("window")))?;
            let currency = Currency::parse(&c.currency).map_err(|e| format!("{}: {e}", field("currency")))?;
            let limit = Money::parse_decimal(&c.limit, currency)
                .map_err(|e| format!("{}: {e} (a decimal in major units, at most two decimals)", field("limit")))?;
            if c.counterparty.is_some() && purpose != Purpose::Payout {
                return Err(format!("{}: only payout caps name a counterparty", field("counterparty")));
            }
            caps.push(Cap { purpose, window, limit, counterparty: c.counterparty.clone() });
        }
        Budgets::new(zone, caps).map_err(|e| format!("section `{at}`: {e}"))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite://PATH` (the default: `sqlite://dlft.db`) or `postgres://…`.
    /// `${VAR}` in it is replaced by the environment variable (for passwords).
    #[serde(default = "default_url")]
    pub url: String,
    #[serde(default = "default_connections")]
    pub max_connections: u32,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection { url: default_url(), max_connections: default_connections() }
    }
}

fn default_url() -> String {
    "sqlite://dlft.db".into()
}

fn default_connections() -> u32 {
    8
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerSection {
    /// This process's name; its workers are `{name}-1` … `{name}-{workers}`,
    /// stable across restarts (a restart releases what its last life held).
    pub name: String,
    #[serde(default = "one")]
    pub workers: u32,
    /// Health, Prometheus metrics and webhooks; a loopback address unless
    /// `metrics_token_env` is set (scraping from another host needs the
    /// explicit address and a bearer token).
    #[serde(default = "default_http")]
    pub http: SocketAddr,
    /// The environment variable holding the bearer token `/metrics` asks of
    /// every scrape (`Authorization: Bearer …`).
    #[serde(default)]
    pub metrics_token_env: Option<String>,
    /// How long SIGTERM waits for in-flight work to hand its claims back.
    #[serde(default = "default_grace")]
    #[serde(deserialize_with = "dlft_core::time::de_ms")]
    pub shutdown_grace_ms: u64,
}

fn one() -> u32 {
    1
}

fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

fn default_grace() -> u64 {
    10_000
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaSection {
    pub base_url: String,
    pub account_id: String,
    /// The environment variable holding the access token.
    pub token_env: String,
    /// The environment variable holding the app secret that signs webhooks;
    /// set it to serve `POST /webhooks/meta` (absent: no webhook endpoint).
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    pub currency: String,
    /// The insights bucket: 3600 on Meta (hourly breakdown); shorter in the sandbox.
    #[serde(default = "hour")]
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub bucket_s: u64,
    #[serde(default = "default_page_limit")]
    pub page_limit: u32,
    #[serde(default = "default_timeout")]
    #[serde(deserialize_with = "dlft_core::time::de_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub account_utc_offset_min: i32,
    /// How far back the estimator reads the ledger.
    #[serde(default = "week")]
    #[serde(deserialize_with = "dlft_core::time::de_secs")]
    pub estimate_window_s: u64,
}

fn hour() -> u64 {
    3600
}
fn default_page_limit() -> u32 {
    100
}
fn default_timeout() -> u64 {
    10_000
}
fn week() -> u64 {
    7 * 24 * 3600
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error(
        "{file}: the secret {var} is not set (a token_env or webhook_secret_env names it; secrets never go in the file)"
    )]
    MissingSecret { file: String, var: String },
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<RunConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        RunConfig::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<RunConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { file: file.to_string(), message };
        let de = toml::Deserializer::parse(text).map_err(|e| invalid(e.to_string()))?;
        let cfg: RunConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| invalid(format!("field `{}`: {}", e.path(), e.inner().message())))?;
        if !cfg.runner.http.ip().is_loopback() && cfg.runner.metrics_token_env.is_none() {
            return Err(invalid(format!(
                "field `runner.http`: {} is not a loopback address; serving another host needs \
                 runner.metrics_token_env (a bearer token every scrape must send)",
                cfg.runner.http
            )));
        }
        if cfg.runner.workers == 0 || cfg.runner.workers > 64 {
            return Err(invalid("field `runner.workers`: must be 1..=64".into()));
        }
        for (id, section) in &cfg.brands {
            let brand = BrandId::parse(id).map_err(|e| invalid(format!("section `brands.{id}`: {e}")))?;
            if brand.is_default() {
                return Err(invalid(format!("section `brands.{id}`: the brand `{id}` is [meta]'s")));
            }
            if section.meta.webhook_secret_env.is_some() {
                return Err(invalid(format!(
                    "field `brands.{id}.meta.webhook_secret_env`: webhooks are signed per app: set it in [meta]"
                )));
            }
        }
        let mut accounts = BTreeMap::new();
        for brand in cfg.brand_ids() {
            let meta = cfg.meta_of(&brand);
            let at = if brand.is_default() { "meta".to_string() } else { format!("brands.{brand}.meta") };
            Currency::parse(&meta.currency).map_err(|e| invalid(format!("field `{at}.currency`: {e}")))?;
            if meta.bucket_s == 0 {
                return Err(invalid(format!("field `{at}.bucket_s`: must be positive")));
            }
            if let Some(other) = accounts.insert(meta.account_id.clone(), brand.clone()) {
                return Err(invalid(format!(
                    "field `{at}.account_id`: {} is brand {other}'s account too",
                    meta.account_id
                )));
            }
            let at = if brand.is_default() { "budgets".to_string() } else { format!("brands.{brand}.budgets") };
            let budgets = match cfg.budgets_section_of(&brand) {
                Some(b) => b.budgets(&at).map_err(invalid)?,
                None => Budgets::default(),
            };
            let mut payees = Vec::new();
            if let Some(p) = cfg.payouts_of(&brand) {
                let at = if brand.is_default() { "payouts".to_string() } else { format!("brands.{brand}.payouts") };
                let allow = p.counterparties(&at).map_err(invalid)?;
                if p.every_s == 0 {
                    return Err(invalid(format!("field `{at}.every_s`: must be positive")));
                }
                if !(1..=6_000).contains(&p.requests_per_minute) {
                    return Err(invalid(format!("field `{at}.requests_per_minute`: must be 1..=6000")));
                }
                let refresh = [&p.refresh_token_env, &p.client_id, &p.client_assertion_env];
                if refresh.iter().any(|f| f.is_some()) && !refresh.iter().all(|f| f.is_some()) {
                    return Err(invalid(format!(
                        "section `{at}`: the refresh grant needs refresh_token_env, client_id and client_assertion_env together"
                    )));
                }
                // Budgets fail closed: a payee's currency without a payout cap would never be paid.
                for c in &allow {
                    if budgets.caps_for(Purpose::Payout, c.currency, Some(&c.id)).next().is_none() {
                        return Err(invalid(format!(
                            "section `{at}`: {} is paid in {} but brand {brand} declares no payout cap in {}: \
                             nothing would ever be paid (declare one under its budgets)",
                            c.id, c.currency, c.currency
                        )));
                    }
                }
                payees = allow;
            }
            if let Some(sp) = cfg.support_of(&brand) {
                let at = if brand.is_default() { "support".to_string() } else { format!("brands.{brand}.support") };
                if sp.models.is_empty() {
                    return Err(invalid(format!("section `{at}`: at least one model under `models`")));
                }
                for (i, m) in sp.models.iter().enumerate() {
                    let (url, key) = match m.vendor.as_str() {
                        "anthropic" => (&sp.anthropic_url, &sp.anthropic_key_env),
                        "gemini" => (&sp.gemini_url, &sp.gemini_key_env),
                        other => {
                            return Err(invalid(format!(
                                "field `{at}.models[{i}].vendor`: {other:?} is not a text vendor (anthropic, gemini)"
                            )));
                        }
                    };
                    if url.is_none() || key.is_none() {
                        return Err(invalid(format!(
                            "section `{at}`: model {} needs {v}_url and {v}_key_env",
                            m.model,
                            v = m.vendor
                        )));
                    }
                    if m.input_per_mtok_cents < 0 || m.output_per_mtok_cents < 0 {
                        return Err(invalid(format!("field `{at}.models[{i}]`: prices may not be negative")));
                    }
                }
                if sp.watch_cap_cents < 0 || sp.high_cap_cents < 0 {
                    return Err(invalid(format!("section `{at}`: the tiers' caps may not be negative")));
                }
                if sp.every_s == 0 || sp.lookback_s == 0 || sp.max_output_tokens == 0 {
                    return Err(invalid(format!(
                        "section `{at}`: every_s, lookback_s and max_output_tokens must be positive"
                    )));
                }
                if sp.shopify_url.is_some() != sp.shopify_token_env.is_some() {
                    return Err(invalid(format!("section `{at}`: shopify_url and shopify_token_env go together")));
                }
                if !sp.address.contains('@') || sp.inbox.trim().is_empty() {
                    return Err(invalid(format!("section `{at}`: inbox and address (an email address) are required")));
                }
                // Budgets fail closed: every model call is charged to a model cap.
                let currency = Currency::parse(&cfg.meta_of(&brand).currency).expect("validated");
                if budgets.caps_for(Purpose::Model, currency, None).next().is_none() {
                    return Err(invalid(format!(
                        "section `{at}`: brand {brand} declares no model cap in {currency}: \
                         no model would ever be called (declare one under its budgets, e.g. \
                         {{ purpose = \"model\", window = \"daily\", limit = \"20.00\", currency = \"{currency}\" }})"
                    )));
                }
            }
            if let Some(r) = cfg.refunds_of(&brand) {
                let at = if brand.is_default() { "refunds".to_string() } else { format!("brands.{brand}.refunds") };
                if r.every_s == 0 {
                    return Err(invalid(format!("field `{at}.every_s`: must be positive")));
                }
                if r.watch_cap_cents < 0 || r.high_cap_cents < 0 {
                    return Err(invalid(format!("section `{at}`: the tiers' caps may not be negative")));
                }
                if r.store.trim().is_empty() || r.claims_dir.trim().is_empty() {
                    return Err(invalid(format!("section `{at}`: store and claims_dir are required")));
                }
                // A value that is no key of its kind would drop nothing.
                let unusable = r.shared.unusable();
                if !unusable.is_empty() {
                    return Err(invalid(format!(
                        "section `{at}.shared`: {} is no key of its kind (nothing would be dropped)",
                        unusable.join(", ")
                    )));
                }
                let currency = Currency::parse(&cfg.meta_of(&brand).currency).expect("validated");
                // Budgets fail closed: without a refund cap nothing would be refunded.
                if budgets.caps_for(Purpose::Refund, currency, None).next().is_none() {
                    return Err(invalid(format!(
                        "section `{at}`: brand {brand} declares no refund cap in {currency}: \
                         nothing would ever be refunded (declare one under its budgets)"
                    )));
                }
            }
            // A counterparty cap names a payee of the brand's allow-list, in
            // that payee's currency (else it would bound nothing).
            for cap in &budgets.caps {
                let Some(id) = &cap.counterparty else { continue };
                let section =
                    if brand.is_default() { "budgets".to_string() } else { format!("brands.{brand}.budgets") };
                match payees.iter().find(|c| &c.id == id) {
                    None => {
                        return Err(invalid(format!(
                            "section `{section}`: the {} cap names counterparty {id:?}, which is not on brand {brand}'s payout allow-list",
                            cap.name()
                        )));
                    }
                    Some(c) if c.currency != cap.limit.currency => {
                        return Err(invalid(format!(
                            "section `{section}`: the {} cap is in {}, but {id} is paid in {}",
                            cap.name(),
                            cap.limit.currency,
                            c.currency
                        )));
                    }
                    Some(_) => {}
                }
            }
            let (w, l) = (cfg.worker_config(0), cfg.loop_config_of(&brand));
            dlft_core::config::validate(&w, &l).map_err(|m| invalid(format!("[loop] for brand {brand}: {m}")))?;
        }
        Ok(cfg)
    }

    /// Every brand this process serves: `default` ([meta]) and each `[brands.<id>]`.
    pub fn brand_ids(&self) -> Vec<BrandId> {
        let mut out = vec![BrandId::default()];
        out.extend(self.brands.keys().map(|k| BrandId::new(k.clone())));
        out
    }

    /// A brand's ads account section (`[meta]` for `default`).
    pub fn meta_of(&self, brand: &BrandId) -> &MetaSection {
        self.brands.get(brand.as_str()).map_or(&self.meta, |b| &b.meta)
    }

    fn budgets_section_of(&self, brand: &BrandId) -> Option<&BudgetsSection> {
        if brand.is_default() { self.budgets.as_ref() } else { self.brands.get(brand.as_str())?.budgets.as_ref() }
    }

    /// A brand's payouts section, if it pays suppliers.
    pub fn payouts_of(&self, brand: &BrandId) -> Option<&PayoutsSection> {
        if brand.is_default() { self.payouts.as_ref() } else { self.brands.get(brand.as_str())?.payouts.as_ref() }
    }

    /// A brand's refunds section, if it refunds claims.
    pub fn refunds_of(&self, brand: &BrandId) -> Option<&RefundsSection> {
        if brand.is_default() { self.refunds.as_ref() } else { self.brands.get(brand.as_str())?.refunds.as_ref() }
    }

    /// A brand's support section, if it answers an inbox.
    pub fn support_of(&self, brand: &BrandId) -> Option<&SupportSection> {
        if brand.is_default() { self.support.as_ref() } else { self.brands.get(brand.as_str())?.support.as_ref() }
    }

    /// A brand's payout port: its Revolut account and its payables folder,
    /// with its secrets read from the environment; a brand without payouts
    /// gets one that pays nobody.
    pub fn bank_of(&self, brand: &BrandId, file: &str) -> Result<crate::payouts::LiveBank, ConfigError> {
        let mut live = crate::payouts::LiveBank::default();
        if let Some(sp) = self.support_of(brand) {
            let client = |e: reqwest::Error| ConfigError::Invalid {
                file: file.to_string(),
                message: format!("support client: {e}"),
            };
            let timeout = Duration::from_millis(sp.timeout_ms);
            live.inbox = Some(
                crate::support::AgentMail::new(crate::support::AgentMailConfig {
                    base_url: sp.agentmail_url.clone(),
                    key: secret(&sp.agentmail_key_env, file)?,
                    timeout,
                })
                .map_err(client)?
                .for_brand(brand.clone()),
            );
            let endpoint = |url: &Option<String>, key: &Option<String>| -> Result<_, ConfigError> {
                match (url, key) {
                    (Some(u), Some(k)) => {
                        Ok(Some(crate::support::VendorEndpoint { base_url: u.clone(), key: secret(k, file)? }))
                    }
                    _ => Ok(None),
                }
            };
            live.models = Some(
                crate::support::LiveModels::new(crate::support::ModelsConfig {
                    anthropic: endpoint(&sp.anthropic_url, &sp.anthropic_key_env)?,
                    gemini: endpoint(&sp.gemini_url, &sp.gemini_key_env)?,
                    max_output_tokens: sp.max_output_tokens,
                    timeout,
                })
                .map_err(client)?
                .for_brand(brand.clone()),
            );
            if let (Some(url), Some(token)) = (&sp.shopify_url, &sp.shopify_token_env) {
                live.shop = Some(
                    crate::shopify::ShopifyShop::new(crate::shopify::ShopifyConfig {
                        base_url: url.clone(),
                        token: secret(token, file)?,
                        timeout,
                    })
                    .map_err(|e| ConfigError::Invalid {
                        file: file.to_string(),
                        message: format!("shopify client: {e}"),
                    })?
                    .for_brand(brand.clone()),
                );
            }
        }
        if let Some(r) = self.refunds_of(brand) {
            let shop = crate::shopify::ShopifyShop::new(crate::shopify::ShopifyConfig {
                base_url: r.shopify_url.clone(),
                token: secret(&r.token_env, file)?,
                timeout: Duration::from_millis(r.timeout_ms),
            })
            .map_err(|e| ConfigError::Invalid { file: file.to_string(), message: format!("shopify client: {e}") })?
            .for_brand(brand.clone());
            // The identity key must be there (the loop config reads it).
            secret(&r.identity_key_env, file)?;
            live.shop = Some(shop);
            live.store = r.store.clone();
            live.claims = Some(crate::claims::FolderClaims::new(&r.claims_dir));
            live.tracker = match (&r.tracking_url, &r.tracking_token_env) {
                (Some(url), Some(token)) => Some(
                    crate::track17::Track17::new(crate::track17::Track17Config {
                        base_url: url.clone(),
                        token: secret(token, file)?,
                        timeout: Duration::from_millis(r.timeout_ms),
                        min_interval: crate::track17::MIN_INTERVAL,
                    })
                    .map_err(|e| ConfigError::Invalid {
                        file: file.to_string(),
                        message: format!("17track client: {e}"),
                    })?
                    .for_brand(brand.clone()),
                ),
                (None, None) => None,
                _ => {
                    let at = if brand.is_default() { "refunds".into() } else { format!("brands.{brand}.refunds") };
                    return Err(ConfigError::Invalid {
                        file: file.to_string(),
                        message: format!("field `{at}.tracking_url`: set it and tracking_token_env together"),
                    });
                }
            };
        }
        let Some(p) = self.payouts_of(brand) else { return Ok(live) };
        let secret = |var: &String| secret(var, file);
        let refresh = match (&p.refresh_token_env, &p.client_id, &p.client_assertion_env) {
            (Some(r), Some(id), Some(a)) => Some(crate::revolut::RefreshConfig {
                refresh_token: secret(r)?,
                client_id: id.clone(),
                client_assertion: secret(a)?,
            }),
            _ => None,
        };
        let bank = crate::revolut::RevolutBank::new(crate::revolut::RevolutConfig {
            base_url: p.revolut_url.clone(),
            token: secret(&p.token_env)?,
            timeout: Duration::from_millis(p.timeout_ms),
            refresh,
            min_interval: Duration::from_millis(60_000 / u64::from(p.requests_per_minute)),
        })
        .map_err(|e| ConfigError::Invalid { file: file.to_string(), message: format!("revolut client: {e}") })?
        .for_brand(brand.clone());
        live.bank = Some(bank);
        live.payables = Some(crate::payouts::FolderPayables::new(&p.payables_dir));
        Ok(live)
    }

    /// A brand's declared budgets (validated when the file was parsed); a
    /// brand without a budgets section declares none (UTC, no caps).
    pub fn budgets_of(&self, brand: &BrandId) -> Budgets {
        self.budgets_section_of(brand).map_or_else(Budgets::default, |b| b.budgets("").expect("validated"))
    }

    /// The default brand's loop settings.
    pub fn loop_config(&self) -> dlft_core::config::LoopConfig {
        self.loop_config_of(&BrandId::default())
    }

    /// A brand's loop settings: the shared `[loop]` rules on its account's
    /// currency and bucket.
    pub fn loop_config_of(&self, brand: &BrandId) -> dlft_core::config::LoopConfig {
        let meta = self.meta_of(brand);
        let platform = PlatformShape {
            currency: Currency::parse(&meta.currency).expect("validated"),
            bucket: Millis::from_secs(meta.bucket_s),
            page_limit: meta.page_limit,
        };
        let mut cfg = self.control.loop_config(&platform, Millis::from_secs(meta.estimate_window_s), None);
        cfg.payouts = self.payouts_of(brand).map(|p| dlft_core::config::PayoutConfig {
            from_account: p.from_account.clone(),
            counterparties: p.counterparties("").expect("validated"),
            every: Millis::from_secs(p.every_s),
        });
        cfg.refunds = self.refunds_of(brand).map(|r| dlft_core::config::RefundConfig {
            every: Millis::from_secs(r.every_s),
            policy: dlft_core::propose::refund::RefundPolicy::default(),
            tiers: dlft_core::estimate::risk::TierRules::default(),
            caps: dlft_core::envelope::refund::TierCaps {
                currency: platform.currency,
                trusted: None,
                watch: r.watch_cap_cents,
                high: r.high_cap_cents,
            },
            // Read from the environment when the port is built (`bank_of`).
            identity_key: std::env::var(&r.identity_key_env).unwrap_or_default(),
            shared: r.shared.clone(),
        });
        cfg.support = self.support_of(brand).map(|sp| {
            let default = dlft_core::propose::support::SupportPolicy::default();
            let policy = dlft_core::propose::support::SupportPolicy {
                support_email: sp.address.clone(),
                link_hosts: if sp.link_hosts.is_empty() { default.link_hosts.clone() } else { sp.link_hosts.clone() },
                ..default
            };
            dlft_core::config::SupportConfig {
                every: Millis::from_secs(sp.every_s),
                inbox: sp.inbox.clone(),
                address: sp.address.clone(),
                policy,
                deployments: sp
                    .models
                    .iter()
                    .map(|m| dlft_core::propose::router::Deployment {
                        vendor: m.vendor.clone(),
                        model: m.model.clone(),
                        input_per_mtok: m.input_per_mtok_cents,
                        output_per_mtok: m.output_per_mtok_cents,
                        currency: platform.currency,
                        tier: m.tier,
                    })
                    .collect(),
                tiers: dlft_core::propose::router::TierRules::default(),
                breaker: dlft_core::propose::router::BreakerRules::default(),
                lookback: Millis::from_secs(sp.lookback_s),
                max_output_tokens: sp.max_output_tokens,
                store: self.refunds_of(brand).map_or_else(|| "shop".to_string(), |r| r.store.clone()),
                refund_caps: match self.refunds_of(brand) {
                    Some(r) => dlft_core::envelope::refund::TierCaps {
                        currency: platform.currency,
                        trusted: None,
                        watch: r.watch_cap_cents,
                        high: r.high_cap_cents,
                    },
                    None => dlft_core::envelope::refund::TierCaps {
                        currency: platform.currency,
                        trusted: None,
                        watch: sp.watch_cap_cents,
                        high: sp.high_cap_cents,
                    },
                },
                offer_valid: Millis::from_secs(sp.offer_valid_s),
            }
        });
        cfg
    }

    /// Worker `i` (0-based) of this process: it serves every brand.
    pub fn worker_config(&self, i: u32) -> dlft_core::config::WorkerConfig {
        let id = dlft_core::ids::WorkerId::new(format!("{}-{}", self.runner.name, i + 1));
        let mut cfg = self.control.worker_config(id, dlft_core::config::Sabotage::None);
        cfg.brands = self.brand_ids();
        cfg.spread_slots = self.control.spread_schedules.unwrap_or(true);
        cfg
    }

    /// The store URL with `${VAR}` references filled from the environment.
    pub fn store_url(&self, file: &str) -> Result<String, ConfigError> {
        let mut url = self.store.url.clone();
        while let Some(start) = url.find("${") {
            let Some(len) = url[start..].find('}') else { break };
            let var = url[start + 2..start + len].to_string();
            let value = std::env::var(&var)
                .map_err(|_| ConfigError::MissingSecret { file: file.to_string(), var: var.clone() })?;
            url.replace_range(start..start + len + 1, &value);
        }
        Ok(url)
    }

    /// The webhook signing secret, if webhooks are configured.
    /// Every brand's AgentMail webhook: (brand, its `whsec_…` secret read
    /// from the environment, its inbox). A missing variable or a secret
    /// that is not `whsec_<base64>` is an error naming it.
    pub fn inbox_webhooks(&self, file: &str) -> Result<Vec<(BrandId, Secret, String)>, ConfigError> {
        let mut out = Vec::new();
        for brand in self.brand_ids() {
            let Some(sp) = self.support_of(&brand) else { continue };
            let Some(var) = &sp.webhook_secret_env else { continue };
            let s = secret(var, file)?;
            if crate::svix::key_of(s.expose()).is_err() {
                return Err(ConfigError::Invalid {
                    file: file.into(),
                    message: format!("${var} (brand {brand}'s AgentMail webhook secret) is not whsec_<base64>"),
                });
            }
            out.push((brand, s, sp.inbox.clone()));
        }
        Ok(out)
    }

    /// Each brand's Shopify webhook secret (brands with refunds that take
    /// webhooks), read from the environment.
    pub fn shop_webhooks(&self, file: &str) -> Result<Vec<(BrandId, Secret)>, ConfigError> {
        let mut out = Vec::new();
        for brand in self.brand_ids() {
            let Some(var) = self.refunds_of(&brand).and_then(|r| r.webhook_secret_env.as_ref()) else { continue };
            out.push((brand, secret(var, file)?));
        }
        Ok(out)
    }

    /// The bearer token `/metrics` asks of a scrape, read from the environment.
    pub fn metrics_token(&self, file: &str) -> Result<Option<Secret>, ConfigError> {
        self.runner.metrics_token_env.as_ref().map(|var| secret(var, file)).transpose()
    }

    pub fn webhook_secret(&self, file: &str) -> Result<Option<Secret>, ConfigError> {
        let Some(var) = &self.meta.webhook_secret_env else { return Ok(None) };
        secret(var, file).map(Some)
    }

    /// The default brand's Meta adapter settings, with the token read from
    /// the environment.
    pub fn meta_config(&self, file: &str) -> Result<MetaConfig, ConfigError> {
        self.meta_config_of(&BrandId::default(), file)
    }

    /// A brand's Meta adapter settings, with its token read from the environment.
    pub fn meta_config_of(&self, brand: &BrandId, file: &str) -> Result<MetaConfig, ConfigError> {
        let meta = self.meta_of(brand);
        Ok(MetaConfig {
            base_url: meta.base_url.clone(),
            account_id: meta.account_id.clone(),
            token: secret(&meta.token_env, file)?,
            timeout: Duration::from_millis(meta.timeout_ms),
            account_utc_offset_min: meta.account_utc_offset_min,
        })
    }
}

/// The secret in environment variable `var` (named in `file`); a missing
/// or empty one is an error naming the variable.
fn secret(var: &str, file: &str) -> Result<Secret, ConfigError> {
    std::env::var(var)
        .ok()
        .filter(|t| !t.is_empty())
        .map(Secret::new)
        .ok_or_else(|| ConfigError::MissingSecret { file: file.to_string(), var: var.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/dlft.sandbox.toml");

    /// The example without its [budgets] (the last section), and `extra`.
    fn with(extra: &str) -> Result<RunConfig, ConfigError> {
        let base = EXAMPLE.split("\n[budgets]").next().unwrap();
        RunConfig::parse(&format!("{base}\n{extra}"), "dlft.toml")
    }

    #[test]
    fn the_example_declares_budgets() {
        let cfg = RunConfig::parse(EXAMPLE, "dlft.toml").unwrap();
        assert_eq!(
            cfg.budgets_of(&BrandId::default()).describe(),
            "Europe/Berlin: payout daily 1500.00 EUR, payout daily cp-1 500.00 EUR, payout monthly 20000.00 EUR, \
             payout lifetime 250000.00 EUR, refund daily 500.00 EUR, model daily 20.00 EUR"
        );
    }

    fn brand(id: &str, account: &str, currency: &str) -> String {
        format!(
            "[brands.{id}.meta]\nbase_url = \"http://127.0.0.1:8787\"\naccount_id = \"{account}\"\n\
             token_env = \"DLFT_UNSET_{}_TOKEN\"\ncurrency = \"{currency}\"\nbucket_s = 5\n",
            id.to_uppercase()
        )
    }

    fn message(r: Result<RunConfig, ConfigError>) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn one_file_serves_several_brands_each_on_its_own_account() {
        let cfg = with(&(brand("north", "act_2", "SEK") + &brand("south", "act_3", "GBP"))).unwrap();
        let ids: Vec<String> = cfg.brand_ids().iter().map(ToString::to_string).collect();
        assert_eq!(ids, ["default", "north", "south"]);
        assert_eq!(cfg.worker_config(0).brands, cfg.brand_ids(), "every worker serves every brand");
        let north = BrandId::new("north");
        assert_eq!(cfg.loop_config_of(&north).currency, Currency::parse("SEK").unwrap());
        assert_eq!(cfg.loop_config().currency, Currency::parse("EUR").unwrap());
        assert_eq!(cfg.meta_of(&north).account_id, "act_2");
        assert_eq!(cfg.meta_of(&north).token_env, "DLFT_UNSET_NORTH_TOKEN", "a secret per brand, by env var name");
        // A file without [brands] is one brand, `default`.
        assert_eq!(with("").unwrap().brand_ids(), vec![BrandId::default()]);
    }

    #[test]
    fn bad_brand_sections_are_named() {
        let m = message(with(&brand("no way", "act_2", "EUR")));
        assert!(m.contains("no way"), "{m}");
        let m = message(with(&brand("default", "act_2", "EUR")));
        assert!(m.contains("`brands.default`") && m.contains("[meta]"), "{m}");
        let m = message(with(&brand("north", "act_1", "EUR")));
        assert!(m.contains("brands.north.meta.account_id") && m.contains("default"), "{m}");
        let m = message(with(&brand("north", "act_2", "EURO")));
        assert!(m.contains("brands.north.meta.currency"), "{m}");
        let m = message(with(&(brand("north", "act_2", "EUR") + "webhook_secret_env = \"X\"\n")));
        assert!(m.contains("brands.north.meta.webhook_secret_env"), "{m}");
        let m = message(with(&(brand("north", "act_2", "EUR") + "colour = \"red\"\n")));
        assert!(m.contains("colour"), "{m}");
    }

    const CAPS: &str = "[budgets]\ntime_zone = \"Europe/Berlin\"\ncaps = [\n  \
        { purpose = \"payout\", window = \"daily\", limit = \"1500.00\", currency = \"EUR\" },\n  \
        { purpose = \"payout\", window = \"monthly\", limit = \"20000\", currency = \"EUR\" },\n]\n";

    #[test]
    fn refunds_need_a_refund_cap_and_sane_settings() {
        let refunds = "[refunds]\nshopify_url = \"http://127.0.0.1:8787/shopify\"\ntoken_env = \"SHOPIFY_ACCESS_TOKEN\"\n\
            store = \"eu\"\nclaims_dir = \"claims\"\nidentity_key_env = \"DLFT_IDENTITY_KEY\"\n\
            watch_cap_cents = 3000\nhigh_cap_cents = 1000\nevery_s = 2\n";
        let refund_cap = CAPS.replace(
            "caps = [\n",
            "caps = [\n  { purpose = \"refund\", window = \"daily\", limit = \"500\", currency = \"EUR\" },\n",
        );
        let cfg = with(&format!("{refund_cap}{refunds}")).unwrap();
        let r = cfg.loop_config().refunds.expect("the brand refunds");
        assert_eq!((r.every, r.caps.watch, r.caps.high, r.caps.currency), (Millis(2_000), 3000, 1000, Currency::EUR));
        assert_eq!(r.shared, dlft_core::estimate::identity::SharedValues::default());
        let shared = "[refunds.shared]\nphones = [\"+49 30 5550100\"]\naddresses = [\"Lagerweg 1, Lager\"]\n";
        let cfg = with(&format!("{refund_cap}{refunds}{shared}")).unwrap();
        let r = cfg.loop_config().refunds.expect("the brand refunds");
        assert_eq!((r.shared.phones.len(), r.shared.addresses.len()), (1, 1));
        assert!(with("").unwrap().loop_config().refunds.is_none(), "a brand without [refunds] refunds nobody");
        for (text, want) in [
            (format!("{CAPS}{refunds}"), "declares no refund cap in EUR"),
            (format!("{refund_cap}{}", refunds.replace("every_s = 2", "every_s = 0")), "field `refunds.every_s`"),
            (
                format!("{refund_cap}{}", refunds.replace("high_cap_cents = 1000", "high_cap_cents = -1")),
                "may not be negative",
            ),
            (format!("{refund_cap}{}", refunds.replace("store = \"eu\"", "store = \" \"")), "store and claims_dir"),
            (format!("{refund_cap}{}", refunds.replace("claims_dir", "claim_dir")), "claim_dir"),
            (
                format!("{refund_cap}{refunds}[refunds.shared]\nphones = [\"n/a\"]\n"),
                "section `refunds.shared`: phone \"n/a\" is no key of its kind",
            ),
            (format!("{refund_cap}{refunds}[refunds.shared]\nphone = [\"+49 30 5550100\"]\n"), "unknown field `phone`"),
        ] {
            let m = message(with(&text));
            assert!(m.contains(want), "{want:?} not in {m:?}");
        }
    }

    #[test]
    fn another_hosts_scrape_needs_a_bearer_token() {
        let open = EXAMPLE.replace("http = \"127.0.0.1:9464\"", "http = \"0.0.0.0:9464\"");
        let m = message(RunConfig::parse(&open, "dlft.toml"));
        assert!(m.contains("runner.http") && m.contains("metrics_token_env"), "{m}");
        let with_token = open.replace("# metrics_token_env", "metrics_token_env");
        let cfg = RunConfig::parse(&with_token, "dlft.toml").unwrap();
        assert_eq!(cfg.runner.metrics_token_env.as_deref(), Some("DLFT_METRICS_TOKEN"));
        assert!(RunConfig::parse(EXAMPLE, "dlft.toml").unwrap().runner.metrics_token_env.is_none(), "loopback: none");
    }

    #[test]
    fn support_sections_are_checked_and_named() {
        let model_cap = CAPS.replace(
            "caps = [\n",
            "caps = [\n  { purpose = \"model\", window = \"daily\", limit = \"20\", currency = \"EUR\" },\n",
        );
        let support = "[support]\nagentmail_url = \"http://127.0.0.1:8787/agentmail\"\nagentmail_key_env = \"AGENTMAIL_API_KEY\"\n\
            inbox = \"support\"\naddress = \"support@example-shop.com\"\n\
            anthropic_url = \"http://127.0.0.1:8787/anthropic\"\nanthropic_key_env = \"ANTHROPIC_API_KEY\"\n\
            models = [ { vendor = \"anthropic\", model = \"claude-haiku\", input_per_mtok_cents = 100, output_per_mtok_cents = 500 } ]\n";
        assert!(message(with(&format!("{CAPS}{support}"))).contains("declares no model cap in EUR"));
        let support = &format!("{model_cap}{support}");
        let cfg = with(support).unwrap();
        let s = cfg.loop_config().support.expect("the brand answers its inbox");
        assert_eq!((s.inbox.as_str(), s.policy.support_email.as_str()), ("support", "support@example-shop.com"));
        assert_eq!(s.deployments[0].currency, Currency::EUR, "prices in the brand's currency");
        assert_eq!((s.every, s.max_output_tokens), (Millis(20_000), 1_024), "the defaults");
        assert!(with("").unwrap().loop_config().support.is_none(), "a brand without [support] answers nobody");
        for (text, want) in [
            (support.replace("vendor = \"anthropic\"", "vendor = \"openai\""), "is not a text vendor"),
            (
                support.replace("anthropic_key_env = \"ANTHROPIC_API_KEY\"\n", ""),
                "needs anthropic_url and anthropic_key_env",
            ),
            (support.replace("address = \"support@example-shop.com\"", "address = \"support\""), "an email address"),
            (support.replace("models = [", "every_s = 0\nmodels = ["), "must be positive"),
            (support.replace("input_per_mtok_cents = 100", "input_per_mtok_cents = -1"), "may not be negative"),
            (support.replace("models = [ {", "models = [ ]\nx = [ {"), "x"),
            (support.replace("models = [ {", "shopify_url = \"http://x\"\nmodels = [ {"), "go together"),
        ] {
            let m = message(with(&text));
            assert!(m.contains(want), "{want:?} not in {m:?}");
        }
        let none = support.replace(
            "models = [ { vendor = \"anthropic\", model = \"claude-haiku\", input_per_mtok_cents = 100, output_per_mtok_cents = 500 } ]",
            "models = []",
        );
        assert!(message(with(&none)).contains("at least one model"));
    }

    #[test]
    fn the_example_escalates_and_a_zero_escalation_is_refused() {
        let cfg = RunConfig::parse(EXAMPLE, "dlft.toml").unwrap();
        assert_eq!(cfg.loop_config().escalate_after, Some(Millis(10_000)));
        let zero = EXAMPLE.replace("escalate_after_s = 10", "escalate_after_s = 0");
        assert_ne!(zero, EXAMPLE, "the example sets escalate_after_s");
        let m = message(RunConfig::parse(&zero, "dlft.toml"));
        assert!(m.contains("escalate_after_s must be positive"), "{m}");
        let never = RunConfig::parse(&EXAMPLE.replace("escalate_after_s = 10", ""), "dlft.toml").unwrap();
        assert_eq!(never.loop_config().escalate_after, None, "left out: never escalate");
    }

    #[test]
    fn budgets_are_declared_per_brand() {
        let north = "[brands.north.budgets]\ntime_zone = \"America/New_York\"\n\
            caps = [{ purpose = \"refund\", window = \"lifetime\", limit = \"0.50\", currency = \"USD\" }]\n";
        let cfg = with(&format!("{CAPS}{}{north}", brand("north", "act_2", "USD"))).unwrap();
        let d = cfg.budgets_of(&BrandId::default());
        assert_eq!(d.describe(), "Europe/Berlin: payout daily 1500.00 EUR, payout monthly 20000.00 EUR");
        let n = cfg.budgets_of(&BrandId::new("north"));
        assert_eq!(n.describe(), "America/New_York: refund lifetime 0.50 USD");
        // No section: no caps, so no money moves.
        assert_eq!(with("").unwrap().budgets_of(&BrandId::default()).describe(), "UTC: no caps");
    }

    #[test]
    fn bad_budgets_are_named_and_refused() {
        let cases = [
            (CAPS.replace("Europe/Berlin", "Europe/Atlantis"), "field `budgets.time_zone`: unknown time zone"),
            (CAPS.replace("\"daily\"", "\"weekly\""), "field `budgets.caps[0].window`: unknown window \"weekly\""),
            (CAPS.replace("\"1500.00\"", "\"-5.00\""), "negative"),
            (CAPS.replace("\"1500.00\"", "\"15.005\""), "field `budgets.caps[0].limit`: not a decimal amount"),
            (CAPS.replace("\"1500.00\"", "1500"), "field `budgets.caps[0].limit`"),
            (CAPS.replace("currency = \"EUR\" }", "currency = \"EURO\" }"), "field `budgets.caps[0].currency`"),
            (CAPS.replace("\"monthly\"", "\"daily\""), "two daily payout caps in EUR"),
            (CAPS.replace("\"payout\", window = \"daily\"", "\"bribes\", window = \"daily\""), "unknown purpose"),
            (CAPS.replace("time_zone", "timezone"), "timezone"),
        ];
        for (text, want) in cases {
            let m = message(with(&text));
            assert!(m.starts_with("dlft.toml: ") && m.contains(want), "{want:?} not in {m:?}");
        }
    }

    #[test]
    fn the_example_pays_its_allow_list_from_a_folder() {
        let text = EXAMPLE.replace("\"REVOLUT_ACCESS_TOKEN\"", "\"DLFT_UNSET_REVOLUT_TOKEN\"");
        let cfg = RunConfig::parse(&text, "dlft.toml").unwrap();
        let p = cfg.loop_config().payouts.expect("the example pays suppliers");
        assert_eq!(p.from_account, "acc-brand");
        assert_eq!(p.counterparties.len(), 2);
        assert_eq!(p.counterparties[0].iban, "DE89370400440532013000", "normalised");
        assert_eq!(p.every, Millis::from_secs(2));
        // Its token is read from the environment, and named when missing.
        let m = cfg.bank_of(&BrandId::default(), "dlft.toml").map(drop).unwrap_err().to_string();
        assert!(m.contains("DLFT_UNSET_REVOLUT_TOKEN"), "{m}");
        // A brand without payouts pays nobody.
        assert!(with("").unwrap().loop_config().payouts.is_none());
    }

    #[test]
    fn bad_payouts_are_named_and_refused() {
        let payouts = EXAMPLE.split("\n[payouts]").nth(1).map(|p| format!("[payouts]{p}")).unwrap();
        let caps = CAPS;
        let cases = [
            (
                format!("{caps}{}", payouts.replace("DE89 3704", "DE88 3704")),
                "field `payouts.counterparties[0].iban`: malformed IBAN",
            ),
            (
                format!("{caps}{}", payouts.replace("\"EUR\" },\n  { id = \"cp-2\"", "\"EURO\" },\n  { id = \"cp-2\"")),
                "field `payouts.counterparties[0].currency`",
            ),
            (format!("{caps}{}", payouts.replace("id = \"cp-2\"", "id = \"cp-1\"")), "\"cp-1\" is listed twice"),
            (
                format!("{caps}{}", payouts.replace("currency = \"EUR\" },\n]", "currency = \"GBP\" },\n]")),
                "cp-2 is paid in GBP but brand default declares no payout cap in GBP",
            ),
            (payouts.clone(), "declares no payout cap in EUR"),
            (
                format!("{caps}{}", payouts.replace("# client_id = \"…\"", "client_id = \"app\"")),
                "the refresh grant needs",
            ),
            (format!("{caps}{}", payouts.replace("every_s = 2", "every_s = 0")), "field `payouts.every_s`"),
            (format!("{caps}{}", payouts.replace("payables_dir", "payable_dir")), "payable_dir"),
            (
                format!("{}{payouts}", cp_cap("cp-9", "EUR")),
                "section `budgets`: the payout daily cp-9 cap names counterparty \"cp-9\", which is not on brand \
                 default's payout allow-list",
            ),
            (cp_cap("cp-1", "EUR"), "which is not on brand default's payout allow-list"),
            (
                format!("{}{payouts}", cp_cap("cp-2", "GBP")),
                "the payout daily cp-2 cap is in GBP, but cp-2 is paid in EUR",
            ),
            (
                format!("{}{payouts}", CAPS.replace("\"EUR\" }", "\"EUR\", counterparty = \" \" }")),
                "names an empty counterparty",
            ),
            (
                CAPS.replace(
                    "\"payout\", window = \"daily\", limit = \"1500.00\", currency = \"EUR\"",
                    "\"refund\", window = \"daily\", limit = \"1500.00\", currency = \"EUR\", counterparty = \"cp-1\"",
                ),
                "field `budgets.caps[0].counterparty`: only payout caps name a counterparty",
            ),
        ];
        for (text, want) in cases {
            let m = message(with(&text));
            assert!(m.starts_with("dlft.toml: ") && m.contains(want), "{want:?} not in {m:?}");
        }
    }

    /// `[budgets]` with the example's brand caps and a daily cap on `cp`.
    fn cp_cap(cp: &str, currency: &str) -> String {
        CAPS.replace(
            "caps = [",
            &format!(
                "caps = [\n  {{ purpose = \"payout\", window = \"daily\", limit = \"5.00\", currency = \"{currency}\", counterparty = \"{cp}\" }},"
            ),
        )
    }

    #[test]
    fn a_counterparty_cap_bounds_one_payee_of_the_allow_list() {
        let payouts = EXAMPLE.split("\n[payouts]").nth(1).map(|p| format!("[payouts]{p}")).unwrap();
        let cfg = with(&format!("{}{payouts}", cp_cap("cp-2", "EUR"))).unwrap();
        let b = cfg.budgets_of(&BrandId::default());
        let caps: Vec<String> = b.caps.iter().map(|c| c.name()).collect();
        assert_eq!(caps, ["payout daily", "payout daily cp-2", "payout monthly"]);
        assert_eq!(b.caps_for(Purpose::Payout, dlft_core::money::Currency::EUR, Some("cp-2")).count(), 3);
        assert_eq!(b.caps_for(Purpose::Payout, dlft_core::money::Currency::EUR, Some("cp-1")).count(), 2);
    }

    #[test]
    fn a_missing_brand_token_is_named() {
        let cfg = with(&brand("north", "act_2", "EUR")).unwrap();
        let m = cfg.meta_config_of(&BrandId::new("north"), "dlft.toml").unwrap_err().to_string();
        assert!(m.contains("DLFT_UNSET_NORTH_TOKEN"), "{m}");
    }
}
