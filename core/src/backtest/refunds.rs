//! The refund backtester: past claims replayed through the refund job's own
//! chain ([`judge_claim`]: identity graph, risk tier, refund policy,
//! envelope) in the order they were opened, with no look-ahead.
//!
//! Each claim is judged at its `opened_at`, from the claims opened before it
//! (settled as this replay settled them, which is what the tier reads) and
//! the disputes initiated by then; a chargeback weeks later reaches only
//! the claims after it. Orders are the claims' own: what may still be
//! refunded is the order's total minus what the replay refunded on it
//! before; there is nothing in flight (every refund of the replay is
//! instant).
//!
//! With the brand's budgets (its `refund` caps: daily, monthly, lifetime in
//! its time zone), every refund reserves on a ledger of the replay's own
//! through the refund job's own `Room` (`budget::reserve`, as a store books
//! it; a reservation counts against a cap as a posted refund does): a
//! refund the caps cannot hold waits, as the refund job's claim
//! waits for room, and is judged again once a cap's period has turned (at
//! the next claim after it); a claim still waiting when history ends is
//! reported unpaid. Refunds no cap covers are refused, as live. Without
//! budgets the replay shows what the policy and the ceiling alone would pay.
//!
//! With labels (the sim's truth of who made each claim: `honest`, `abuser`,
//! `ring`), [`summarize`] scores a replay: refunds paid, abuse stopped,
//! honest customers refused, and chargebacks avoided (claims on orders
//! that were later charged back, refused) or paid twice (refunded, then
//! charged back).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::RefundConfig;
use crate::decide::{ClaimOutcome, judge_claim};
use crate::envelope::Verdict;
use crate::envelope::budget::{self, Budgets, Purpose, Reserve};
use crate::envelope::refund::RefundJudged;
use crate::estimate::identity::Profile;
use crate::estimate::risk::RiskTier;
use crate::ids::{BrandId, IdempotencyKey};
use crate::jobs::payables::Room;
use crate::money::Money;
use crate::sense::claims::{ClaimRecord, Dispute, Settlement};
use crate::sense::shop::ShopOrder;
use crate::time::Timestamp;

/// One claim as the replay judged it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefundCase {
    pub claim_id: String,
    pub order_id: String,
    pub at: Timestamp,
    pub tier: RiskTier,
    pub claimed: Money,
    /// What the chain would have refunded (zero when it refused).
    pub paid: Money,
    /// Why: the approval's or the refusal's reason.
    pub why: String,
}

/// Replays `claims` of `brand` through the refund chain (see the module's
/// doc). Claims are taken in `(opened_at, id)` order; a claim id seen twice
/// is refused the second time.
pub fn replay(cfg: &RefundConfig, brand: &BrandId, claims: &[ClaimRecord], disputes: &[Dispute]) -> Vec<RefundCase> {
    replay_within(cfg, None, brand, claims, disputes)
}

/// What the replay's chain made of a claim at one instant.
enum Judged {
    Paid(Money, String, Settlement),
    Refused(String, Settlement),
    /// Approved, but the refund caps cannot hold it now.
    Waits,
}

/// The replay's state between claims: what the chain reads and what it
/// booked.
struct Replay<'a> {
    cfg: &'a RefundConfig,
    /// The brand's refund caps and the replay's own accounts on them
    /// (every refund of the replay is instant: reserved, never voided).
    room: Option<Room>,
    brand: &'a BrandId,
    history: Vec<ClaimRecord>,
    last_tier: BTreeMap<String, RiskTier>,
    opened: BTreeSet<IdempotencyKey>,
    refunded_on: BTreeMap<String, i64>,
}

/// The identity graph as the replay's clock moves: grown by each claim as
/// it is opened and each dispute as it is initiated, and told each
/// settlement, rather than built again per claim (the same facts as a
/// graph built whole at each instant; linear in history, not quadratic).
struct Graph<'a> {
    profile: Profile,
    /// Each claim's handle in the graph, by its place in the history.
    handles: Vec<usize>,
    /// The disputes by when they were initiated, and how many are in.
    disputes: Vec<&'a Dispute>,
    added: usize,
}

