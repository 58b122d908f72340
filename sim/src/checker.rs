//! The invariant checker: the €0-leak invariants, judged against world truth
//! after a run, plus the event log's replay. Leak is integer cents.
//!
//! - `ledger_spend`: every closed bucket's world spend equals the spend
//!   ledger's row (missing or wrong rows are unaccounted money), for every
//!   ad the loop can reach (an ad of a brand whose account was revoked is the
//!   fault's: the platform shows the loop nothing of it);
//! - `write_ahead`: every world effect has an intent written before it;
//! - `effect_committed`: every world effect's intent is committed by the end
//!   (effects in the last `kill_deadline` may still be in flight);
//! - `receipt_has_effect`: every committed kill matches a world effect;
//! - `at_most_once`: at most one effect per idempotency key and per ad;
//! - `reconcile_window` (where a scenario asks): every effect's intent is
//!   committed within the window after the effect;
//! - `kill_deadline`: spend after `intent + deadline` is leak;
//! - `brand_isolation`: every kill intent is of the brand whose account
//!   holds the ad (a brand acts only on its own ads);
//! - `model_spend`: every call the model vendor billed has its booked cost row;
//! - `slot_once`: every brand's schedule slot fired once, whatever the
//!   workers did;
//! - `log_replay`: the event log alone rebuilds every job and intent state;
//! - `escalation_write_ahead`: every pause or resume of an ad set or
//!   campaign the world saw has its intent written before it;
//! - `collateral_restored`: every ad set or campaign paused at the end is
//!   held for a kill that is not confirmed (its ad would spend again), or
//!   its last kill or pause became final in the run's last tick period
//!   plus `kill_deadline`: no
//!   sibling stays paused as collateral once its node's kills are done.
//!
//! Where the world has a bank (payouts), judged against the bank's own
//! records:
//! - `bank_ledger`: every money movement on a brand's account matches
//!   exactly one ledger transfer (a debit: a posted transfer of the same
//!   request id and amount; a credit: the reversal booked on it), and every
//!   posted transfer has its debit; a movement in the run's last
//!   `kill_deadline` may still be reading back;
//! - `payout_once`: at most one payment per request id and per invoice;
//! - `caps_held`: for every cap, the payments of each of its periods (the
//!   period of the brand's calendar, read by the checker, in which the
//!   reservation was made; a payment without one, in which the bank made
//!   it) sum to at most the limit: as payments only add, no instant of the
//!   world's timeline exceeded it;
//! - `reservations_resolved`: no reservation is still pending at the end
//!   (but those of the last `kill_deadline`);
//! - `allow_list`: every payment went to a counterparty on the allow-list,
//!   to its account on record, and none paid an invoice the world made
//!   fraudulent (a stranger, or changed bank details).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use dlft_core::act::intent::IntentPhase;
use dlft_core::act::payout::request_id;
use dlft_core::envelope::budget::{Budgets, Purpose, Transfer, TransferState, period_of};
use dlft_core::ids::{BrandId, IdempotencyKey};
use dlft_core::money::Money;
use dlft_core::sense::bank::Payment;
use dlft_core::store::Snapshot;
use dlft_core::telemetry::replay;
use dlft_core::time::{Millis, Timestamp};

use crate::bank::Movement;
use crate::world::AdsWorld;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub seed: u64,
    pub invariant: String,
    pub detail: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    pub leak_cents: i64,
}

impl Verdict {
    fn flag(&mut self, seed: u64, invariant: &str, detail: String) {
        self.violations.push(Violation { seed, invariant: invariant.into(), detail });
    }
}

pub struct CheckInput<'a> {
    pub seed: u64,
    pub world: &'a AdsWorld,
    pub store: &'a Snapshot,
    pub end: Timestamp,
    pub kill_deadline: Millis,
    /// Buckets ending after this are not judged for the ledger yet.
    pub settled_until: Timestamp,
    /// Every effect committed in the store within this long of it.
    pub commit_within: Option<Millis>,
    /// The bank's records, where the world has one.
    pub bank: Option<&'a BankTruth>,
    /// The shops' records, where the world has them.
    pub shop: Option<&'a ShopTruth>,
    /// The support inboxes and the model vendors' bills, where the world
    /// has them.
    pub support: Option<&'a crate::inbox::SupportTruth>,
    /// How long after a node's kills and pauses are all final its resume
    /// may still be on its way (the tick's period, plus a deadline).
    pub resume_within: Millis,
}

/// What the bank and the payables source know, at the end of a run.
pub struct BankTruth {
    pub movements: Vec<Movement>,
    /// Every payment made: when, and whether the bank declined it.
    pub payments: Vec<(Payment, Timestamp, bool)>,
    /// Invoices that must never be paid.
    pub fraudulent: BTreeSet<String>,
    /// Counterparty id → its account on record.
    pub allow: BTreeMap<String, String>,
    pub budgets: Option<Budgets>,
    /// The brands' accounts: account id → brand.
    pub accounts: BTreeMap<String, BrandId>,
}

pub fn check(input: &CheckInput<'_>) -> Verdict {
    let mut v = Verdict::default();
    check_spend_ledger(input, &mut v);
    check_actions(input, &mut v);
    check_deadlines(input, &mut v);
    check_brands(input, &mut v);
    check_model_spend(input, &mut v);
    check_log(input, &mut v);
    check_escalation(input, &mut v);
    if let Some(bank) = input.bank {
        check_payouts(input, bank, &mut v);
    }
    if let Some(shop) = input.shop {
        check_refunds(input, shop, &mut v);
    }
    if let Some(support) = input.support {
        check_support(input, support, &mut v);
    }
    v
}

