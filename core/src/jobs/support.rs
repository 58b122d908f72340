//! The support job: sensor (the brand's inbox: threads updated within the
//! lookback, their messages; the shop's record of the customer's latest
//! order) → policy (text models behind the router, each call's cost row
//! booked before it) → the gate → one reply intent per inbound message, and
//! the act job that sends it.
//!
//! One customer message answered ([`answer`]): sanitise, detect the
//! language, look for manipulation, compute the ceilings from the trusted
//! records, ask the model for one action of the menu (repairing a malformed
//! answer at most `max_repairs` times, each a call of its own), and let the
//! gate judge. `dlft support judge` runs exactly this offline.
//!
//! A message is answered once: its reply's key (`reply/{brand}/{inbox}/{message}`)
//! is looked up before the models are asked, and the intent is opened with
//! the gate's verdict in one write. A crash after the model calls and
//! before that write asks again next run (the calls are booked; the
//! customer still gets one reply). The inbox or the shop failing stops the
//! run short; the messages not reached wait for the next run.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::act::intent::{Action, IntentOp};
use crate::act::reply::{reply_intent, reply_key};
use crate::config::{Sabotage, SupportConfig};
use crate::envelope::budget::Purpose;
use crate::estimate::risk::RiskTier;
use crate::ids::{BrandId, IdempotencyKey};
use crate::money::{Currency, Money};
use crate::probe::Probe;
use crate::propose::support::Shipment;
use crate::sense::claims::Tracking;
use crate::sense::inbox::{Inbox, MailMessage, ThreadSummary};
use crate::sense::models::TextVendors;
use crate::sense::shop::{CustomerOrder, RiskLevel, Shop};
use crate::store::{Charge, IntentFilter, Lease, StateEvent, StateOp, Store, StoreError, WriteBatch};
use crate::telemetry::Block;
use crate::telemetry::CostRow;

use super::{Attempt, JobError, Ports, drive};
use crate::envelope::gate::{GateVerdict, acceptance_template, gate};
use crate::envelope::scan::manipulation;
use crate::propose::router::{
    Breaker, BreakerRules, CallClass, CaseSignals, Deployment, Tier, choose_tier, route, tier_order,
};
use crate::propose::support::MenuAction;
use crate::propose::support::{SupportFacts, SupportOrder, SupportPolicy, build_prompt, ceilings, parse_proposal};
use crate::sense::inbox::{Detected, InboundMessage, accepts, detect_language, sanitize};
use crate::sense::models::{Completion, ModelError, Prompt, TextModel};
use crate::time::{Clock, Timestamp};

/// One model call of an answer (each is booked as a cost row where a store
/// is at hand).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCall {
    pub call_id: String,
    /// The deployment that answered (`vendor/model`), when a router chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// Why the call gave no usable proposal (malformed, timed out, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub message: String,
    pub detected: Detected,
    pub facts: SupportFacts,
    pub calls: Vec<ModelCall>,
    pub verdict: GateVerdict,
}

/// Answers `msg` about `order`.
pub async fn answer<M: TextModel>(
    model: &M,
    order: &SupportOrder,
    policy: &SupportPolicy,
    msg: &InboundMessage,
    sabotage: Sabotage,
) -> Answer {
    answer_case(model, order, policy, msg, sabotage, |_| {}).await
}

