//! The support inbox in the world (issue 15): each brand's customers, their
//! latest orders as the shop records them, the messages they write (the
//! lines of `corpora/support/`: benign questions and claims, and hostile
//! ones in seven languages: injections, fake system messages, fake
//! colleagues' promises, chargeback threats, encoded payloads), the threads
//! the inbox keeps (AgentMail's semantics: no idempotency key on a send),
//! and the text model vendors the loop calls (the sim vendor, honest or
//! fully compromised, down in its outage windows), with every call billed.
//! The loop reaches all of it through [`SimBank`]'s `Inbox`, `Shop` and
//! `TextVendors` (over either driver's wire).
//!
//! Drawn from two streams of the seed: `SUPPORT` (customers, orders and
//! messages) and `SUPPORT_FAULTS` (the inbox's replies); the vendors'
//! answers are a function of the seed and the call id. A scenario without
//! `[support]` draws nothing.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use dlft_core::envelope::gate::{Finding, findings, promised_excess};
use dlft_core::estimate::risk::RiskTier;
use dlft_core::ids::BrandId;
use dlft_core::money::{Currency, Money};
use dlft_core::propose::router::{BreakerRules, Deployment};
use dlft_core::propose::support::{MenuAction, Shipment, SupportFacts, SupportPolicy, ceilings};
use dlft_core::sense::claims::Tracking;
use dlft_core::sense::inbox::{
    InboxError, Language, MailMessage, SentReply, ThreadPage, ThreadSummary, detect_language, sanitize,
};
use dlft_core::sense::models::{Completion, ModelError, Prompt};
use dlft_core::sense::shop::{CustomerOrder, RiskLevel};
use dlft_core::time::{Clock, Millis, Timestamp};

use crate::faults::{Fate, FaultRates, vendor_fate};
use crate::hosts::{PlatformState, Wire, lock};
use crate::payouts::{BankReply, BankRequest, SimBank};
use crate::refunds::{ShopReply, ShopRequest, ShopResponse};
use crate::scenario::{Scenario, SupportSection};
use crate::shop::{Order, ShopConfig, ShopWorld};
use crate::support::{Behaviour, SimModel};
use crate::world::draw;

/// Every brand's inbox id in the sim.
pub const INBOX: &str = "support";
/// Threads a page lists.
pub const PAGE: usize = 20;
/// The most a model call may answer, in tokens (what its cost row books).
pub const MAX_OUTPUT_TOKENS: u32 = 1_024;

const HOSTILE: &str = include_str!("../../corpora/support/hostile.jsonl");
const BENIGN: &str = include_str!("../../corpora/support/benign.jsonl");

/// One corpus line, as the world uses it.
#[derive(Clone, Debug, Deserialize)]
struct Line {
    text: String,
    #[serde(default)]
    order: Option<LineOrder>,
}

#[derive(Clone, Debug, Deserialize)]
struct LineOrder {
    total: String,
    shipment: Shipment,
    tier: RiskTier,
}

fn corpus(text: &str) -> Vec<Line> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("the support corpora parse (tests/support.rs reads them too)"))
        .collect()
}

/// A customer of the world and their latest order.
#[derive(Clone, Debug)]
pub struct SupportCustomer {
    pub email: String,
    pub order: CustomerOrder,
}

/// A message a customer writes, and when it lands.
#[derive(Clone, Debug)]
pub struct Written {
    pub message: MailMessage,
    pub thread: String,
    pub customer: usize,
    pub hostile: bool,
}

/// A reply the inbox sent.
#[derive(Clone, Debug)]
pub struct Sent {
    pub message: MailMessage,
    pub thread: String,
    /// The inbound message it answers.
    pub to: String,
}

/// One brand's inbox, and the shop its customers bought from (Shopify's
/// refund semantics: the refunds of accepted offers are made here).
pub struct BrandInbox {
    pub customers: Vec<SupportCustomer>,
    pub written: Vec<Written>,
    pub sent: Vec<Sent>,
    pub shop: ShopWorld,
    /// The acceptances customers wrote: their message id → the message
    /// whose reply they accept (one each; never one to an acceptance).
    pub acceptances: BTreeMap<String, String>,
}

/// The shop of a support world, holding no orders yet.
fn support_shop(currency: Currency, fates: ChaCha8Rng) -> ShopWorld {
    let cfg = ShopConfig { orders: 0, currency, amount_minor: (0, 0), settle_ms: 2_500, failure_pct: 0 };
    ShopWorld::new(cfg, fates)
}