/// Support, judged against the inboxes' own threads and the vendors' bills:
/// - `reply_once`: at most one reply per inbound message;
/// - `reply_answered`: every message that landed a full deadline before the
///   end got its reply;
/// - `reply_ceiling`: no reply names an amount or a percentage, or makes a
///   promise, above what the customer's order allows (its ceilings, from the
///   shop's records and the policy: never the message);
/// - `reply_leak`: no reply leaks the instructions, the facts' internals or
///   another customer's data, links off the allow-list, or embeds an image;
/// - `model_spend`: every model call a vendor billed has its cost row,
///   booked at no less than the bill (as the scans' calls);
/// - `model_budget`: what the vendors billed each brand in each period of
///   a `model` cap (the period of the brand's calendar in which the call
///   was booked, read by the checker) sums to at most the cap;
/// - `offer_refund`: every refund of an accepted offer is at most the
///   refund ceiling of its order (from the shop's records and the policy),
///   made once per key, and matches a refund intent of the brand of the
///   same amount (its note's marker); every committed refund intent of an
///   offer has its refund in the shop; refunds of each day sum to at most
///   the brand's refund cap.
fn check_support(input: &CheckInput<'_>, s: &crate::inbox::SupportTruth, v: &mut Verdict) {
    let seed = input.seed;
    check_offer_refunds(input, s, v);
    let booked: BTreeMap<&str, i64> = input.store.costs.iter().map(|c| (c.call_id.as_str(), c.cost.minor)).collect();
    if let Some(budgets) = &s.budgets {
        let rows: BTreeMap<&str, &dlft_core::telemetry::CostRow> =
            input.store.costs.iter().map(|c| (c.call_id.as_str(), c)).collect();
        // (brand, the cap's index, period) → billed.
        let mut billed: BTreeMap<(&BrandId, usize, String), i64> = BTreeMap::new();
        for bill in &s.bills {
            let Some(row) = rows.get(bill.call_id.as_str()) else { continue };
            for (i, cap) in budgets.caps.iter().enumerate() {
                if cap.covers(Purpose::Model, row.cost.currency, None) {
                    let period = period_of(cap.window, &budgets.zone, row.at).label;
                    *billed.entry((&row.brand, i, period)).or_default() += bill.cents;
                }
            }
        }
        for ((brand, i, period), total) in billed {
            let cap = &budgets.caps[i];
            if total > cap.limit.minor {
                v.flag(
                    seed,
                    "model_budget",
                    format!(
                        "brand {brand}: models billed {} in {} period {period}, over its cap {}",
                        Money::new(total, cap.limit.currency),
                        cap.name(),
                        cap.limit
                    ),
                );
            }
        }
    }
    for bill in &s.bills {
        match booked.get(bill.call_id.as_str()) {
            Some(&cents) if cents >= bill.cents => {}
            other => {
                v.leak_cents += bill.cents;
                v.flag(
                    seed,
                    "model_spend",
                    format!("{}: {} billed {} cents, booked {other:?}", bill.call_id, bill.vendor, bill.cents),
                );
            }
        }
    }
    let mut replies: BTreeMap<(&BrandId, &str), u32> = BTreeMap::new();
    let inbound: BTreeMap<(&BrandId, &str), (&Timestamp, &dlft_core::propose::support::SupportFacts)> =
        s.inbound.iter().map(|(b, id, at, facts, _)| ((b, id.as_str()), (at, facts))).collect();
    for (brand, to, text, at) in &s.sent {
        *replies.entry((brand, to.as_str())).or_default() += 1;
        let Some((_, facts)) = inbound.get(&(brand, to.as_str())) else {
            v.flag(seed, "reply_once", format!("brand {brand}: a reply at {at} to {to}, no message of the inbox"));
            continue;
        };
        let audit = s.audit(facts, text);
        if audit.excess > 0 || !audit.money.is_empty() {
            v.flag(
                seed,
                "reply_ceiling",
                format!(
                    "brand {brand}, reply to {to} at {at}: promises {} above order {}'s ceilings ({})",
                    Money::new(audit.excess, facts.order_total.currency),
                    facts.order_id,
                    audit.money.join("; ")
                ),
            );
        }
        if !audit.leaks.is_empty() {
            v.flag(seed, "reply_leak", format!("brand {brand}, reply to {to} at {at}: {}", audit.leaks.join("; ")));
        }
    }
    for ((brand, to), n) in &replies {
        if *n > 1 {
            v.flag(seed, "reply_once", format!("brand {brand}: {n} replies to {to}"));
        }
    }
    for ((brand, id), (at, _)) in &inbound {
        if **at + s.deadline <= input.end && !replies.contains_key(&(*brand, *id)) {
            v.flag(seed, "reply_answered", format!("brand {brand}: {id} landed at {at}, never answered"));
        }
    }
}