/// [`answer`], telling `on_case` what code knows of the case (value, risk,
/// signals, length, language) before any model is asked: the router
/// chooses the case's tier from it.
pub async fn answer_case<M: TextModel>(
    model: &M,
    order: &SupportOrder,
    policy: &SupportPolicy,
    msg: &InboundMessage,
    sabotage: Sabotage,
    on_case: impl FnOnce(&CaseSignals),
) -> Answer {
    let (text, mut notes) = sanitize(&msg.text);
    let detected = detect_language(&text);
    if let Some(other) = &detected.unsupported {
        notes.push(format!("message in an unsupported language ({other}): answered in English"));
    }
    let signals = if sabotage == Sabotage::NoDetection { Vec::new() } else { manipulation(&text) };
    on_case(&CaseSignals {
        order_value: order.total,
        tier: order.tier,
        flagged: !signals.is_empty(),
        message_chars: text.chars().count(),
        unsupported_language: detected.unsupported.is_some(),
    });
    let facts = facts_of(order, policy, detected.language);
    let mut calls = Vec::new();
    let mut proposal = None;
    if text.trim().is_empty() {
        notes.push("empty message: no model call".into());
    } else {
        let mut prompt = build_prompt(&facts, &text);
        for attempt in 0..=policy.max_repairs {
            let call_id = format!("{}/{attempt}", msg.id);
            match model.complete(&call_id, &prompt).await {
                Ok(c) => {
                    let parsed = parse_proposal(&c.raw);
                    calls.push(ModelCall {
                        call_id,
                        model: c.model.clone(),
                        input_tokens: c.input_tokens,
                        output_tokens: c.output_tokens,
                        error: parsed.as_ref().err().cloned(),
                    });
                    match parsed {
                        Ok(p) => {
                            proposal = Some(p);
                            break;
                        }
                        Err(e) => prompt.repairs.push(e),
                    }
                }
                Err(e) => {
                    calls.push(ModelCall {
                        call_id,
                        model: None,
                        input_tokens: 0,
                        output_tokens: 0,
                        error: Some(e.to_string()),
                    });
                    break;
                }
            }
        }
        if proposal.is_none()
            && let Some(why) = calls.last().and_then(|c| c.error.clone())
        {
            notes.push(format!("model gave no usable proposal after {} call(s): {why}", calls.len()));
        }
    }
    let mut verdict = gate(&facts, policy, proposal.as_ref(), &signals, sabotage == Sabotage::OpenGate);
    notes.append(&mut verdict.reasons);
    verdict.reasons = notes;
    Answer { message: msg.id.clone(), detected, facts, calls, verdict }
}

/// What code knows of a case for the model and the gate: the order as the
/// shop records it and the ceilings the policy allows on it.
fn facts_of(order: &SupportOrder, policy: &SupportPolicy, language: crate::sense::inbox::Language) -> SupportFacts {
    let (refund_ceiling, credit_ceiling) = ceilings(order, policy);
    SupportFacts {
        order_id: order.id.clone(),
        order_total: order.total,
        shipment: order.shipment,
        language,
        refund_ceiling,
        credit_ceiling,
    }
}

/// Text models behind the router's rules: deployments in failover order,
/// one breaker per deployment. A retryable error, bad credentials or an
/// exhausted spend limit moves on to the next deployment; a refusal ends
/// the call. The breakers live in this value (one process); keeping them
/// in the store, so that every worker agrees, is not built yet.
pub struct Routed<M, C> {
    pub deployments: Vec<(Deployment, M)>,
    pub breakers: std::sync::Mutex<std::collections::BTreeMap<(String, String), Breaker>>,
    /// Calls made and failed, per deployment (keyed as the breakers are).
    pub tally: std::sync::Mutex<std::collections::BTreeMap<(String, String), (u32, u32)>>,
    pub rules: BreakerRules,
    pub clock: C,
    /// The current case's tier: its deployments are tried first.
    pub tier: std::sync::Mutex<Option<Tier>>,
}

impl<M, C> Routed<M, C> {
    pub fn new(deployments: Vec<(Deployment, M)>, rules: BreakerRules, clock: C) -> Routed<M, C> {
        Routed {
            deployments,
            breakers: std::sync::Mutex::default(),
            tally: std::sync::Mutex::default(),
            rules,
            clock,
            tier: std::sync::Mutex::default(),
        }
    }

    /// The tier of the case answered next (`None`: the configured order).
    pub fn set_tier(&self, tier: Option<Tier>) {
        *self.tier.lock().expect("tier lock") = tier;
    }

    /// Starts from breakers as another run (or worker) left them.
    pub fn with_breakers(mut self, breakers: std::collections::BTreeMap<(String, String), Breaker>) -> Routed<M, C> {
        self.breakers = std::sync::Mutex::new(breakers);
        self
    }

    /// Each deployment's breaker as it stands (for reports).
    pub fn breakers(&self) -> std::collections::BTreeMap<(String, String), Breaker> {
        self.breakers.lock().expect("breakers lock").clone()
    }
}