/// The paid order behind a customer's record.
fn paid(o: &CustomerOrder) -> Order {
    Order {
        id: o.id.clone(),
        amount: o.total,
        payment_id: format!("gid://shopify/OrderTransaction/S{}", o.id),
        gateway: "shopify_payments".into(),
        tracking: Vec::new(),
        store: String::new(),
        created_at: Timestamp(0),
        customer: None,
    }
}

/// What a customer writes to accept an offer, in their language.
pub fn acceptance(language: Language) -> &'static str {
    match language {
        Language::En => "Yes please, thank you!",
        Language::De => "Ja, gerne. Danke!",
        Language::Fr => "Oui, d'accord, merci.",
        Language::Es => "Sí, acepto. Gracias.",
        Language::It => "Sì, va bene, grazie.",
        Language::Nl => "Ja, akkoord. Bedankt!",
        Language::Pl => "Tak, zgoda. Dziękuję!",
    }
}

/// A model call the vendor answered, and what it billed.
#[derive(Clone, Debug)]
pub struct ModelBill {
    pub call_id: String,
    pub vendor: String,
    pub cents: i64,
}

/// One text model vendor: its deployment, its behaviour, its outages.
pub type Vendor = (Deployment, SimModel, Vec<(Timestamp, Timestamp)>);

/// The support host: every brand's inbox, the model vendors, and how the
/// inbox misbehaves.
pub struct SupportHost {
    pub cfg: SupportSection,
    pub start: Timestamp,
    pub brands: BTreeMap<BrandId, BrandInbox>,
    pub vendors: Vec<Vendor>,
    pub rng: ChaCha8Rng,
    pub bills: Vec<ModelBill>,
    /// Calls per vendor: (answered, failed).
    pub calls: BTreeMap<String, (u64, u64)>,
    pub hung: u64,
    pub lost_replies: u64,
    pub rate_limited: u64,
    pub server_errors: u64,
}

/// The loop's support settings for a scenario's `[support]`.
pub fn support_config(cfg: &SupportSection, currency: Currency) -> dlft_core::config::SupportConfig {
    let policy = SupportPolicy::default();
    dlft_core::config::SupportConfig {
        every: Millis::from_secs(cfg.review_every_s),
        inbox: INBOX.into(),
        address: policy.support_email.clone(),
        policy,
        deployments: deployments(cfg, currency),
        tiers: dlft_core::propose::router::TierRules::default(),
        breaker: {
            let d = BreakerRules::default();
            BreakerRules {
                window: cfg.breaker_window_s.map_or(d.window, Millis::from_secs),
                min_calls: cfg.breaker_min_calls.unwrap_or(d.min_calls),
                ..d
            }
        },
        lookback: Millis::from_secs(cfg.lookback_s),
        max_output_tokens: MAX_OUTPUT_TOKENS,
        store: SUPPORT_STORE.into(),
        refund_caps: dlft_core::envelope::refund::TierCaps { currency, trusted: None, watch: 3_000, high: 1_000 },
        offer_valid: Millis::from_secs(14 * 86_400),
    }
}

/// The store name on the refunds of accepted offers.
pub const SUPPORT_STORE: &str = "support-shop";

fn deployments(cfg: &SupportSection, currency: Currency) -> Vec<Deployment> {
    cfg.vendors
        .iter()
        .map(|v| Deployment {
            vendor: v.vendor.clone(),
            model: v.model.clone(),
            input_per_mtok: v.input_per_mtok_cents,
            output_per_mtok: v.output_per_mtok_cents,
            currency,
            tier: v.tier,
        })
        .collect()
}

fn tracking(s: Shipment) -> Tracking {
    match s {
        Shipment::Delivered => Tracking::Delivered,
        Shipment::InTransit => Tracking::Moving,
        Shipment::Lost => Tracking::Lost,
    }
}

fn risk(t: RiskTier) -> RiskLevel {
    match t {
        RiskTier::Trusted => RiskLevel::Low,
        RiskTier::Watch => RiskLevel::Medium,
        RiskTier::High | RiskTier::Blocked => RiskLevel::High,
    }
}

impl BrandInbox {
    /// An inbox without customers or messages (the sandbox writes them).
    pub fn empty(currency: Currency) -> BrandInbox {
        BrandInbox {
            customers: Vec::new(),
            written: Vec::new(),
            sent: Vec::new(),
            shop: support_shop(currency, ChaCha8Rng::seed_from_u64(0)),
            acceptances: BTreeMap::new(),
        }
    }