impl<'a> Graph<'a> {
    fn new(cfg: &RefundConfig, disputes: &'a [Dispute]) -> Graph<'a> {
        let mut disputes: Vec<&Dispute> = disputes.iter().collect();
        disputes.sort_by_key(|d| d.initiated_at);
        let profile = Profile::new(cfg.identity_key.as_bytes()).without(&cfg.shared);
        Graph { profile, handles: Vec::new(), disputes, added: 0 }
    }

    /// Takes in the disputes initiated by `now`.
    fn advance(&mut self, now: Timestamp) {
        while let Some(d) = self.disputes.get(self.added).filter(|d| d.initiated_at <= now) {
            self.profile.add_dispute(d);
            self.added += 1;
        }
    }
}

impl Replay<'_> {
    /// Judges the claim at `history[at]` at `now` on `profile` (one per
    /// instant, as the refund job builds one per run).
    fn judge(&mut self, at: usize, now: Timestamp, profile: &Profile) -> (RiskTier, Judged) {
        let claim = self.history[at].clone();
        let currency = claim.order_total.currency;
        let before = self.refunded_on.get(&claim.order_id).copied().unwrap_or(0);
        let order = ShopOrder {
            id: claim.order_id.clone(),
            total: claim.order_total,
            max_refundable: Money::new((claim.order_total.minor - before).max(0), currency),
            payment: Some((format!("{}/payment", claim.order_id), "history".into())),
            tracking_numbers: Vec::new(),
        };
        let zero = Money::zero(currency);
        let (cfg, brand) = (self.cfg, self.brand);
        let j = judge_claim(
            cfg,
            &cfg.caps,
            brand,
            profile,
            &mut self.last_tier,
            &claim,
            &order,
            zero,
            &self.opened,
            false,
            now,
        );
        let tier = j.tier;
        let no = |why: String| {
            let s = Settlement::NoRefund { why: why.clone(), tier: tier.as_str().into(), tracked: None };
            Judged::Refused(why, s)
        };
        let judged = match j.outcome {
            ClaimOutcome::Malformed(why)
            | ClaimOutcome::Judged { judged: RefundJudged::Refused(Verdict { reason: why, .. }), .. } => no(why),
            ClaimOutcome::Opened(key) => no(format!("{key} opened before")),
            ClaimOutcome::Judged { judged: RefundJudged::Approved(a), .. } => {
                if let Some(room) = &mut self.room {
                    // As the refund job takes room: fits, waits, or no cap covers it.
                    let reserve = Reserve { purpose: Purpose::Refund, amount: a.amount, counterparty: None };
                    match room.take(brand, &a.key, &reserve, now) {
                        Ok(true) => {}
                        Ok(false) => return (tier, Judged::Waits),
                        Err(why) => return (tier, no(format!("claim {}: {why}", claim.id))),
                    }
                }
                self.opened.insert(a.key.clone());
                *self.refunded_on.entry(claim.order_id.clone()).or_default() += a.amount.minor;
                let s = Settlement::Refunded {
                    key: a.key.to_string(),
                    amount: a.amount,
                    tier: tier.as_str().into(),
                    tracked: None,
                };
                Judged::Paid(a.amount, a.verdict.reason.clone(), s)
            }
        };
        (tier, judged)
    }

    /// The label of each refund cap's period at `now`: a wait may end when
    /// one of them turns.
    fn periods(&self, now: Timestamp) -> Vec<String> {
        self.room.as_ref().map_or_else(Vec::new, |Room { budgets: b, .. }| {
            b.caps
                .iter()
                .filter(|c| c.purpose == Purpose::Refund)
                .map(|c| budget::period_of(c.window, &b.zone, now).label)
                .collect()
        })
    }
}