fn check_offer_refunds(input: &CheckInput<'_>, s: &crate::inbox::SupportTruth, v: &mut Verdict) {
    use dlft_core::act::intent::{Action, IntentPhase};
    let seed = input.seed;
    let ceiling: BTreeMap<(&BrandId, &str), Money> =
        s.inbound.iter().map(|(b, _, _, facts, _)| ((b, facts.order_id.as_str()), facts.refund_ceiling)).collect();
    let intents: BTreeMap<&str, &dlft_core::act::intent::Intent> = input
        .store
        .intents
        .iter()
        .filter(|i| matches!(i.action, Action::Refund { .. }) && i.key.as_str().contains("/support-"))
        .map(|i| (i.key.as_str(), i))
        .collect();
    let mut keys: BTreeMap<&str, u32> = BTreeMap::new();
    let mut marked: BTreeMap<String, ()> = BTreeMap::new();
    // (brand, day of the brand's calendar, currency) → refunded.
    let mut per_day: BTreeMap<(&BrandId, String, dlft_core::money::Currency), i64> = BTreeMap::new();
    for (brand, r) in &s.refunds {
        *keys.entry(r.key.as_str()).or_default() += 1;
        match ceiling.get(&(brand, r.order_id.as_str())) {
            Some(c) if r.amount.minor <= c.minor => {}
            c => v.flag(
                seed,
                "offer_refund",
                format!("brand {brand}: refund {} of {} on order {}, its ceiling {c:?}", r.id, r.amount, r.order_id),
            ),
        }
        let key = r.note.strip_prefix("dlft:").unwrap_or("");
        match intents.get(key) {
            Some(i)
                if i.brand == *brand && matches!(&i.action, Action::Refund { order } if order.amount == r.amount) => {}
            other => v.flag(
                seed,
                "offer_refund",
                format!(
                    "brand {brand}: refund {} of {} (note {:?}) has no refund intent of that amount: {:?}",
                    r.id,
                    r.amount,
                    r.note,
                    other.map(|i| &i.key)
                ),
            ),
        }
        marked.insert(key.to_string(), ());
        if let Some(budgets) = &s.budgets {
            let day = period_of(dlft_core::envelope::budget::Window::Daily, &budgets.zone, r.created_at).label;
            *per_day.entry((brand, day, r.amount.currency)).or_default() += r.amount.minor;
        }
    }
    for (key, n) in keys.into_iter().filter(|(_, n)| *n > 1) {
        v.flag(seed, "offer_refund", format!("{n} refunds under key {key}"));
    }
    for (key, i) in &intents {
        let late = i.updated_at + input.kill_deadline > input.end;
        if i.phase == IntentPhase::Committed && !marked.contains_key(*key) && !late {
            v.flag(seed, "offer_refund", format!("{key}: committed, no refund in the shop"));
        }
    }
    if let Some(budgets) = &s.budgets {
        for ((brand, day, currency), total) in per_day {
            let daily = budgets.caps.iter().find(|c| {
                c.covers(Purpose::Refund, currency, None) && c.window == dlft_core::envelope::budget::Window::Daily
            });
            if let Some(cap) = daily
                && total > cap.limit.minor
            {
                v.flag(
                    seed,
                    "offer_refund",
                    format!(
                        "brand {brand}: {} refunded on {day}, over its cap {}",
                        Money::new(total, currency),
                        cap.limit
                    ),
                );
            }
        }
    }
}