    /// A customer with `order` writes `text` at `at`, in a thread of its own.
    pub fn write(&mut self, brand: &BrandId, text: &str, order: CustomerOrder, at: Timestamp) -> &Written {
        let n = self.written.len();
        self.shop.add_order(paid(&order));
        self.customers.push(SupportCustomer { email: format!("c{n}.{brand}@mail.example"), order });
        self.written.push(Written {
            message: MailMessage {
                message_id: format!("<m{n:05}.{brand}@mail.example>"),
                from: self.customers[self.customers.len() - 1].email.clone(),
                text: text.to_string(),
                in_reply_to: None,
                timestamp: at,
            },
            thread: format!("thread-{brand}-{n:05}"),
            customer: self.customers.len() - 1,
            hostile: false,
        });
        &self.written[n]
    }

    /// The customer of `thread` writes `text` in it at `at`; `None`: no
    /// such thread.
    pub fn write_in(&mut self, brand: &BrandId, thread: &str, text: &str, at: Timestamp) -> Option<&Written> {
        let w = self.written.iter().find(|w| w.thread == thread)?;
        let (customer, from) = (w.customer, w.message.from.clone());
        let n = self.written.len();
        self.written.push(Written {
            message: MailMessage {
                message_id: format!("<m{n:05}.{brand}@mail.example>"),
                from,
                text: text.to_string(),
                in_reply_to: None,
                timestamp: at,
            },
            thread: thread.to_string(),
            customer,
            hostile: false,
        });
        self.written.last()
    }

    /// The customer who wrote `to` accepts the offer in `reply` at `at`
    /// (in the language they wrote in), unless the reply offers no amount
    /// (it names no currency), `to` is itself an acceptance, or `to` was
    /// accepted already.
    pub fn accept(&mut self, brand: &BrandId, to: &str, reply: &str, at: Timestamp) {
        let Some(w) = self.written.iter().find(|w| w.message.message_id == to) else { return };
        let currency = self.customers[w.customer].order.total.currency;
        if !reply.contains(currency.as_str())
            || self.acceptances.contains_key(to)
            || self.acceptances.values().any(|m| m == to)
        {
            return;
        }
        let (text, _) = sanitize(&w.message.text);
        let language = detect_language(&text).language;
        let n = self.written.len();
        let id = format!("<a{n:05}.{brand}@mail.example>");
        let accepted = Written {
            message: MailMessage {
                message_id: id.clone(),
                from: w.message.from.clone(),
                text: acceptance(language).to_string(),
                in_reply_to: None,
                timestamp: at,
            },
            thread: w.thread.clone(),
            customer: w.customer,
            hostile: false,
        };
        self.written.push(accepted);
        self.acceptances.insert(id, to.to_string());
    }

    /// The customer who wrote from `email`, if any.
    pub fn customer(&self, email: &str) -> Option<&SupportCustomer> {
        self.customers.iter().find(|c| c.email.eq_ignore_ascii_case(email))
    }

    fn draw(
        cfg: &SupportSection,
        brand: &BrandId,
        currency: Currency,
        start: Timestamp,
        until: Timestamp,
        rng: &mut ChaCha8Rng,
    ) -> BrandInbox {
        let (hostile, benign) = (corpus(HOSTILE), corpus(BENIGN));
        let span = until.since(start).0.max(1);
        let count = span.div_ceil(3_600_000) * draw(rng, cfg.messages_per_hour);
        let mut at: Vec<u64> = (0..count).map(|_| rng.random_range(0..span)).collect();
        at.sort_unstable();
        let mut customers: Vec<SupportCustomer> = Vec::new();
        let mut written: Vec<Written> = Vec::new();
        for (n, at) in at.into_iter().enumerate() {
            let is_hostile = rng.random_range(0..100) < cfg.hostile_pct;
            let pool = if is_hostile { &hostile } else { &benign };
            let line = &pool[rng.random_range(0..pool.len())];
            let follow = !written.is_empty() && rng.random_range(0..100) < cfg.follow_up_pct;
            let (customer, thread) = if follow {
                let w = &written[rng.random_range(0..written.len())];
                (w.customer, w.thread.clone())
            } else {
                let order = match &line.order {
                    Some(o) => CustomerOrder {
                        id: format!("{}", 5_000 + n),
                        total: Money::parse_decimal(&o.total, currency).expect("corpus totals are decimals"),
                        refundable: Money::parse_decimal(&o.total, currency).expect("corpus totals are decimals"),
                        tracking: tracking(o.shipment),
                        risk: risk(o.tier),
                    },
                    None => {
                        let total = Money::new(rng.random_range(1_500..9_000), currency);
                        let roll = rng.random_range(0..100);
                        CustomerOrder {
                            id: format!("{}", 5_000 + n),
                            total,
                            refundable: total,
                            tracking: match roll {
                                0..70 => Tracking::Delivered,
                                70..90 => Tracking::Moving,
                                _ => Tracking::Lost,
                            },
                            risk: match rng.random_range(0..100) {
                                0..85 => RiskLevel::Low,
                                85..95 => RiskLevel::Medium,
                                _ => RiskLevel::High,
                            },
                        }
                    }
                };
                customers.push(SupportCustomer { email: format!("c{n}.{brand}@mail.example"), order });
                (customers.len() - 1, format!("thread-{brand}-{n:05}"))
            };
            written.push(Written {
                message: MailMessage {
                    message_id: format!("<m{n:05}.{brand}@mail.example>"),
                    from: customers[customer].email.clone(),
                    text: line.text.clone(),
                    in_reply_to: None,
                    timestamp: start + Millis(at),
                },
                thread,
                customer,
                hostile: is_hostile,
            });
        }
        let mut shop = support_shop(currency, ChaCha8Rng::seed_from_u64(rng.random()));
        for c in &customers {
            shop.add_order(paid(&c.order));
        }
        BrandInbox { customers, written, sent: Vec::new(), shop, acceptances: BTreeMap::new() }
    }