/// [`replay`] under the brand's `budgets` (see the module's doc); `None`:
/// no caps applied.
pub fn replay_within(
    cfg: &RefundConfig,
    budgets: Option<&Budgets>,
    brand: &BrandId,
    claims: &[ClaimRecord],
    disputes: &[Dispute],
) -> Vec<RefundCase> {
    let mut sorted: Vec<ClaimRecord> = claims.iter().cloned().map(|c| ClaimRecord { settled: None, ..c }).collect();
    sorted.sort_by(|a, b| (a.opened_at, &a.id).cmp(&(b.opened_at, &b.id)));
    let mut r = Replay {
        cfg,
        room: budgets.map(|b| Room { budgets: b.clone(), accounts: BTreeMap::new() }),
        brand,
        history: Vec::with_capacity(sorted.len()),
        last_tier: BTreeMap::new(),
        opened: BTreeSet::new(),
        refunded_on: BTreeMap::new(),
    };
    let mut graph = Graph::new(cfg, disputes);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(sorted.len());
    // Claims waiting for room (their index in `history`), and the caps'
    // periods when they were last tried.
    let mut waiting: Vec<(usize, RiskTier)> = Vec::new();
    let mut tried_in: Vec<String> = Vec::new();
    let case = |c: &ClaimRecord, at, tier, paid, why| RefundCase {
        claim_id: c.id.clone(),
        order_id: c.order_id.clone(),
        at,
        tier,
        claimed: c.claimed,
        paid,
        why,
    };
    for claim in sorted {
        let now = claim.opened_at;
        graph.advance(now);
        if !waiting.is_empty() && r.periods(now) != tried_in {
            tried_in = r.periods(now);
            // Every waiting claim is judged on the graph as of now: their
            // settlements count from the next instant.
            let mut settled = Vec::new();
            for (at, _) in std::mem::take(&mut waiting) {
                let (tier, judged) = r.judge(at, now, &graph.profile);
                let c = r.history[at].clone();
                match judged {
                    Judged::Waits => waiting.push((at, tier)),
                    Judged::Paid(paid, why, s) => {
                        settled.push((at, s));
                        let why = format!("{why} (waited for the refund caps' room since {})", c.opened_at);
                        out.push(case(&c, now, tier, paid, why));
                    }
                    Judged::Refused(why, s) => {
                        settled.push((at, s));
                        out.push(case(&c, now, tier, Money::zero(c.claimed.currency), why));
                    }
                }
            }
            for (at, s) in settled {
                r.history[at].settled = Some(s);
                graph.profile.settle(graph.handles[at], &r.history[at]);
            }
        }
        let zero = Money::zero(claim.order_total.currency);
        if !seen.insert(claim.id.clone()) {
            let why = format!("claim {} seen before: judged once", claim.id);
            out.push(case(&claim, now, RiskTier::Trusted, zero, why));
            continue;
        }
        r.history.push(claim.clone());
        graph.handles.push(graph.profile.add_claim(&claim));
        let at = r.history.len() - 1;
        let (tier, judged) = r.judge(at, now, &graph.profile);
        match judged {
            Judged::Waits => {
                waiting.push((at, tier));
                tried_in = r.periods(now);
            }
            Judged::Paid(paid, why, s) => {
                assert!(paid.minor >= 0 && paid.minor <= claim.order_total.minor, "{}: paid {paid}", claim.id);
                r.history[at].settled = Some(s);
                graph.profile.settle(graph.handles[at], &r.history[at]);
                out.push(case(&claim, now, tier, paid, why));
            }
            Judged::Refused(why, s) => {
                r.history[at].settled = Some(s);
                graph.profile.settle(graph.handles[at], &r.history[at]);
                out.push(case(&claim, now, tier, zero, why));
            }
        }
    }
    for (at, tier) in waiting {
        let c = &r.history[at];
        let why = "approved, still waiting for the refund caps' room when history ends".to_string();
        out.push(case(c, c.opened_at, tier, Money::zero(c.claimed.currency), why));
    }
    out
}

/// Counts for one label (or for all claims).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub claims: usize,
    pub refunded: usize,
    pub refused: usize,
    pub claimed_minor: i64,
    pub paid_minor: i64,
}

/// A replay scored against the truth.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RefundSummary {
    pub all: Tally,
    /// Per label (`honest`, `abuser`, `ring`, or `unlabelled`).
    pub by_label: BTreeMap<String, Tally>,
    /// Claims by someone not honest that were refused: abuse stopped.
    pub abuse_stopped: usize,
    pub abuse_stopped_minor: i64,
    /// Honest claims refused (the cost of caution).
    pub honest_refused: usize,
    /// Claims on orders charged back later: refused (a chargeback
    /// avoided paying twice) and refunded (paid twice).
    pub chargebacks_avoided: usize,
    pub paid_twice: usize,
    pub paid_twice_minor: i64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.claims += o.claims;
        self.refunded += o.refunded;
        self.refused += o.refused;
        self.claimed_minor += o.claimed_minor;
        self.paid_minor += o.paid_minor;
    }
}