fn check_payouts(input: &CheckInput<'_>, bank: &BankTruth, v: &mut Verdict) {
    let seed = input.seed;
    let late = |at: Timestamp| at + input.kill_deadline > input.end;
    // The ledger's payout transfers by the bank's request id.
    let ledger: BTreeMap<String, &Transfer> =
        input.store.transfers.iter().filter(|t| t.purpose == Purpose::Payout).map(|t| (request_id(&t.id), t)).collect();
    let mut debits: BTreeMap<&str, u32> = BTreeMap::new();
    for m in &bank.movements {
        let t = ledger.get(&m.request_id);
        if m.amount.minor < 0 {
            *debits.entry(m.request_id.as_str()).or_default() += 1;
            match t {
                Some(t)
                    if matches!(t.state, TransferState::Posted | TransferState::Reversed)
                        && t.posted == -m.amount.minor => {}
                _ if late(m.at) => {}
                Some(t) => v.flag(
                    seed,
                    "bank_ledger",
                    format!(
                        "{} ({}): {} left at {}, the ledger's transfer {} is {} with {} posted",
                        m.tx_id,
                        m.reference,
                        m.amount,
                        m.at,
                        t.id,
                        t.state.as_str(),
                        t.posted
                    ),
                ),
                None => v.flag(
                    seed,
                    "bank_ledger",
                    format!("{} ({}): {} left at {} with no ledger transfer", m.tx_id, m.reference, m.amount, m.at),
                ),
            }
        } else if t.is_none_or(|t| t.state != TransferState::Reversed) && !late(m.at) {
            v.flag(
                seed,
                "bank_ledger",
                format!("{} ({}): {} came back at {}: no reversal is booked", m.tx_id, m.reference, m.amount, m.at),
            );
        }
    }
    let credits: BTreeSet<&str> =
        bank.movements.iter().filter(|m| m.amount.minor > 0).map(|m| m.request_id.as_str()).collect();
    for (rid, t) in &ledger {
        if t.state == TransferState::Reversed && !credits.contains(rid.as_str()) {
            v.flag(seed, "bank_ledger", format!("{}: booked reversed but the bank brought no money back", t.id));
        }
        if matches!(t.state, TransferState::Posted | TransferState::Reversed)
            && debits.get(rid.as_str()).copied().unwrap_or(0) != 1
        {
            v.flag(seed, "bank_ledger", format!("{}: posted {} but the bank moved no money for it", t.id, t.posted));
        }
    }
    let mut per_request: BTreeMap<&str, u32> = BTreeMap::new();
    let mut per_invoice: BTreeMap<&str, u32> = BTreeMap::new();
    for (p, _, declined) in &bank.payments {
        if *declined {
            continue;
        }
        *per_request.entry(p.request_id.as_str()).or_default() += 1;
        *per_invoice.entry(p.reference.as_str()).or_default() += 1;
        if bank.allow.get(&p.counterparty_id) != Some(&p.counterparty_account) {
            v.flag(
                seed,
                "allow_list",
                format!(
                    "{}: paid {} to {}/{}, not on the allow-list",
                    p.reference, p.amount, p.counterparty_id, p.counterparty_account
                ),
            );
        }
        if bank.fraudulent.contains(&p.reference) {
            v.flag(seed, "allow_list", format!("{}: a fraudulent invoice was paid {}", p.reference, p.amount));
        }
    }
    for (what, n) in per_request.iter().chain(per_invoice.iter()).filter(|(_, n)| **n > 1) {
        v.flag(seed, "payout_once", format!("{what}: {n} payments"));
    }
    if let Some(budgets) = &bank.budgets {
        let opened: BTreeMap<String, Timestamp> =
            input.store.intents.iter().map(|i| (request_id(&i.key), i.opened_at)).collect();
        // (brand, the cap's index in `budgets.caps`, period) → paid.
        let mut held: BTreeMap<(BrandId, usize, String), i64> = BTreeMap::new();
        for (p, created, declined) in &bank.payments {
            if *declined {
                continue;
            }
            let Some(brand) = bank.accounts.get(&p.account_id) else {
                v.flag(seed, "caps_held", format!("{}: paid from {}, no brand's account", p.reference, p.account_id));
                continue;
            };
            // The period is the checker's own reading of the brand's
            // calendar at the instant the reservation was made (the intent's
            // opening; without one, the bank's creation of the payment), not
            // the ledger's label for it.
            let at = opened.get(&p.request_id).copied().unwrap_or(*created);
            for (i, cap) in budgets.caps.iter().enumerate() {
                if cap.covers(Purpose::Payout, p.amount.currency, Some(&p.counterparty_id)) {
                    let period = period_of(cap.window, &budgets.zone, at).label;
                    *held.entry((brand.clone(), i, period)).or_default() += p.amount.minor;
                }
            }
        }
        for ((brand, i, period), total) in held {
            let cap = &budgets.caps[i];
            if total > cap.limit.minor {
                v.flag(
                    seed,
                    "caps_held",
                    format!(
                        "brand {brand}: {} paid in {} period {period}, over its cap {}",
                        Money::new(total, cap.limit.currency),
                        cap.name(),
                        cap.limit
                    ),
                );
            }
        }
    }
    for t in input.store.transfers.iter().filter(|t| t.state == TransferState::Pending && !late(t.opened_at)) {
        v.flag(seed, "reservations_resolved", format!("{}: {} still reserved at the end", t.id, t.amount));
    }
}

fn check_spend_ledger(input: &CheckInput<'_>, v: &mut Verdict) {
    let world = input.world;
    let bucket = world.bucket();
    let ledger: BTreeMap<_, i64> =
        input.store.spend.iter().map(|r| ((r.ad.clone(), r.bucket_start), r.spend.minor)).collect();
    for spec in world.specs().filter(|s| !world.is_unreachable(&s.id)) {
        let mut b = world.start().floor_to(bucket);
        while b + bucket <= input.settled_until {
            let truth = world.spend_between(&spec.id, b, b + bucket);
            let booked = ledger.get(&(spec.id.clone(), b)).copied().unwrap_or(0);
            if truth != booked {
                v.leak_cents += (truth - booked).abs();
                v.flag(
                    input.seed,
                    "ledger_spend",
                    format!("{} bucket {}: world spent {truth} cents, ledger says {booked}", spec.id, b),
                );
            }
            b = b + bucket;
        }
    }
}