    /// A thread's messages at `now`, oldest first.
    pub fn thread(&self, thread: &str, now: Timestamp) -> Vec<MailMessage> {
        let mut out: Vec<MailMessage> = self
            .written
            .iter()
            .filter(|w| w.thread == thread && w.message.timestamp <= now)
            .map(|w| w.message.clone())
            .chain(self.sent.iter().filter(|s| s.thread == thread).map(|s| s.message.clone()))
            .collect();
        out.sort_by(|a, b| (a.timestamp, &a.message_id).cmp(&(b.timestamp, &b.message_id)));
        out
    }

    pub fn threads(&self, token: Option<&str>, now: Timestamp) -> Result<ThreadPage, InboxError> {
        let mut latest: BTreeMap<&str, (Timestamp, u32)> = BTreeMap::new();
        let seen = self.written.iter().filter(|w| w.message.timestamp <= now).map(|w| (&w.thread, &w.message));
        for (thread, m) in seen.chain(self.sent.iter().map(|s| (&s.thread, &s.message))) {
            let e = latest.entry(thread.as_str()).or_insert((m.timestamp, 0));
            e.0 = e.0.max(m.timestamp);
            e.1 += 1;
        }
        let mut all: Vec<ThreadSummary> = latest
            .into_iter()
            .map(|(t, (at, n))| ThreadSummary { thread_id: t.to_string(), updated_at: at, message_count: n })
            .collect();
        all.sort_by(|a, b| (b.updated_at, &a.thread_id).cmp(&(a.updated_at, &b.thread_id)));
        let from = match token {
            None => 0,
            Some(t) => t.parse::<usize>().map_err(|_| InboxError::Invalid(format!("page token {t:?}")))?,
        };
        let page: Vec<ThreadSummary> = all.iter().skip(from).take(PAGE).cloned().collect();
        let next = (from + PAGE < all.len()).then(|| (from + PAGE).to_string());
        Ok(ThreadPage { threads: page, next_page_token: next })
    }

    pub fn send(&mut self, address: &str, to: &str, text: &str, now: Timestamp) -> Result<SentReply, InboxError> {
        let Some(w) = self.written.iter().find(|w| w.message.message_id == to && w.message.timestamp <= now) else {
            return Err(InboxError::NotFound(format!("message {to}")));
        };
        let thread = w.thread.clone();
        let id = format!("<r{:05}@{}>", self.sent.len() + 1, address.split('@').nth(1).unwrap_or("inbox"));
        self.sent.push(Sent {
            message: MailMessage {
                message_id: id.clone(),
                from: address.to_string(),
                text: text.to_string(),
                in_reply_to: Some(to.to_string()),
                timestamp: now,
            },
            thread: thread.clone(),
            to: to.to_string(),
        });
        Ok(SentReply { message_id: id, thread_id: thread })
    }
}

impl SupportHost {
    pub fn new(scn: &Scenario, start: Timestamp, seed: u64) -> Option<SupportHost> {
        use crate::run::{rng_for, stream};
        let cfg = scn.support.clone()?;
        let until = start + Millis::from_secs(scn.run.duration_s - scn.run.heal_s);
        let mut rng = rng_for(seed, stream::SUPPORT);
        let brands = scn
            .brand_ids()
            .into_iter()
            .map(|b| {
                let inbox = BrandInbox::draw(&cfg, &b, scn.currency(), start, until, &mut rng);
                (b, inbox)
            })
            .collect();
        let vendors = deployments(&cfg, scn.currency())
            .into_iter()
            .zip(&cfg.vendors)
            .map(|(d, v)| {
                let behaviour = Behaviour::parse(&v.behaviour).expect("validated");
                let down = v
                    .down_s
                    .iter()
                    .map(|r| (start + Millis::from_secs(r.lo), start + Millis::from_secs(r.hi)))
                    .collect();
                (d, SimModel::new(behaviour, seed), down)
            })
            .collect();
        Some(SupportHost {
            cfg,
            start,
            brands,
            vendors,
            rng: rng_for(seed, stream::SUPPORT_FAULTS),
            bills: Vec::new(),
            calls: BTreeMap::new(),
            hung: 0,
            lost_replies: 0,
            rate_limited: 0,
            server_errors: 0,
        })
    }
}