impl RefundSummary {
    /// Adds another brand's score to this one (the totals over brands).
    pub fn add(&mut self, o: &RefundSummary) {
        self.all.add(&o.all);
        for (label, t) in &o.by_label {
            self.by_label.entry(label.clone()).or_default().add(t);
        }
        self.abuse_stopped += o.abuse_stopped;
        self.abuse_stopped_minor += o.abuse_stopped_minor;
        self.honest_refused += o.honest_refused;
        self.chargebacks_avoided += o.chargebacks_avoided;
        self.paid_twice += o.paid_twice;
        self.paid_twice_minor += o.paid_twice_minor;
    }
}

/// Scores `cases` with `labels` (claim id → label) and the disputes
/// (charged-back orders).
pub fn summarize(cases: &[RefundCase], labels: &BTreeMap<String, String>, disputes: &[Dispute]) -> RefundSummary {
    let charged_back: BTreeSet<&str> = disputes.iter().map(|d| d.order_id.as_str()).collect();
    let mut s = RefundSummary::default();
    for c in cases {
        let label = labels.get(&c.claim_id).map_or("unlabelled", String::as_str);
        let refunded = c.paid.minor > 0;
        for t in [&mut s.all, s.by_label.entry(label.to_string()).or_default()] {
            t.claims += 1;
            t.claimed_minor += c.claimed.minor;
            t.paid_minor += c.paid.minor;
            if refunded {
                t.refunded += 1;
            } else {
                t.refused += 1;
            }
        }
        match (label, refunded) {
            ("honest", false) => s.honest_refused += 1,
            ("abuser" | "ring", false) => {
                s.abuse_stopped += 1;
                s.abuse_stopped_minor += c.claimed.minor;
            }
            _ => {}
        }
        if charged_back.contains(c.order_id.as_str()) {
            if refunded {
                s.paid_twice += 1;
                s.paid_twice_minor += c.paid.minor;
            } else {
                s.chargebacks_avoided += 1;
            }
        }
    }
    debug_assert_eq!(s.all.claims, s.all.refunded + s.all.refused);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::sense::claims::{Claim, Customer, DisputeStatus, Tracking};

    fn cfg() -> RefundConfig {
        RefundConfig {
            every: crate::time::Millis::from_secs(3600),
            policy: Default::default(),
            tiers: Default::default(),
            caps: crate::envelope::refund::TierCaps { currency: Currency::EUR, trusted: None, watch: 3000, high: 1000 },
            identity_key: "k".into(),
            shared: Default::default(),
        }
    }

    fn jane() -> Customer {
        Customer { email: "jane@example.com".into(), phone: String::new(), address: String::new(), card: String::new() }
    }

    fn claim(id: &str, order: &str, at: u64, claimed: i64) -> ClaimRecord {
        ClaimRecord {
            id: id.into(),
            store: "s".into(),
            order_id: order.into(),
            claim: Claim::WrongItem,
            claimed: Money::new(claimed, Currency::EUR),
            order_total: Money::new(5_000, Currency::EUR),
            tracking: Tracking::Delivered,
            days_since_shipped: 3,
            customer: jane(),
            opened_at: Timestamp(at),
            settled: None,
        }
    }

    fn chargeback(order: &str, at: u64) -> Dispute {
        Dispute {
            id: format!("d-{order}"),
            store: "s".into(),
            order_id: order.into(),
            status: DisputeStatus::Open,
            reason: "fraudulent".into(),
            amount: Money::new(5_000, Currency::EUR),
            customer: jane(),
            initiated_at: Timestamp(at),
        }
    }

    /// A chargeback blocks the claims after it, never the ones before (no
    /// look-ahead); the order's refundable amount shrinks with each refund;
    /// a claim id is judged once; the claims come in time order whatever
    /// the input's.
    #[test]
    fn the_replay_has_no_look_ahead_and_refunds_each_claim_once() {
        let brand = BrandId::new("b");
        let claims = [
            claim("c3", "o2", 300, 1_000),
            claim("c1", "o1", 100, 3_000),
            claim("c2", "o1", 200, 3_000),
            claim("c1", "o9", 400, 10),
        ];
        let disputes = [chargeback("o2", 250)];
        let cases = replay(&cfg(), &brand, &claims, &disputes);
        let ids: Vec<&str> = cases.iter().map(|c| c.claim_id.as_str()).collect();
        assert_eq!(ids, ["c1", "c2", "c3", "c1"], "time order");
        assert_eq!(cases[0].paid.minor, 3_000, "a trusted customer's first claim, in full");
        assert_eq!(cases[1].paid.minor, 2_000, "what the order still holds: 5,000 - 3,000");
        assert_eq!(cases[2].paid.minor, 0, "after the chargeback at 250: blocked");
        assert_eq!(cases[2].tier, RiskTier::Blocked, "{:?}", cases[2]);
        assert_eq!(cases[3].paid.minor, 0, "{}", cases[3].why);
        assert!(cases[3].why.contains("seen before"), "{}", cases[3].why);
        // Without the chargeback's date in range, nothing is blocked.
        let later = [chargeback("o2", 10_000)];
        let cases = replay(&cfg(), &brand, &claims[..3], &later);
        assert_eq!(cases[2].paid.minor, 1_000, "the chargeback comes after every claim");
        let labels: BTreeMap<String, String> =
            [("c1", "honest"), ("c2", "honest"), ("c3", "abuser")].map(|(a, b)| (a.to_string(), b.to_string())).into();
        let s = summarize(&cases, &labels, &later);
        assert_eq!((s.all.claims, s.all.refunded, s.paid_twice, s.abuse_stopped), (3, 3, 1, 0));
        let blocked = replay(&cfg(), &brand, &claims[..3], &disputes);
        let s = summarize(&blocked, &labels, &disputes);
        assert_eq!((s.abuse_stopped, s.abuse_stopped_minor, s.chargebacks_avoided, s.honest_refused), (1, 1_000, 1, 0));
        // Totals over brands are the sum of the brands' scores.
        let mut twice = s.clone();
        twice.add(&s);
        assert_eq!((twice.all.claims, twice.by_label["abuser"].claims, twice.abuse_stopped_minor), (6, 2, 2_000));
    }

    /// Under a daily refund cap the replay books each refund on its own
    /// ledger: a claim the day's room cannot hold waits and is paid on a
    /// later day (never beyond a day's cap), one still waiting when history
    /// ends is unpaid; a currency no cap covers is refused, as live.
    #[test]
    fn the_replay_books_refunds_under_the_brands_caps() {
        use crate::envelope::budget::{Cap, Window, Zone};
        const DAY: u64 = 86_400_000;
        let brand = BrandId::new("b");
        let zone = Zone::parse("Europe/Berlin").unwrap();
        let daily =
            Budgets::new(zone, vec![Cap::brand(Purpose::Refund, Window::Daily, Money::new(4_000, Currency::EUR))])
                .unwrap();
        // Day 1 (Berlin): c1 3,000 fits, c2 2,000 does not (5,000 > 4,000)
        // and waits; day 2: c3 opens, c2 is paid first, then c3 fits; c4 on
        // day 2 would take the day past 4,000 and waits to the end.
        let t0 = 1_767_225_600_000 + 12 * 3_600_000; // 2026-01-01T12:00Z
        let mut claims = [
            claim("c1", "o1", t0, 3_000),
            claim("c2", "o2", t0 + 1_000, 2_000),
            claim("c3", "o3", t0 + DAY, 1_500),
            claim("c4", "o4", t0 + DAY + 1_000, 1_000),
        ];
        for (i, c) in claims.iter_mut().enumerate() {
            c.customer.email = format!("p{i}@example.com");
        }
        let cases = replay_within(&cfg(), Some(&daily), &brand, &claims, &[]);
        let paid: Vec<(&str, i64, u64)> = cases.iter().map(|c| (c.claim_id.as_str(), c.paid.minor, c.at.0)).collect();
        assert_eq!(
            paid,
            [("c1", 3_000, t0), ("c2", 2_000, t0 + DAY), ("c3", 1_500, t0 + DAY), ("c4", 0, t0 + DAY + 1_000)],
            "{cases:#?}"
        );
        assert!(cases[1].why.contains("waited"), "{}", cases[1].why);
        assert!(cases[3].why.contains("still waiting"), "{}", cases[3].why);
        // Without the caps, the policy alone pays all four.
        let free = replay(&cfg(), &brand, &claims, &[]);
        assert_eq!(free.iter().map(|c| c.paid.minor).sum::<i64>(), 7_500);
        // A cap in another currency covers nothing: refused, not waiting.
        let usd = Budgets::new(
            Zone::utc(),
            vec![Cap::brand(Purpose::Refund, Window::Daily, Money::new(9_999, Currency::USD))],
        )
        .unwrap();
        let refused = replay_within(&cfg(), Some(&usd), &brand, &claims[..1], &[]);
        assert_eq!(refused[0].paid.minor, 0);
        assert!(refused[0].why.contains("no cap covers"), "{}", refused[0].why);
    }
}