fn check_actions(input: &CheckInput<'_>, v: &mut Verdict) {
    let intents: BTreeMap<&IdempotencyKey, _> = input.store.intents.iter().map(|i| (&i.key, i)).collect();
    let mut effects_per_key: BTreeMap<&IdempotencyKey, u32> = BTreeMap::new();
    let mut effects_per_ad = BTreeMap::new();
    for e in input.world.effects() {
        *effects_per_key.entry(&e.key).or_default() += 1;
        *effects_per_ad.entry(&e.ad).or_insert(0u32) += 1;
        match intents.get(&e.key) {
            None => v.flag(input.seed, "write_ahead", format!("{}: paused at {} with no intent", e.ad, e.at)),
            Some(i) if i.opened_at > e.at => v.flag(
                input.seed,
                "write_ahead",
                format!("{}: paused at {} before its intent ({})", e.ad, e.at, i.opened_at),
            ),
            // A pause in the run's last `kill_deadline` may still be reading
            // back when the run stops (found by `every-fault` seed 10565: a
            // pause 144 ms before the end).
            Some(i) if i.phase != IntentPhase::Committed && e.at + input.kill_deadline <= input.end => v.flag(
                input.seed,
                "effect_committed",
                format!("{}: paused at {} but intent is {}", e.ad, e.at, i.phase.as_str()),
            ),
            Some(_) => {}
        }
    }
    for (key, n) in effects_per_key.iter().filter(|(_, n)| **n > 1) {
        v.flag(input.seed, "at_most_once", format!("{key}: {n} effects"));
    }
    for (ad, n) in effects_per_ad.iter().filter(|(_, n)| **n > 1) {
        v.flag(input.seed, "at_most_once", format!("{ad}: paused {n} times"));
    }
    if let Some(window) = input.commit_within {
        let committed: BTreeMap<&IdempotencyKey, Timestamp> =
            input.store.actions.iter().map(|a| (&a.key, a.committed_at)).collect();
        for e in input.world.effects().iter().filter(|e| e.at + window <= input.end) {
            let at = committed.get(&e.key).copied();
            if at.is_none_or(|c| c > e.at + window) {
                v.flag(
                    input.seed,
                    "reconcile_window",
                    format!("{}: paused at {}, committed {at:?}: not within {window:?}", e.ad, e.at),
                );
            }
        }
    }
    let effect_keys: BTreeSet<&IdempotencyKey> = effects_per_key.keys().copied().collect();
    for row in input.store.actions.iter().filter(|a| a.kind == "ad_kill") {
        if !effect_keys.contains(&row.key) {
            v.flag(
                input.seed,
                "receipt_has_effect",
                format!("{}: committed at {} but the world never paused it", row.key, row.committed_at),
            );
        }
    }
}

fn check_deadlines(input: &CheckInput<'_>, v: &mut Verdict) {
    for intent in &input.store.intents {
        let Some(ad) = intent.action.killed_ad() else { continue };
        let deadline = intent.opened_at + input.kill_deadline;
        let leaked = input.world.spend_between(ad, deadline, input.end);
        if leaked > 0 {
            v.leak_cents += leaked;
            let stopped = input.world.paused_at(ad).map_or("never".to_string(), |t| t.to_string());
            v.flag(
                input.seed,
                "kill_deadline",
                format!(
                    "{}: intent at {}, deadline {}, stopped {stopped}: {leaked} cents past the deadline",
                    ad, intent.opened_at, deadline
                ),
            );
        }
    }
}