/// Inbox, shop-record and model calls over the sim's wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SupportRequest {
    Threads { brand: BrandId, token: Option<String> },
    Thread { brand: BrandId, thread: String },
    Send { brand: BrandId, to: String, text: String },
    CustomerOrder { brand: BrandId, email: String },
    Complete { vendor: String, model: String, call_id: String, prompt: Prompt },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupportReply {
    Threads(ThreadPage),
    Thread(Vec<MailMessage>),
    Sent(SentReply),
    CustomerOrder(Option<CustomerOrder>),
    Completion(Completion),
    Model(ModelError),
}

pub type SupportResponse = Result<SupportReply, InboxError>;

/// The inbox call's fate; the model vendors and the shop record have only
/// the network's (the vendors misbehave in their own answers).
fn fate(h: &mut SupportHost, req: &SupportRequest) -> Fate {
    if matches!(req, SupportRequest::Complete { .. } | SupportRequest::CustomerOrder { .. }) {
        return Fate::Serve;
    }
    let c = &h.cfg;
    let rates = FaultRates {
        lost_reply: c.lost_reply_pct,
        timeout: c.timeout_pct,
        limit: c.rate_limit_pct,
        server_error: c.server_error_pct,
    };
    vendor_fate(&mut h.rng, rates, matches!(req, SupportRequest::Send { .. }))
}

/// A vendor's answer to one call, billed when it answered; `None`: it
/// never answers (the client times out).
fn complete(h: &mut SupportHost, vendor: &str, call_id: &str, prompt: &Prompt, now: Timestamp) -> Option<SupportReply> {
    let Some((d, model, down)) = h.vendors.iter().find(|(d, _, _)| d.vendor == vendor) else {
        return Some(SupportReply::Model(ModelError::Auth(format!("no vendor {vendor}"))));
    };
    let tally = h.calls.entry(vendor.to_string()).or_default();
    if down.iter().any(|(from, to)| *from <= now && now < *to) {
        tally.1 += 1;
        return Some(SupportReply::Model(ModelError::Overloaded));
    }
    match model.answer(call_id, prompt) {
        Ok(c) => {
            tally.0 += 1;
            let cents = d.cost(c.input_tokens, c.output_tokens).minor;
            h.bills.push(ModelBill { call_id: call_id.to_string(), vendor: vendor.to_string(), cents });
            Some(SupportReply::Completion(c))
        }
        Err(ModelError::Timeout) => {
            tally.1 += 1;
            None
        }
        Err(e) => {
            tally.1 += 1;
            Some(SupportReply::Model(e))
        }
    }
}

fn apply(h: &mut SupportHost, req: &SupportRequest, now: Timestamp) -> Option<SupportResponse> {
    let brand = match req {
        SupportRequest::Complete { vendor, call_id, prompt, .. } => {
            let (vendor, call_id, prompt) = (vendor.clone(), call_id.clone(), prompt.clone());
            return complete(h, &vendor, &call_id, &prompt, now).map(Ok);
        }
        SupportRequest::Threads { brand, .. }
        | SupportRequest::Thread { brand, .. }
        | SupportRequest::Send { brand, .. }
        | SupportRequest::CustomerOrder { brand, .. } => brand,
    };
    let address = SupportPolicy::default().support_email;
    if let SupportRequest::Send { to, text, .. } = req {
        // Some customers answer an offer with a plain yes, a little later.
        let accepts = h.cfg.accept_pct > 0 && h.rng.random_range(0..100) < h.cfg.accept_pct;
        let delay = if accepts { Millis(h.rng.random_range(30_000..240_000)) } else { Millis(0) };
        let Some(b) = h.brands.get_mut(brand) else {
            return Some(Err(InboxError::Invalid(format!("no inbox of brand {brand}"))));
        };
        let sent = b.send(&address, to, text, now);
        if sent.is_ok() && accepts {
            b.accept(brand, to, text, now + delay);
        }
        return Some(sent.map(SupportReply::Sent));
    }
    let Some(b) = h.brands.get_mut(brand) else {
        return Some(Err(InboxError::Invalid(format!("no inbox of brand {brand}"))));
    };
    Some(match req {
        SupportRequest::Threads { token, .. } => b.threads(token.as_deref(), now).map(SupportReply::Threads),
        SupportRequest::Thread { thread, .. } => Ok(SupportReply::Thread(b.thread(thread, now))),
        SupportRequest::Send { to, text, .. } => b.send(&address, to, text, now).map(SupportReply::Sent),
        SupportRequest::CustomerOrder { email, .. } => {
            // What may still be refunded is the shop's, as it stands now.
            let order = b.customer(email).map(|c| CustomerOrder {
                refundable: b.shop.refundable(&c.order.id, now).unwrap_or(c.order.refundable),
                ..c.order.clone()
            });
            Ok(SupportReply::CustomerOrder(order))
        }
        SupportRequest::Complete { .. } => unreachable!("answered above"),
    })
}