impl<M: TextModel, C: Clock> TextModel for Routed<M, C> {
    async fn complete(&self, call_id: &str, prompt: &Prompt) -> Result<Completion, ModelError> {
        let now = self.clock.now();
        let all: Vec<Deployment> = self.deployments.iter().map(|(d, _)| d.clone()).collect();
        let order = match *self.tier.lock().expect("tier lock") {
            Some(t) => tier_order(&all, t),
            None => all,
        };
        let chosen: Vec<Deployment> = {
            let breakers = self.breakers.lock().expect("breakers lock");
            route(&order, |d| breakers.get(&d.key()), now).into_iter().cloned().collect()
        };
        let mut last = ModelError::SpendLimit("no deployment may be called (spend limits or credentials)".into());
        for d in chosen {
            let Some((_, model)) = self.deployments.iter().find(|(x, _)| *x == d) else { continue };
            {
                let mut breakers = self.breakers.lock().expect("breakers lock");
                let b = breakers.get(&d.key()).cloned().unwrap_or_else(|| Breaker::closed(now));
                if b.admits(now) == Some(true) {
                    breakers.insert(d.key(), b.probe_sent(now));
                }
            }
            let result = model.complete(&format!("{call_id}@{}", d.vendor), prompt).await;
            let class = CallClass::of(&result.as_ref().map(|_| ()).map_err(Clone::clone));
            {
                let mut breakers = self.breakers.lock().expect("breakers lock");
                let b = breakers.get(&d.key()).cloned().unwrap_or_else(|| Breaker::closed(now));
                breakers.insert(d.key(), b.after(&class, now, &self.rules));
                let mut tally = self.tally.lock().expect("tally lock");
                let t = tally.entry(d.key()).or_default();
                t.0 += 1;
                t.1 += u32::from(result.is_err());
            }
            match result {
                Ok(mut c) => {
                    c.model = Some(format!("{}/{}", d.vendor, d.model));
                    return Ok(c);
                }
                Err(e @ ModelError::Refused(_)) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// The schedule that fires the support job of each brand with an inbox.
pub const SUPPORT_SCHEDULE: &str = "support";

/// New messages answered per run at most (the rest wait for the next run).
pub const MAX_MESSAGES_PER_RUN: usize = 32;

/// Pages of threads read per run at most.
const MAX_THREAD_PAGES: usize = 20;

pub async fn run<S: Store, A, C: Clock, P: Probe, B: Inbox + Shop + TextVendors>(
    ports: &Ports<S, A, C, P, B>,
    cfg: &SupportConfig,
    sabotage: Sabotage,
    attempt: &mut Attempt,
) -> Result<(), JobError> {
    let brand = attempt.brand.clone();
    let open = ports.store.brand_intents(&brand, &IntentFilter::open()).await?;
    let ours = |i: &&crate::act::intent::Intent| match &i.action {
        Action::Reply { .. } => true,
        Action::Refund { .. } => i.key.as_str().contains(OFFER_CLAIM),
        _ => false,
    };
    drive::redrive(ports, attempt, open.iter().filter(ours)).await?;
    let now = ports.clock.now();
    let seen = ports.store.state(&brand, THREAD_SCOPE).await?;
    let seen: BTreeMap<String, String> = seen.into_iter().collect();
    let stored_breakers = ports.store.state(&brand, BREAKER_SCOPE).await?;
    let mut breakers_before: BTreeMap<(String, String), Breaker> = BTreeMap::new();
    for (key, body) in &stored_breakers {
        if let (Some((vendor, model)), Ok(b)) = (key.split_once('/'), serde_json::from_str::<Breaker>(body)) {
            breakers_before.insert((vendor.to_string(), model.to_string()), b);
        }
    }
    let offers: BTreeMap<String, Offer> = ports
        .store
        .state(&brand, OFFER_SCOPE)
        .await?
        .into_iter()
        .filter_map(|(thread, body)| serde_json::from_str(&body).ok().map(|o| (thread, o)))
        .collect();
    let read = unanswered(ports, cfg, attempt, &seen).await?;
    let keys = read.messages.iter().map(|(_, m)| reply_key(&brand, &cfg.inbox, &m.message_id));
    let mut known: BTreeSet<IdempotencyKey> = ports
        .store
        .brand_intents(&brand, &IntentFilter::kinds(&[]).and_keys(keys))
        .await?
        .into_iter()
        .map(|i| i.key)
        .collect();
    let booking = Booking {
        store: &ports.store,
        clock: &ports.clock,
        lease: attempt.lease.clone(),
        brand: brand.clone(),
        prefix: format!("{}/{:?}", attempt.lease.job, attempt.lease.token),
        max_output_tokens: cfg.max_output_tokens,
        skip: sabotage == Sabotage::UnbookedModelCalls,
        uncapped: sabotage == Sabotage::UncappedModelCalls,
        failed: std::sync::Mutex::new(None),
        refused: std::sync::Mutex::new(None),
    };
    let deployments = cfg
        .deployments
        .iter()
        .map(|d| (d.clone(), Booked { booking: &booking, vendors: &ports.bank, deployment: d.clone() }))
        .collect();
    let routed = Routed::new(deployments, cfg.breaker.clone(), &ports.clock).with_breakers(breakers_before.clone());
    let fresh: Vec<&(String, MailMessage)> = read
        .messages
        .iter()
        .filter(|(_, m)| !known.contains(&reply_key(&brand, &cfg.inbox, &m.message_id)))
        .take(MAX_MESSAGES_PER_RUN)
        .collect();
    for (thread, m) in fresh {
        let now = ports.clock.now();
        let record = ports.bank.customer_order(&m.from).await;
        attempt.record(now, "shopify", "customer_order", record.is_ok());
        let order = support_order(record?, attempt.currency);
        let msg = InboundMessage { id: m.message_id.clone(), thread: thread.clone(), text: m.text.clone() };
        // A plain yes to an open refund offer in this thread: the refund goes
        // through the refund envelope and actuator; no model is asked.
        if let Some(offer) = offers.get(thread).filter(|o| {
            o.message != m.message_id
                && o.order_id == order.id
                && m.timestamp >= o.made_at
                && now <= o.made_at + cfg.offer_valid
                && accepts(&m.text)
        }) {
            accept_offer(ports, cfg, sabotage, attempt, &msg, &order, offer).await?;
            known.insert(reply_key(&brand, &cfg.inbox, &msg.id));
            continue;
        }
        let tier = std::sync::Mutex::new(None);
        let answered = answer_case(&routed, &order, &cfg.policy, &msg, sabotage, |case| {
            let t = choose_tier(case, &cfg.tiers);
            *tier.lock().expect("tier lock") = Some(t);
            routed.set_tier(Some(t));
        })
        .await;
        let tier = tier.into_inner().expect("tier lock");
        if let Some(e) = booking.failed.lock().expect("booking lock").take() {
            // A call could not be booked: none was made; nothing is sent.
            return Err(e.into());
        }
        let now = ports.clock.now();
        let new = reply_intent(&brand, &cfg.inbox, thread, &msg.id, &answered.facts, &answered.verdict, now);
        let key = new.key.clone();
        let mut verdict = new.verdict.clone();
        verdict.reason = gate_reason(&answered, tier);
        let mut batch = attempt.batch();
        batch.verdicts.push(verdict);
        batch.intents.push(IntentOp::Open(new));
        batch.state = breaker_ops(&mut breakers_before, &routed.breakers());
        // A refund offer stays open in its thread until the customer accepts
        // it (or another offer replaces it).
        if let (MenuAction::OfferRefund, Some(amount)) = (answered.verdict.action, answered.verdict.amount) {
            let offer = Offer { message: msg.id.clone(), order_id: order.id.clone(), amount, made_at: now };
            batch.state.push(StateOp {
                scope: OFFER_SCOPE.into(),
                key: thread.clone(),
                body: Some(serde_json::to_string(&offer).expect("an offer serializes")),
                event: None,
            });
        }
        let result = ports.store.write(&attempt.lease, batch, now).await?;
        known.insert(key.clone());
        let jobs = drive::jobs_of_open(result.intents.iter().filter(|i| i.key == key), now);
        if !jobs.is_empty() {
            let mut batch = attempt.batch();
            batch.enqueue = jobs;
            ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
        }
    }
    // Threads whose every inbound message now has its reply intent are
    // not read again until they change; rows of threads past the lookback
    // are dropped.
    let mut batch = attempt.batch();
    for t in &read.threads {
        let all_known = read
            .messages
            .iter()
            .filter(|(thread, _)| thread == &t.thread_id)
            .all(|(_, m)| known.contains(&reply_key(&brand, &cfg.inbox, &m.message_id)));
        let mark = thread_mark(t);
        if all_known && seen.get(&t.thread_id) != Some(&mark) {
            batch.state.push(StateOp {
                scope: THREAD_SCOPE.into(),
                key: t.thread_id.clone(),
                body: Some(mark),
                event: None,
            });
        }
    }
    let since = now - cfg.lookback;
    for (thread, mark) in &seen {
        if mark_time(mark).is_none_or(|at| at < since) {
            batch.state.push(StateOp { scope: THREAD_SCOPE.into(), key: thread.clone(), body: None, event: None });
        }
    }
    if !batch.is_empty() {
        ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
    }
    Ok(())
}

/// The scope of the open refund offers (one per thread, the latest).
pub const OFFER_SCOPE: &str = "support_offer";

/// What the claim id of an accepted offer's refund starts with.
const OFFER_CLAIM: &str = "/support-";

/// A refund offer a reply made, open in its thread: what the gate approved,
/// on which order, answering which message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub message: String,
    pub order_id: String,
    pub amount: Money,
    pub made_at: Timestamp,
}

/// A customer accepted `offer`: the refund is judged by the refund envelope
/// (the offer, the order's refundable amount as the shop shows it now less
/// what is in flight, the risk tier's cap; one refund per offer) and, when
/// approved, opened as a refund intent (reserving against the brand's
/// refund caps) for the refund actuator; the reply says what happened, in
/// the customer's language. The offer is closed either way.
async fn accept_offer<S: Store, A, C: Clock, P: Probe, B: Shop>(
    ports: &Ports<S, A, C, P, B>,
    cfg: &SupportConfig,
    sabotage: Sabotage,
    attempt: &mut Attempt,
    msg: &InboundMessage,
    order: &SupportOrder,
    offer: &Offer,
) -> Result<(), JobError> {
    use crate::act::refund::{in_flight_on, refund_intent};
    use crate::envelope::refund::{OrderFacts, RefundJudged, judge_refund, refund_key};
    use crate::propose::refund::RefundProposal;
    let brand = attempt.brand.clone();
    let now = ports.clock.now();
    let (text, mut notes) = sanitize(&msg.text);
    let facts = facts_of(order, &cfg.policy, detect_language(&text).language);
    let shop_order = ports.bank.order(&offer.order_id).await;
    attempt.record(now, "shopify", "order", shop_order.is_ok());
    let shop_order = match shop_order {
        Ok(o) => Ok(o),
        Err(crate::sense::shop::ShopError::Rejected(why)) => Err(why.join("; ")),
        Err(e) => return Err(e.into()),
    };
    let claim: String =
        offer.message.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')).collect();
    let claim = format!("support-{claim}");
    let open = ports.store.brand_intents(&brand, &IntentFilter::open()).await?;
    let in_flight = in_flight_on(&offer.order_id, offer.amount.currency, &open);
    let tier_facts = vec![format!("the shop's risk assessment puts the customer at {}", order.tier.as_str())];
    let order_facts = shop_order.and_then(|o| {
        OrderFacts::of(&brand, &cfg.store, &claim, &o, in_flight, order.tier, tier_facts).map(|f| (f, o))
    });
    let mut approved: Option<Money> = None;
    let mut batch = attempt.batch();
    let mut refund = None;
    match order_facts {
        Err(why) => notes.push(format!("offer of {} accepted, but no refund: {why}", offer.amount)),
        Ok((of, shop_order)) => {
            let key = refund_key(&of);
            let existing = ports.store.brand_intents(&brand, &IntentFilter::kinds(&[]).and_keys([key.clone()])).await?;
            let asked = if sabotage == Sabotage::RefundWholeOrder { shop_order.max_refundable } else { offer.amount };
            let proposal = RefundProposal::Refund {
                amount: asked,
                why: format!("refund offer of {} accepted in thread {}", offer.amount, msg.thread),
            };
            if let Some(i) = existing.first() {
                // An earlier run opened it and died before the reply.
                match &i.action {
                    Action::Refund { order } if i.phase != crate::act::intent::IntentPhase::Abandoned => {
                        approved = Some(order.amount);
                        notes.push(format!("offer accepted: refund {key} already opened"));
                    }
                    _ => notes.push(format!("offer accepted: refund {key} was abandoned")),
                }
            } else {
                let opened: BTreeSet<IdempotencyKey> = BTreeSet::new();
                match judge_refund(&of, &proposal, &cfg.refund_caps, &opened, now) {
                    RefundJudged::Approved(a) => {
                        notes.push(format!("offer accepted: {}", a.verdict.reason));
                        batch.verdicts.push(a.verdict.clone());
                        batch.intents.push(IntentOp::Open(refund_intent(&a, &of, &proposal)));
                        refund = Some((a.key.clone(), a.amount));
                    }
                    RefundJudged::Refused(v) => {
                        notes.push(format!("offer accepted, refund refused: {}", v.reason));
                        batch.verdicts.push(v);
                    }
                }
            }
        }
    }
    let mut opened = Vec::new();
    if let Some((key, amount)) = refund {
        let result = ports.store.write(&attempt.lease, batch, now).await?;
        match result.refused.iter().find(|(k, _)| *k == key) {
            Some((_, why)) => notes.push(format!("the refund budget refused it: {why}")),
            None => approved = Some(amount),
        }
        opened.extend(result.intents);
        batch = attempt.batch();
    }
    let verdict = GateVerdict {
        action: if approved.is_some() { MenuAction::OfferRefund } else { MenuAction::Reply },
        amount: approved,
        reply: acceptance_template(approved.map(|m| m.minor), &facts),
        language: facts.language,
        replaced: false,
        flagged: false,
        reasons: notes,
    };
    let new = reply_intent(&brand, &cfg.inbox, &msg.thread, &msg.id, &facts, &verdict, now);
    let key = new.key.clone();
    let mut v = new.verdict.clone();
    v.reason = format!(
        "gate: {}{}, an accepted offer; {}",
        verdict.action.as_str(),
        approved.map_or(String::new(), |m| format!(" {m}")),
        verdict.reasons.join("; ")
    );
    batch.verdicts.push(v);
    batch.intents.push(IntentOp::Open(new));
    batch.state.push(StateOp { scope: OFFER_SCOPE.into(), key: msg.thread.clone(), body: None, event: None });
    let result = ports.store.write(&attempt.lease, batch, now).await?;
    opened.extend(result.intents.into_iter().filter(|i| i.key == key));
    let jobs = drive::jobs_of_open(opened.iter(), now);
    if !jobs.is_empty() {
        let mut batch = attempt.batch();
        batch.enqueue = jobs;
        ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
    }
    Ok(())
}

/// What one read of the inbox found: the threads updated within the
/// lookback that were read, and their inbound messages.
struct InboxRead {
    threads: Vec<ThreadSummary>,
    messages: Vec<(String, MailMessage)>,
}

/// The inbox's inbound messages in threads updated within the lookback
/// (most recent threads first), each with its thread; the brand's own
/// replies are not among them. A thread whose listing matches the mark
/// `seen` keeps for it (every inbound message of it had its reply intent
/// then) is not read again. A thread that cannot be read now is left for
/// the next run; the others are answered.
async fn unanswered<S: Store, A, C: Clock, P, B: Inbox>(
    ports: &Ports<S, A, C, P, B>,
    cfg: &SupportConfig,
    attempt: &mut Attempt,
    seen: &BTreeMap<String, String>,
) -> Result<InboxRead, JobError> {
    let now = ports.clock.now();
    let since = now - cfg.lookback;
    let mut threads = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_THREAD_PAGES {
        let page = ports.bank.threads(&cfg.inbox, token.as_deref()).await;
        attempt.record(now, "agentmail", "threads", page.is_ok());
        let page = page?;
        let older = page.threads.iter().any(|t| t.updated_at < since);
        threads.extend(page.threads.into_iter().filter(|t| t.updated_at >= since));
        token = page.next_page_token;
        if older || token.is_none() {
            break;
        }
    }
    let mut out = InboxRead { threads: Vec::new(), messages: Vec::new() };
    for t in threads {
        if seen.get(&t.thread_id) == Some(&thread_mark(&t)) {
            continue;
        }
        let messages = ports.bank.thread(&cfg.inbox, &t.thread_id).await;
        attempt.record(ports.clock.now(), "agentmail", "thread", messages.is_ok());
        let Ok(messages) = messages else { continue };
        out.messages
            .extend(messages.into_iter().filter(|m| !is_ours(m, &cfg.address)).map(|m| (t.thread_id.clone(), m)));
        out.threads.push(t);
    }
    Ok(out)
}

/// The scope of the per-thread marks, and of the router's breakers.
pub const THREAD_SCOPE: &str = "inbox_thread";
pub const BREAKER_SCOPE: &str = "model_breaker";

/// What a thread's listing said when every inbound message of it had its
/// reply intent: `{message_count}@{updated_at_ms}`.
fn thread_mark(t: &ThreadSummary) -> String {
    format!("{}@{}", t.message_count, t.updated_at.0)
}

fn mark_time(mark: &str) -> Option<Timestamp> {
    mark.split_once('@').and_then(|(_, at)| at.parse().ok()).map(Timestamp)
}

/// The state rows of the breakers that changed since `before` (which is
/// brought up to date), each with an event row when its state changed.
fn breaker_ops(
    before: &mut BTreeMap<(String, String), Breaker>,
    current: &BTreeMap<(String, String), Breaker>,
) -> Vec<StateOp> {
    use crate::propose::router::OpenFor;
    let mut out = Vec::new();
    for (key, b) in current {
        let old = before.get(key);
        if old == Some(b) {
            continue;
        }
        let from = old.map_or("closed", Breaker::state);
        let event = (from != b.state()).then(|| StateEvent {
            block: Block::Policy,
            before: from.into(),
            after: b.state().into(),
            cause: match b {
                Breaker::Open { why, until } => {
                    let why = match why {
                        OpenFor::Failures => "most calls of its window failed",
                        OpenFor::Auth => "the credentials were refused",
                        OpenFor::SpendLimit => "the vendor's spend limit was reached",
                    };
                    format!("{why}: open until {}", crate::sense::wire::revolut::iso_of(*until))
                }
                Breaker::HalfOpen { .. } => "cooled down: one probe call".into(),
                Breaker::Closed { .. } => "a call succeeded".into(),
            },
        });
        out.push(StateOp {
            scope: BREAKER_SCOPE.into(),
            key: format!("{}/{}", key.0, key.1),
            body: Some(serde_json::to_string(b).expect("a breaker serializes")),
            event,
        });
        before.insert(key.clone(), b.clone());
    }
    out
}

/// Whether a thread's message is the brand's own (sent from its address).
fn is_ours(m: &MailMessage, address: &str) -> bool {
    let from = m.from.trim().to_lowercase();
    let address = address.trim().to_lowercase();
    from == address || from.ends_with(&format!("<{address}>"))
}

/// The trusted records of a conversation, from the shop's order: what was
/// bought, what may still be refunded, the parcel, the shop's risk level.
/// A customer without an order gets ceilings of zero (offers become
/// requests for evidence).
pub fn support_order(record: Option<CustomerOrder>, currency: Currency) -> SupportOrder {
    let Some(o) = record else {
        let zero = Money::zero(currency);
        return SupportOrder {
            id: String::new(),
            total: zero,
            refundable: zero,
            shipment: Shipment::InTransit,
            tier: RiskTier::Watch,
        };
    };
    SupportOrder {
        id: o.id,
        total: o.total,
        refundable: o.refundable,
        shipment: match o.tracking {
            Tracking::Delivered => Shipment::Delivered,
            Tracking::Lost => Shipment::Lost,
            // Unknown is not evidence of anything: no refund on it.
            Tracking::Moving | Tracking::Unknown => Shipment::InTransit,
        },
        tier: match o.risk {
            RiskLevel::Low => RiskTier::Trusted,
            RiskLevel::Medium => RiskTier::Watch,
            RiskLevel::High => RiskTier::High,
        },
    }
}

/// The gate's verdict as its event row says it: the action, the amount
/// and every reason.
fn gate_reason(a: &Answer, tier: Option<Tier>) -> String {
    let v = &a.verdict;
    let mut out = format!("gate: {}", v.action.as_str());
    if let Some(m) = v.amount {
        out.push_str(&format!(" {m}"));
    }
    if let Some(t) = tier {
        out.push_str(&format!(", a {} case", t.as_str()));
    }
    if let Some(model) = a.calls.iter().rev().find_map(|c| c.model.as_deref()) {
        out.push_str(&format!(", answered by {model}"));
    }
    if v.replaced {
        out.push_str(", model's reply replaced");
    }
    if v.flagged {
        out.push_str(", flagged");
    }
    for r in &v.reasons {
        out.push_str("; ");
        out.push_str(r);
    }
    out
}

/// The booking of model calls: each call's cost row is written before the
/// call (the most it can cost: the prompt's tokens, estimated high, and
/// the call's output cap), under the call id the vendor is sent.
struct Booking<'a, S, C> {
    store: &'a S,
    clock: &'a C,
    lease: Lease,
    brand: BrandId,
    /// The attempt's job and lease token: call ids unique across attempts.
    prefix: String,
    max_output_tokens: u32,
    /// Sabotage: call without booking.
    skip: bool,
    /// Sabotage: book without charging the brand's model caps.
    uncapped: bool,
    /// The store failed a booking: the call was not made.
    failed: std::sync::Mutex<Option<StoreError>>,
    /// The brand's model caps refused a call (why): it was not made, and no
    /// other call of this run is (each would be refused alike).
    refused: std::sync::Mutex<Option<String>>,
}

/// A prompt's input tokens, estimated high (about four characters a token;
/// every byte counts).
pub fn prompt_tokens(p: &Prompt) -> u32 {
    let bytes = p.system.len() + p.facts.len() + p.customer.len() + p.schema.len();
    let bytes = bytes + p.repairs.iter().map(String::len).sum::<usize>();
    u32::try_from(bytes / 3 + 16).unwrap_or(u32::MAX)
}

/// One deployment reached through the brand's text vendors, each call
/// booked first.
struct Booked<'a, S, C, V> {
    booking: &'a Booking<'a, S, C>,
    vendors: &'a V,
    deployment: Deployment,
}

impl<S: Store, C: Clock, V: TextVendors> TextModel for Booked<'_, S, C, V> {
    async fn complete(&self, call_id: &str, prompt: &Prompt) -> Result<Completion, ModelError> {
        let b = self.booking;
        let d = &self.deployment;
        let call_id = format!("{}/{call_id}", b.prefix);
        if let Some(why) = b.refused.lock().expect("booking lock").clone() {
            return Err(ModelError::Refused(format!("the brand's model budget: {why}")));
        }
        if !b.skip {
            let now = b.clock.now();
            let row = CostRow {
                call_id: call_id.clone(),
                brand: b.brand.clone(),
                at: now,
                vendor: d.vendor.clone(),
                // The tokens booked: the prompt's, estimated high, and the output cap.
                op: format!("complete/{} in<={} out<={}", d.model, prompt_tokens(prompt), b.max_output_tokens),
                ok: true,
                cost: d.cost(prompt_tokens(prompt), b.max_output_tokens),
            };
            let batch = if b.uncapped {
                WriteBatch { costs: vec![row], ..WriteBatch::default() }
            } else {
                WriteBatch { charges: vec![Charge { purpose: Purpose::Model, row }], ..WriteBatch::default() }
            };
            match b.store.write(&b.lease, batch, now).await {
                Err(e) => {
                    *b.failed.lock().expect("booking lock") = Some(e);
                    return Err(ModelError::Refused("the call's cost row could not be booked: not called".into()));
                }
                Ok(r) if !r.refused.is_empty() => {
                    let why = r.refused.into_iter().map(|(_, why)| why).collect::<Vec<_>>().join("; ");
                    *b.refused.lock().expect("booking lock") = Some(why.clone());
                    return Err(ModelError::Refused(format!("the brand's model budget: {why}")));
                }
                Ok(_) => {}
            }
        }
        self.vendors.complete_at(&d.vendor, &d.model, &call_id, prompt).await
    }
}