fn check_escalation(input: &CheckInput<'_>, v: &mut Verdict) {
    use dlft_core::act::intent::Action;
    let intents: BTreeMap<&IdempotencyKey, &dlft_core::act::intent::Intent> =
        input.store.intents.iter().map(|i| (&i.key, i)).collect();
    for e in input.world.node_effects() {
        match intents.get(&e.key) {
            Some(i) if i.opened_at <= e.at => {}
            _ => v.flag(
                input.seed,
                "escalation_write_ahead",
                format!(
                    "{} {} {} at {} without an intent written first",
                    e.key,
                    if e.paused { "paused" } else { "resumed" },
                    e.node.id,
                    e.at
                ),
            ),
        }
    }
    for node in input.world.paused_nodes() {
        let kills: Vec<&dlft_core::act::intent::Intent> = input
            .store
            .intents
            .iter()
            .filter_map(|i| match &i.action {
                Action::PauseNode { node: n, kill, .. } if n == node => intents.get(kill).copied(),
                _ => None,
            })
            .collect();
        let held = kills.iter().any(|k| k.phase != IntentPhase::Committed);
        // The last of the node's kills and pauses to become final, and the
        // tick after it, may not have happened before the end.
        let pauses =
            input.store.intents.iter().filter(|i| matches!(&i.action, Action::PauseNode { node: n, .. } if n == node));
        let late = kills.iter().copied().chain(pauses).any(|i| i.updated_at + input.resume_within > input.end);
        if kills.is_empty() || !(held || late) {
            v.flag(
                input.seed,
                "collateral_restored",
                format!(
                    "{} {} is still paused at the end, though every kill that paused it ({}) was confirmed",
                    node.level.as_str(),
                    node.id,
                    kills.iter().map(|k| k.key.as_str()).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
}

fn check_brands(input: &CheckInput<'_>, v: &mut Verdict) {
    for intent in &input.store.intents {
        let Some(ad) = intent.action.killed_ad() else { continue };
        if let Some(account) = input.world.account_of(ad)
            && account != intent.brand.as_str()
        {
            v.flag(
                input.seed,
                "brand_isolation",
                format!("{}: brand {} opened it, but the ad is brand {account}'s", intent.key, intent.brand),
            );
        }
    }
}

/// Every call the model vendor billed has its cost row, booked before the
/// call under the same id, for at least the billed amount.
fn check_model_spend(input: &CheckInput<'_>, v: &mut Verdict) {
    let booked: BTreeMap<&str, i64> = input.store.costs.iter().map(|c| (c.call_id.as_str(), c.cost.minor)).collect();
    for bill in input.world.bills() {
        match booked.get(bill.call_id.as_str()) {
            Some(&cents) if cents >= bill.cents => {}
            other => {
                v.leak_cents += bill.cents;
                v.flag(
                    input.seed,
                    "model_spend",
                    format!("{}: billed {} cents for {}, booked {other:?}", bill.call_id, bill.cents, bill.page),
                );
            }
        }
    }
}

fn check_log(input: &CheckInput<'_>, v: &mut Verdict) {
    // Each brand's schedule slot fires once, however many workers raced for it.
    let mut fired: BTreeMap<(Option<&str>, &str), u32> = BTreeMap::new();
    for e in input.store.events.iter().filter(|e| e.kind == dlft_core::telemetry::EventKind::SlotFired) {
        *fired.entry((e.brand.as_ref().map(|b| b.as_str()), e.entity.as_str())).or_default() += 1;
    }
    for ((brand, slot), n) in fired.into_iter().filter(|(_, n)| *n > 1) {
        v.flag(input.seed, "slot_once", format!("{slot} of brand {brand:?} fired {n} times"));
    }
    let rebuilt = match replay(&input.store.events) {
        Ok(r) => r,
        Err(e) => return v.flag(input.seed, "log_replay", e),
    };
    let jobs: BTreeMap<_, String> = input.store.jobs.iter().map(|j| (j.id, j.state.as_str().to_string())).collect();
    if rebuilt.jobs != jobs {
        let diff = jobs.iter().find(|(id, s)| rebuilt.jobs.get(*id) != Some(*s));
        v.flag(input.seed, "log_replay", format!("job states differ from the log, first: {diff:?}"));
    }
    let intents: BTreeMap<_, String> =
        input.store.intents.iter().map(|i| (i.key.clone(), i.phase.as_str().to_string())).collect();
    if rebuilt.intents != intents {
        v.flag(input.seed, "log_replay", "intent phases differ from the log".into());
    }
}

/// What a claim was, in truth.
pub struct ClaimFact {
    pub brand: BrandId,
    pub person: usize,
    pub kind: crate::refunds::Kind,
    pub claimed: Money,
    pub claim: dlft_core::sense::claims::Claim,
    /// Its order's parcel, where the brand has a tracker.
    pub parcel: Option<crate::track17::Parcel>,
}

/// An order of a brand's store as the store shows it.
pub type ShownOrder = (BrandId, String, dlft_core::sense::shop::MirroredOrder);

/// What the shops and the claims desks know, at the end of a run.
pub struct ShopTruth {
    /// Every refund the shops made, its brand and its status at the end.
    pub refunds: Vec<(BrandId, crate::shop::Refund, dlft_core::sense::shop::RefundStatus)>,
    /// Claim id → what it was.
    pub claims: BTreeMap<String, ClaimFact>,
    /// (brand, person) → when each of their chargebacks was initiated.
    pub disputes: BTreeMap<(BrandId, usize), Vec<Timestamp>>,
    /// How often the refund job reads the disputes: a chargeback is known
    /// to every decision made a full period after it.
    pub review_every: Millis,
    pub caps: dlft_core::envelope::refund::TierCaps,
    pub budgets: Option<Budgets>,
    /// With a shop mirror: every store's orders as the shop shows them at
    /// the end, and the instant up to which the mirror must hold them
    /// (three reviews, the search's lag and a settlement before the end).
    pub mirror: Option<(Vec<ShownOrder>, Timestamp)>,
    /// The identity graph's key (the mirror hashes customers with it).
    pub identity_key: String,
}

impl ShopTruth {
    pub fn of(h: &crate::refunds::ShopHost, end: Timestamp) -> ShopTruth {
        let loop_cfg = crate::refunds::refund_config(&h.cfg, dlft_core::money::Currency::EUR);
        let mut t = ShopTruth {
            refunds: Vec::new(),
            claims: BTreeMap::new(),
            disputes: BTreeMap::new(),
            review_every: Millis::from_secs(h.cfg.review_every_s),
            caps: loop_cfg.caps,
            budgets: None,
            mirror: None,
            identity_key: loop_cfg.identity_key,
        };
        if h.cfg.mirror {
            let orders = h
                .brands
                .iter()
                .flat_map(|(brand, b)| {
                    crate::refunds::store_names(brand, &h.cfg).into_iter().flat_map(move |store| {
                        b.shop
                            .shown_orders(Some(&store), end)
                            .into_iter()
                            .map(move |o| (brand.clone(), store.clone(), o))
                    })
                })
                .collect();
            let lag = 3 * h.cfg.review_every_s * 1000 + h.cfg.search_lag_ms + h.cfg.settle_ms;
            t.mirror = Some((orders, Timestamp(end.0.saturating_sub(lag))));
        }
        for (brand, b) in &h.brands {
            for r in b.shop.refunds() {
                t.refunds.push((brand.clone(), r.clone(), b.shop.status(r, end)));
            }
            for c in &b.claims {
                t.caps.currency = c.record.claimed.currency;
                t.claims.insert(
                    c.record.id.clone(),
                    ClaimFact {
                        brand: brand.clone(),
                        person: c.person,
                        kind: b.people[c.person].kind,
                        claimed: c.record.claimed,
                        claim: c.record.claim,
                        parcel: b.parcels.as_ref().and_then(|p| {
                            b.shop.order_tracking(&c.record.order_id).first().and_then(|n| p.parcel(n)).cloned()
                        }),
                    },
                );
            }
            for (d, person) in &b.disputes {
                t.disputes.entry((brand.clone(), *person)).or_default().push(d.initiated_at);
            }
        }
        t
    }

    /// The claim a refund's key or note names (`…/{claim}`, a sabotaged
    /// key's `#n` dropped).
    fn claim_of(&self, key: &str) -> Option<(&str, &ClaimFact)> {
        let id = key.rsplit('/').next()?.split('#').next()?;
        self.claims.get_key_value(id).map(|(k, c)| (k.as_str(), c))
    }

    /// Claims of honest customers the chain refused (a deny verdict).
    pub fn honest_refused(&self, snapshot: &Snapshot) -> u32 {
        refund_refusals(snapshot)
            .filter(|e| self.claim_of(&e.entity).is_some_and(|(_, c)| c.kind == crate::refunds::Kind::Honest))
            .count() as u32
    }

    /// Ring claims refunded while the profile still trusted the identity.
    pub fn ring_refunds_before_caught(&self, snapshot: &Snapshot) -> u32 {
        use dlft_core::act::intent::Evidence;
        snapshot
            .intents
            .iter()
            .filter(|i| i.phase == IntentPhase::Committed)
            .filter(|i| match &i.evidence {
                Evidence::Refund { order, .. } => {
                    order.tier == dlft_core::estimate::risk::RiskTier::Trusted
                        && self.claim_of(i.key.as_str()).is_some_and(|(_, c)| c.kind == crate::refunds::Kind::Ring)
                }
                _ => false,
            })
            .count() as u32
    }
}

/// The refund chain's deny verdicts (one per claim refused).
pub fn refund_refusals(snapshot: &Snapshot) -> impl Iterator<Item = &dlft_core::telemetry::Event> {
    snapshot
        .events
        .iter()
        .filter(|e| e.kind == dlft_core::telemetry::EventKind::Verdict && e.entity.starts_with("refund/"))
        .filter(|e| e.after.contains("deny"))
}

/// `mirror_complete`: the shop mirror holds every order each store showed
/// unchanged since `until`, as the store shows it (total, what was
/// refunded, its parcels, its customer's keys), and nothing the stores do
/// not hold.
fn check_mirror(input: &CheckInput<'_>, orders: &[ShownOrder], until: Timestamp, secret: &[u8], v: &mut Verdict) {
    use dlft_core::estimate::identity::{IdentityKeys, OrderRecord};
    let mirrored: BTreeMap<(BrandId, String, String), OrderRecord> = input
        .store
        .state
        .iter()
        .filter(|(_, scope, _, _)| scope == dlft_core::jobs::mirror::ORDERS_SCOPE)
        .filter_map(|(brand, _, key, body)| match serde_json::from_str::<OrderRecord>(body) {
            Ok(r) => Some(((brand.clone(), r.store.clone(), r.order_id.clone()), r)),
            Err(e) => {
                v.flag(input.seed, "mirror_complete", format!("brand {brand}: row {key} does not read: {e}"));
                None
            }
        })
        .collect();
    let world: BTreeMap<(BrandId, String, String), &dlft_core::sense::shop::MirroredOrder> =
        orders.iter().map(|(b, s, o)| ((b.clone(), s.clone(), o.id.clone()), o)).collect();
    for (k, o) in world.iter().filter(|(_, o)| o.updated_at <= until) {
        let Some(r) = mirrored.get(k) else {
            v.flag(
                input.seed,
                "mirror_complete",
                format!("brand {} store {}: order {} never mirrored", k.0, k.1, o.id),
            );
            continue;
        };
        let keys = IdentityKeys::of(secret, &o.customer);
        if r.total != o.total || r.refunded != o.refunded || r.tracking_numbers != o.tracking_numbers || r.keys != keys
        {
            v.flag(
                input.seed,
                "mirror_complete",
                format!(
                    "brand {} store {}: order {} mirrored as {} refunded of {}, the shop shows {} of {} (since {})",
                    k.0, k.1, o.id, r.refunded, r.total, o.refunded, o.total, o.updated_at
                ),
            );
        }
    }
    for k in mirrored.keys().filter(|k| !world.contains_key(*k)) {
        v.flag(
            input.seed,
            "mirror_complete",
            format!("brand {} store {}: order {} is no order of the shop", k.0, k.1, k.2),
        );
    }
}

/// Refunds, judged against the shops' own records:
/// - `refund_ledger`: every refund that went through is booked (a committed
///   intent posting its amount), and every committed refund went through;
/// - `refund_once`: at most one refund that did not fail per claim;
/// - `refund_ceiling`: no refund above what was claimed, nor above the cap
///   of the tier its verdict recorded;
/// - `refund_blocked`: no refund to a customer with a chargeback the job
///   had a full review period to see;
/// - `caps_held`: the refunds of a brand's day never exceed its refund cap;
/// - `refund_tracked`: no refund of a "did not arrive" claim whose parcel
///   the brand's tracker showed delivered when the refund was decided;
/// - `refund_blocked_own`: no claim refused at the blocked tier unless its
///   own customer had charged back by then (the tier is a chargeback's: a
///   customer blocked without one was joined to someone else's history).
fn check_refunds(input: &CheckInput<'_>, shop: &ShopTruth, v: &mut Verdict) {
    use dlft_core::act::intent::Evidence;
    use dlft_core::sense::shop::RefundStatus;
    let seed = input.seed;
    let late = |at: Timestamp| at + input.kill_deadline > input.end;
    let intents: BTreeMap<String, &dlft_core::act::intent::Intent> = input
        .store
        .intents
        .iter()
        .filter(|i| i.action.kind() == "refund")
        .map(|i| (dlft_core::act::refund::marker(&i.key), i))
        .collect();
    let ledger: BTreeMap<&IdempotencyKey, &Transfer> =
        input.store.transfers.iter().filter(|t| t.purpose == Purpose::Refund).map(|t| (&t.id, t)).collect();
    let mut per_claim: BTreeMap<&str, u32> = BTreeMap::new();
    let mut by_marker: BTreeMap<&str, i64> = BTreeMap::new();
    let mut held: BTreeMap<(BrandId, String), i64> = BTreeMap::new();
    for (brand, r, status) in &shop.refunds {
        if *status == RefundStatus::Failure {
            continue;
        }
        let claim = shop.claim_of(&r.note);
        if let Some((id, _)) = claim {
            *per_claim.entry(id).or_default() += 1;
        }
        if *status == RefundStatus::Success {
            *by_marker.entry(r.note.as_str()).or_default() += r.amount.minor;
        }
        let intent = intents.get(&r.note);
        match (intent, claim) {
            (_, None) => {
                v.flag(seed, "refund_ledger", format!("{}: {} refunded for no claim ({})", r.id, r.amount, r.note))
            }
            (None, Some(_)) if !late(r.created_at) => v.flag(
                seed,
                "refund_ledger",
                format!("{}: {} refunded under {}, no intent of ours", r.id, r.amount, r.note),
            ),
            _ => {}
        }
        if let Some((id, c)) = claim {
            if r.amount.minor > c.claimed.minor {
                v.flag(
                    seed,
                    "refund_ceiling",
                    format!("{}: {} refunded on claim {id} of {}", r.id, r.amount, c.claimed),
                );
            }
            if let Some(Evidence::Refund { order, .. }) = intent.map(|i| &i.evidence)
                && let Some(cap) = shop.caps.cap(order.tier)
                && r.amount.minor > cap
            {
                v.flag(
                    seed,
                    "refund_ceiling",
                    format!("{}: {} refunded on claim {id}, tier {} caps {cap}", r.id, r.amount, order.tier.as_str()),
                );
            }
            let decided = intent.map_or(r.created_at, |i| i.opened_at);
            if let Some(at) = shop
                .disputes
                .get(&(c.brand.clone(), c.person))
                .and_then(|ds| ds.iter().find(|d| **d + shop.review_every <= decided))
            {
                v.flag(
                    seed,
                    "refund_blocked",
                    format!(
                        "{}: {} refunded on claim {id} at {decided}, its customer charged back at {at}",
                        r.id, r.amount
                    ),
                );
            }
            if c.claim == dlft_core::sense::claims::Claim::DidNotArrive
                && let Some(p) = &c.parcel
                && p.status(decided) == dlft_core::sense::wire::track17::TrackStatus::Delivered
            {
                v.flag(
                    seed,
                    "refund_tracked",
                    format!(
                        "{}: {} refunded on claim {id} (did not arrive) at {decided}, parcel {} delivered",
                        r.id, r.amount, p.number
                    ),
                );
            }
            if let Some(b) = &shop.budgets {
                let day = period_of(dlft_core::envelope::budget::Window::Daily, &b.zone, decided).label;
                *held.entry((brand.clone(), day)).or_default() += r.amount.minor;
            }
        }
    }
    for (id, n) in per_claim.into_iter().filter(|(_, n)| *n > 1) {
        v.flag(seed, "refund_once", format!("claim {id}: {n} refunds"));
    }
    for e in refund_refusals(input.store).filter(|e| e.cause.starts_with("tier blocked")) {
        let Some((id, c)) = shop.claim_of(&e.entity) else { continue };
        let charged_back =
            shop.disputes.get(&(c.brand.clone(), c.person)).is_some_and(|d| d.iter().any(|at| *at <= e.at));
        if !charged_back {
            v.flag(
                seed,
                "refund_blocked_own",
                format!(
                    "claim {id} of a {:?} customer who never charged back refused at {}: {}",
                    c.kind, e.at, e.cause
                ),
            );
        }
    }
    if let Some((orders, until)) = &shop.mirror {
        check_mirror(input, orders, *until, shop.identity_key.as_bytes(), v);
    }
    for (marker, i) in &intents {
        if i.phase != IntentPhase::Committed {
            continue;
        }
        let posted = ledger.get(&i.key).map_or(0, |t| t.posted);
        let shown = by_marker.get(marker.as_str()).copied().unwrap_or(0);
        if shown != posted {
            v.flag(
                seed,
                "refund_ledger",
                format!("{}: committed posting {posted}, the shop shows {shown} refunded", i.key),
            );
        }
    }
    if let Some(b) = &shop.budgets {
        for cap in b.caps.iter().filter(|c| c.purpose == Purpose::Refund && c.counterparty.is_none()) {
            for ((brand, day), total) in &held {
                if cap.window == dlft_core::envelope::budget::Window::Daily && *total > cap.limit.minor {
                    v.flag(
                        seed,
                        "caps_held",
                        format!(
                            "brand {brand}: {} refunded on {day}, over its cap {}",
                            Money::new(*total, cap.limit.currency),
                            cap.limit
                        ),
                    );
                }
            }
        }
    }
}