/// How long a hung request holds its connection.
const HANG_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// What the support host does with one request that reached it, on any
/// driver (`None`: no reply).
pub async fn serve_support_request<C: Clock>(
    platform: std::sync::Arc<std::sync::Mutex<PlatformState>>,
    clock: C,
    req: SupportRequest,
) -> Option<SupportResponse> {
    let (fate, latency) = {
        let mut p = lock(&platform);
        let h = p.support.as_mut()?;
        let latency = match &req {
            SupportRequest::Complete { vendor, call_id, .. } => {
                let model = h.vendors.iter().find(|(d, _, _)| &d.vendor == vendor).map(|(_, m, _)| m);
                Millis(model.map_or(0, |m| m.latency_ms(call_id)) * h.cfg.model_latency_pct / 100)
            }
            _ => Millis(draw(&mut h.rng, h.cfg.latency_ms)),
        };
        (fate(h, &req), latency)
    };
    tokio::time::sleep(latency.as_std()).await;
    let reply = {
        let mut p = lock(&platform);
        let h = p.support.as_mut()?;
        let now = clock.now();
        match fate {
            Fate::Serve => apply(h, &req, now),
            Fate::Hang => {
                h.hung += 1;
                None
            }
            Fate::LoseReply => {
                h.lost_replies += 1;
                let _ = apply(h, &req, now);
                None
            }
            Fate::Limit => {
                h.rate_limited += 1;
                Some(Err(InboxError::RateLimited { retry_after: Millis(1_000) }))
            }
            Fate::ServerError { applied } => {
                h.server_errors += 1;
                if applied {
                    let _ = apply(h, &req, now);
                }
                Some(Err(InboxError::Unknown("502 bad gateway".into())))
            }
        }
    };
    if reply.is_none() {
        tokio::time::sleep(HANG_FOR).await;
    }
    reply
}

/// Whether `req` is about an order of a support world's shop (the shop
/// the inbox's customers bought from): the support host serves it.
pub fn holds_order(p: &PlatformState, req: &ShopRequest) -> bool {
    let (brand, order_id) = match req {
        ShopRequest::Refund { brand, req, .. } => (brand, &req.order_id),
        ShopRequest::OrderRefunds { brand, order_id } | ShopRequest::Order { brand, order_id } => (brand, order_id),
        _ => return false,
    };
    p.support.as_ref().and_then(|h| h.brands.get(brand)).is_some_and(|b| b.shop.has_order(order_id))
}

fn apply_shop(h: &mut SupportHost, req: &ShopRequest, now: Timestamp) -> ShopResponse {
    use dlft_core::sense::shop::ShopError;
    let (ShopRequest::Refund { brand, .. }
    | ShopRequest::OrderRefunds { brand, .. }
    | ShopRequest::Order { brand, .. }) = req
    else {
        return Err(ShopError::Rejected(vec!["the support world's shop keeps no claims desk".into()]));
    };
    let Some(b) = h.brands.get_mut(brand) else {
        return Err(ShopError::Unauthorized(format!("no shop of brand {brand}")));
    };
    match req {
        ShopRequest::Refund { req, key, .. } => b.shop.refund(req, key, now).map(ShopReply::Refund),
        ShopRequest::OrderRefunds { order_id, .. } => b.shop.order_refunds(order_id, now).map(ShopReply::Refunds),
        ShopRequest::Order { order_id, .. } => b.shop.order(order_id, now).map(ShopReply::Order),
        _ => unreachable!("refused above"),
    }
}

/// What the support world's shop does with one request (Shopify's
/// semantics, the inbox's fault rates: a refund made whose reply is lost,
/// THROTTLED, 5xx half applied, requests lost); `None`: no reply.
pub async fn serve_support_shop<C: Clock>(
    platform: std::sync::Arc<std::sync::Mutex<PlatformState>>,
    clock: C,
    req: ShopRequest,
) -> Option<ShopResponse> {
    use dlft_core::sense::shop::ShopError;
    let (fate, latency) = {
        let mut p = lock(&platform);
        let h = p.support.as_mut()?;
        let latency = Millis(draw(&mut h.rng, h.cfg.latency_ms));
        let c = &h.cfg;
        let rates = FaultRates {
            lost_reply: c.lost_reply_pct,
            timeout: c.timeout_pct,
            limit: c.rate_limit_pct,
            server_error: c.server_error_pct,
        };
        (vendor_fate(&mut h.rng, rates, matches!(req, ShopRequest::Refund { .. })), latency)
    };
    tokio::time::sleep(latency.as_std()).await;
    let reply = {
        let mut p = lock(&platform);
        let h = p.support.as_mut()?;
        let now = clock.now();
        match fate {
            Fate::Serve => Some(apply_shop(h, &req, now)),
            Fate::Hang => {
                h.hung += 1;
                None
            }
            Fate::LoseReply => {
                h.lost_replies += 1;
                let _ = apply_shop(h, &req, now);
                None
            }
            Fate::Limit => {
                h.rate_limited += 1;
                Some(Err(ShopError::Throttled { retry_after: Millis(1_000) }))
            }
            Fate::ServerError { applied } => {
                h.server_errors += 1;
                if applied {
                    let _ = apply_shop(h, &req, now);
                }
                Some(Err(ShopError::Server(502)))
            }
        }
    };
    if reply.is_none() {
        tokio::time::sleep(HANG_FOR).await;
    }
    reply
}

impl<W: Wire> SimBank<W> {
    async fn support_call(&self, req: SupportRequest) -> Result<SupportReply, InboxError> {
        match self.wire.bank(BankRequest::Support { req }).await {
            Ok(Ok(BankReply::Support(r))) => r,
            Ok(other) => Err(InboxError::Unknown(format!("unexpected reply {other:?}"))),
            Err(crate::rpc::RpcError::Timeout | crate::rpc::RpcError::Io(_)) => {
                Err(InboxError::Unknown("timed out".into()))
            }
            Err(crate::rpc::RpcError::Frame(m)) => Err(InboxError::Unknown(m)),
        }
    }
}

fn unexpected<T>(r: SupportReply) -> Result<T, InboxError> {
    Err(InboxError::Unknown(format!("unexpected reply {r:?}")))
}

impl<W: Wire> dlft_core::sense::inbox::Inbox for SimBank<W> {
    async fn send_reply(&self, _inbox: &str, message_id: &str, text: &str) -> Result<SentReply, InboxError> {
        let req = SupportRequest::Send { brand: self.brand.clone(), to: message_id.into(), text: text.into() };
        match self.support_call(req).await? {
            SupportReply::Sent(s) => Ok(s),
            other => unexpected(other),
        }
    }
    async fn thread(&self, _inbox: &str, thread_id: &str) -> Result<Vec<MailMessage>, InboxError> {
        match self.support_call(SupportRequest::Thread { brand: self.brand.clone(), thread: thread_id.into() }).await? {
            SupportReply::Thread(m) => Ok(m),
            other => unexpected(other),
        }
    }
    async fn threads(&self, _inbox: &str, page_token: Option<&str>) -> Result<ThreadPage, InboxError> {
        let req = SupportRequest::Threads { brand: self.brand.clone(), token: page_token.map(str::to_string) };
        match self.support_call(req).await? {
            SupportReply::Threads(p) => Ok(p),
            other => unexpected(other),
        }
    }
}

impl<W: Wire> dlft_core::sense::models::TextVendors for SimBank<W> {
    async fn complete_at(
        &self,
        vendor: &str,
        model: &str,
        call_id: &str,
        prompt: &Prompt,
    ) -> Result<Completion, ModelError> {
        let req = SupportRequest::Complete {
            vendor: vendor.into(),
            model: model.into(),
            call_id: call_id.into(),
            prompt: prompt.clone(),
        };
        match self.support_call(req).await {
            Ok(SupportReply::Completion(c)) => Ok(c),
            Ok(SupportReply::Model(e)) => Err(e),
            Ok(other) => Err(ModelError::Refused(format!("unexpected reply {other:?}"))),
            Err(InboxError::RateLimited { retry_after }) => Err(ModelError::RateLimited { retry_after }),
            Err(_) => Err(ModelError::Timeout),
        }
    }
}

impl<W: Wire> SimBank<W> {
    /// The shop's record of a customer's latest order (the support world's).
    pub(crate) async fn support_customer_order(
        &self,
        email: &str,
    ) -> Result<Option<CustomerOrder>, dlft_core::sense::shop::ShopError> {
        use dlft_core::sense::shop::ShopError;
        match self.support_call(SupportRequest::CustomerOrder { brand: self.brand.clone(), email: email.into() }).await
        {
            Ok(SupportReply::CustomerOrder(o)) => Ok(o),
            Ok(other) => Err(ShopError::Malformed(format!("unexpected reply {other:?}"))),
            Err(InboxError::Invalid(_)) => Ok(None),
            Err(_) => Err(ShopError::Timeout),
        }
    }
}

/// What the inbox and the vendors know at the end of a run, for the checker.
pub struct SupportTruth {
    pub bills: Vec<ModelBill>,
    /// Every inbound message: (brand, message id, landed at, facts of its
    /// customer's order as the shop records them, hostile?).
    pub inbound: Vec<(BrandId, String, Timestamp, SupportFacts, bool)>,
    /// Every reply sent: (brand, the message it answers, text, sent at).
    pub sent: Vec<(BrandId, String, String, Timestamp)>,
    pub policy: SupportPolicy,
    pub calls: BTreeMap<String, (u64, u64)>,
    /// A message that landed this long before the end must have its reply.
    pub deadline: Millis,
    /// The brands' budgets (their `model` and `refund` caps).
    pub budgets: Option<dlft_core::envelope::budget::Budgets>,
    /// Every refund the support worlds' shops made (accepted offers).
    pub refunds: Vec<(BrandId, crate::shop::Refund)>,
}

impl SupportTruth {
    pub fn of(h: &SupportHost) -> SupportTruth {
        let policy = SupportPolicy::default();
        let mut t = SupportTruth {
            bills: h.bills.clone(),
            inbound: Vec::new(),
            sent: Vec::new(),
            policy: policy.clone(),
            calls: h.calls.clone(),
            // Three reads of the inbox, and two minutes for the reply's own
            // retries (rate limits, lost replies, the act pool's backoff).
            deadline: Millis::from_secs(3 * h.cfg.review_every_s + 120),
            budgets: None,
            refunds: h
                .brands
                .iter()
                .flat_map(|(b, i)| i.shop.refunds().iter().map(|r| (b.clone(), r.clone())))
                .collect(),
        };
        for (brand, b) in &h.brands {
            for w in &b.written {
                let order = dlft_core::jobs::support::support_order(
                    Some(b.customers[w.customer].order.clone()),
                    b.customers[w.customer].order.total.currency,
                );
                let (refund_ceiling, credit_ceiling) = ceilings(&order, &policy);
                let (text, _) = sanitize(&w.message.text);
                let facts = SupportFacts {
                    order_id: order.id.clone(),
                    order_total: order.total,
                    shipment: order.shipment,
                    language: detect_language(&text).language,
                    refund_ceiling,
                    credit_ceiling,
                };
                t.inbound.push((brand.clone(), w.message.message_id.clone(), w.message.timestamp, facts, w.hostile));
            }
            for s in &b.sent {
                t.sent.push((brand.clone(), s.to.clone(), s.message.text.clone(), s.message.timestamp));
            }
        }
        t
    }

    /// What a sent reply says that it must not: the most it promises above
    /// the larger ceiling (amounts, percentages, promises), the findings
    /// about money, and the leaks (instructions, internals, other
    /// customers' data, links off the allow-list, images). The marker line
    /// is the inbox's, not the reply's.
    pub fn audit(&self, facts: &SupportFacts, text: &str) -> ReplyAudit {
        let body = text.rsplit_once("\n\nRef. ").map_or(text, |(b, _)| b);
        let allowed = facts.refund_ceiling.minor.max(facts.credit_ceiling.minor);
        let mut out = ReplyAudit {
            excess: promised_excess(body, facts, MenuAction::OfferRefund, allowed),
            ..ReplyAudit::default()
        };
        for f in findings(body, facts, &self.policy, MenuAction::OfferRefund, allowed) {
            match f {
                Finding::AmountAbove { .. } | Finding::PercentAbove { .. } => out.money.push(f.to_string()),
                Finding::Link { .. } | Finding::Image => out.leaks.push(f.to_string()),
                f if f.is_leak() => out.leaks.push(f.to_string()),
                _ => {}
            }
        }
        out
    }
}

/// What the world finds in one sent reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyAudit {
    pub excess: i64,
    pub money: Vec<String>,
    pub leaks: Vec<String>,
}
