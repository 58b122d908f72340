//! The cross-store identity graph (issue 14): which claims and disputes,
//! across every store of a brand, come from one customer, and what that
//! customer's history says ([`IdentityFacts`], which `risk::tier_of` turns
//! into a tier).
//!
//! - Keys: email, phone, address and card (BIN + last 4 + expiry), each
//!   normalised (an email's case, `+tag` and Gmail dots; a phone's
//!   punctuation and `00`/`+`; an address's case, punctuation and spacing)
//!   and then hashed with HMAC-SHA256 under the brand's identity key, so
//!   the loop keeps no raw personal data and a leaked profile names nobody.
//! - One identity is what email, phone or card join (union-find over the
//!   records). An address does not join: households and parcel lockers
//!   share one; instead, the number of *other* identities shipping to one
//!   of an identity's addresses is a fact of its own (a ring).
//! - No look-ahead: [`Profile::build`] takes only what was known at `as_of`
//!   (claims opened, disputes initiated and mirrored orders created by then;
//!   a settlement counts from its claim's opening, as the desk shows it), so
//!   the backtester can replay history through the same code. A mirrored
//!   order's refunded money is as last mirrored (the mirror keeps one row per
//!   order, not its history).
//! - Orders: every order the shop mirror read ([`OrderRecord`], keys hashed
//!   on arrival) joins and counts like a claim's: an identity's orders and
//!   their value, its addresses, and what the shop refunded on them, outside
//!   the loop's claims too (a claim's refund and the shop's on one order are
//!   the same money: the larger counts, once).

use std::collections::{BTreeMap, BTreeSet};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::money::Money;
use crate::sense::claims::{Claim, ClaimRecord, Customer, Dispute, DisputeStatus, Settlement, Tracking};
use crate::sense::shop::{MirroredOrder, RiskLevel};
use crate::time::Timestamp;

use super::risk::IdentityFacts;

/// The keyed hashes of one customer's identifying data (hex, 128 bits);
/// `None` where the desk had nothing usable.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentityKeys {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub card: Option<String>,
}

impl IdentityKeys {
    /// The keys of `c` under `secret`.
    pub fn of(secret: &[u8], c: &Customer) -> IdentityKeys {
        let h = |kind: &str, v: Option<String>| v.map(|v| keyed_hash(secret, kind, &v));
        IdentityKeys {
            email: h("email", normal_email(&c.email)),
            phone: h("phone", normal_phone(&c.phone)),
            address: h("address", normal_address(&c.address)),
            card: h("card", normal_card(&c.card)),
        }
    }

    /// The keys that make two records one identity.
    fn joining(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [("email", &self.email), ("phone", &self.phone), ("card", &self.card)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    }
}

/// An order as the shop mirror keeps it (`jobs::mirror`): its customer's
/// keys hashed on arrival, never the raw data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub store: String,
    pub order_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub keys: IdentityKeys,
    pub total: Money,
    /// What the shop shows refunded, by anyone.
    pub refunded: Money,
    pub tracking_numbers: Vec<String>,
    pub risk: RiskLevel,
}

impl OrderRecord {
    /// `order` of `store`, its customer hashed under `secret`.
    pub fn of(secret: &[u8], store: &str, order: &MirroredOrder) -> OrderRecord {
        OrderRecord {
            store: store.to_string(),
            order_id: order.id.clone(),
            created_at: order.created_at,
            updated_at: order.updated_at,
            keys: IdentityKeys::of(secret, &order.customer),
            total: order.total,
            refunded: order.refunded,
            tracking_numbers: order.tracking_numbers.clone(),
            risk: order.risk,
        }
    }
}

fn keyed_hash(secret: &[u8], kind: &str, value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(kind.as_bytes());
    mac.update(b":");
    mac.update(value.as_bytes());
    let mut hex = String::with_capacity(32);
    for b in &mac.finalize().into_bytes()[..16] {
        use std::fmt::Write;
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// `Jane.Doe+shop@GoogleMail.com` → `janedoe@gmail.com`; `None` without an `@`.
pub fn normal_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    let (local, domain) = e.rsplit_once('@')?;
    let local = local.split('+').next().unwrap_or_default();
    let domain = if domain == "googlemail.com" { "gmail.com" } else { domain };
    let local = if domain == "gmail.com" { local.replace('.', "") } else { local.to_string() };
    (!local.is_empty() && domain.contains('.')).then(|| format!("{local}@{domain}"))
}

/// Digits only, without a `00` international prefix; `None` under 6 digits.
pub fn normal_phone(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.strip_prefix("00").map(str::to_string).unwrap_or(digits);
    (digits.len() >= 6).then_some(digits)
}

/// Lower case, letters and digits, single spaces; `None` when empty.
pub fn normal_address(raw: &str) -> Option<String> {
    let mapped: String =
        raw.to_lowercase().replace('ß', "ss").chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect();
    let words: Vec<&str> = mapped.split_whitespace().collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Upper case without spaces; `None` when empty.
pub fn normal_card(raw: &str) -> Option<String> {
    let c: String = raw.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_uppercase();
    (!c.is_empty()).then_some(c)
}

/// A record's precedence for an order's value: its kind's, then its place.
type Rank = (u8, usize);

/// One record of the graph.
enum Rec {
    Claim(ClaimRecord),
    Dispute(Dispute),
    Order(OrderRecord),
}

impl Rec {
    /// Which record's value an order takes when several name it: a mirrored
    /// order's total, else a dispute's amount, else a claim's order total
    /// (the later of one kind).
    fn rank(&self) -> u8 {
        match self {
            Rec::Claim(_) => 0,
            Rec::Dispute(_) => 1,
            Rec::Order(_) => 2,
        }
    }
}

/// The identity graph of one brand, grown record by record.
///
/// Built whole for a review ([`Profile::build`]) or grown as a replay's
/// clock moves ([`Profile::add_claim`], [`Profile::add_dispute`],
/// [`Profile::settle`]): the same records give the same facts either way,
/// whatever order they came in. Joins are a union-find over the records
/// (the smaller identity merged into the larger, its members and its
/// addresses with it), so growing a graph of `n` records costs
/// `O(n log n)` and an identity's facts are read from its own records
/// ([`Profile::facts_of`]), not from the whole graph.
pub struct Profile {
    secret: Vec<u8>,
    recs: Vec<Rec>,
    keys: Vec<IdentityKeys>,
    parent: Vec<usize>,
    /// Joining key (`kind:hash`) → a record of its identity.
    by_key: BTreeMap<String, usize>,
    /// Identity (a root record) → its records.
    members: BTreeMap<usize, Vec<usize>>,
    /// Identity → its label (its smallest joining key).
    labels: BTreeMap<usize, String>,
    /// Address key → identities shipping to it, with how many records each.
    by_address: BTreeMap<String, BTreeMap<usize, u32>>,
    /// `(store, order)` → the claims on it (for what the shop refunded
    /// outside them).
    claims_on: BTreeMap<(String, String), Vec<usize>>,
    /// Customers' keys already hashed (four HMACs each): a customer's
    /// records repeat, and hashing is most of a review's work.
    memo: std::sync::Mutex<BTreeMap<Customer, IdentityKeys>>,
}

impl Profile {
    /// An empty graph under `secret`.
    pub fn new(secret: &[u8]) -> Profile {
        Profile {
            secret: secret.to_vec(),
            recs: Vec::new(),
            keys: Vec::new(),
            parent: Vec::new(),
            by_key: BTreeMap::new(),
            members: BTreeMap::new(),
            labels: BTreeMap::new(),
            by_address: BTreeMap::new(),
            claims_on: BTreeMap::new(),
            memo: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The graph of what was known at `as_of`: claims opened, disputes
    /// initiated and mirrored orders created by then.
    pub fn build(
        secret: &[u8],
        claims: &[ClaimRecord],
        disputes: &[Dispute],
        orders: &[OrderRecord],
        as_of: Timestamp,
    ) -> Profile {
        let mut p = Profile::new(secret);
        for c in claims.iter().filter(|c| c.opened_at <= as_of) {
            p.add_claim(c.clone());
        }
        for d in disputes.iter().filter(|d| d.initiated_at <= as_of) {
            p.add_dispute(d.clone());
        }
        for o in orders.iter().filter(|o| o.created_at <= as_of) {
            p.add_order(o.clone());
        }
        p
    }

    /// Adds a claim; its handle for [`Profile::settle`].
    pub fn add_claim(&mut self, c: ClaimRecord) -> usize {
        let keys = self.keys_of(&c.customer);
        let order = (c.store.clone(), c.order_id.clone());
        let i = self.add(Rec::Claim(c), keys);
        self.claims_on.entry(order).or_default().push(i);
        i
    }

    /// Adds a dispute.
    pub fn add_dispute(&mut self, d: Dispute) {
        let keys = self.keys_of(&d.customer);
        self.add(Rec::Dispute(d), keys);
    }

    /// Adds a mirrored order (its keys hashed on arrival).
    pub fn add_order(&mut self, o: OrderRecord) {
        let keys = o.keys.clone();
        self.add(Rec::Order(o), keys);
    }

    /// Records how the claim `handle` (from [`Profile::add_claim`]) was
    /// settled.
    pub fn settle(&mut self, handle: usize, settled: Option<Settlement>) {
        if let Some(Rec::Claim(c)) = self.recs.get_mut(handle) {
            c.settled = settled;
        }
    }

    fn add(&mut self, rec: Rec, keys: IdentityKeys) -> usize {
        let i = self.recs.len();
        self.parent.push(i);
        self.members.insert(i, vec![i]);
        if let Some(a) = &keys.address {
            *self.by_address.entry(a.clone()).or_default().entry(i).or_default() += 1;
        }
        let joining: Vec<String> = keys.joining().map(|(kind, v)| format!("{kind}:{v}")).collect();
        if let Some(min) = joining.iter().min() {
            self.labels.insert(i, min.clone());
        }
        self.recs.push(rec);
        self.keys.push(keys);
        for k in joining {
            match self.by_key.get(&k) {
                Some(&j) => self.join(i, j),
                None => {
                    self.by_key.insert(k, i);
                }
            }
        }
        i
    }

    fn find(&self, mut i: usize) -> usize {
        while self.parent[i] != i {
            i = self.parent[i];
        }
        i
    }

    /// Merges two identities: the one with fewer records into the other.
    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        let size = |r: usize| self.members.get(&r).map_or(0, Vec::len);
        let (keep, gone) = if (size(a), b) >= (size(b), a) { (a, b) } else { (b, a) };
        self.parent[gone] = keep;
        let moved = self.members.remove(&gone).unwrap_or_default();
        for &m in &moved {
            if let Some(addr) = &self.keys[m].address {
                let at = self.by_address.entry(addr.clone()).or_default();
                if let Some(n) = at.get_mut(&gone) {
                    *n -= 1;
                    if *n == 0 {
                        at.remove(&gone);
                    }
                }
                *at.entry(keep).or_default() += 1;
            }
        }
        self.members.entry(keep).or_default().extend(moved);
        if let Some(l) = self.labels.remove(&gone) {
            let label = self.labels.entry(keep).or_insert_with(|| l.clone());
            if l < *label {
                *label = l;
            }
        }
    }

    fn keys_of(&self, c: &Customer) -> IdentityKeys {
        let mut memo = self.memo.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        memo.entry(c.clone()).or_insert_with(|| IdentityKeys::of(&self.secret, c)).clone()
    }

    /// Identities other than `me` shipping to one of `addrs`, at most.
    fn sharing<'a>(&self, me: Option<usize>, addrs: impl Iterator<Item = &'a String>) -> u32 {
        addrs
            .filter_map(|a| self.by_address.get(a))
            .map(|ids| ids.keys().filter(|id| Some(**id) != me).count())
            .max()
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The identity `c` belongs to, if the graph knows one of its joining keys.
    fn root_of(&self, c: &Customer) -> (IdentityKeys, Option<usize>) {
        let keys = self.keys_of(c);
        let root = keys.joining().find_map(|(kind, v)| self.by_key.get(&format!("{kind}:{v}")).map(|&i| self.find(i)));
        (keys, root)
    }

    /// The label of the identity `c` belongs to ([`Profile::facts_of`]'s,
    /// without its facts).
    pub fn label_of(&self, c: &Customer) -> String {
        let (keys, root) = self.root_of(c);
        match root {
            Some(root) => self.labels.get(&root).cloned().unwrap_or_else(|| format!("identity {root}")),
            None => keys.joining().next().map_or_else(|| "anonymous".to_string(), |(k, v)| format!("{k}:{v}")),
        }
    }

    /// The identity `c` belongs to (a stable label: its smallest joining
    /// key) and its facts; a customer the graph has never seen has only
    /// the address fact.
    pub fn facts_of(&self, c: &Customer) -> (String, IdentityFacts) {
        let label = self.label_of(c);
        let (keys, root) = self.root_of(c);
        let Some(root) = root else {
            let facts = IdentityFacts {
                identities_sharing_address: self.sharing(None, keys.address.iter()),
                ..IdentityFacts::default()
            };
            return (label, facts);
        };
        (label, self.facts_of_root(root))
    }

    fn facts_of_root(&self, root: usize) -> IdentityFacts {
        let mut f = IdentityFacts::default();
        let members = self.members.get(&root).map(Vec::as_slice).unwrap_or_default();
        // Each order once, at the value of its highest-ranked record.
        let mut orders: BTreeMap<(&str, &str), (Rank, i64)> = BTreeMap::new();
        let mut seen_disputes: BTreeSet<&str> = BTreeSet::new();
        // What the shop shows refunded per order (the last mirrored row).
        let mut shop_refunds: BTreeMap<(&str, &str), (usize, i64)> = BTreeMap::new();
        let mut addresses: BTreeSet<&String> = BTreeSet::new();
        for &i in members {
            if let Some(a) = &self.keys[i].address {
                addresses.insert(a);
            }
            let rec = &self.recs[i];
            let rank = (rec.rank(), i);
            let (store, id, minor) = match rec {
                Rec::Claim(c) => {
                    if let Some(Settlement::Refunded { amount, .. }) = &c.settled {
                        f.refunds += 1;
                        f.refunded_minor = f.refunded_minor.saturating_add(amount.minor);
                    }
                    if c.claim == Claim::DidNotArrive && c.tracking_seen() == Tracking::Delivered {
                        f.inr_against_delivered += 1;
                    }
                    (c.store.as_str(), c.order_id.as_str(), c.order_total.minor)
                }
                Rec::Dispute(d) => {
                    if seen_disputes.insert(d.id.as_str()) {
                        match d.status {
                            DisputeStatus::Open => f.chargebacks_open += 1,
                            DisputeStatus::Lost => f.chargebacks_lost += 1,
                            DisputeStatus::Won => {}
                        }
                    }
                    (d.store.as_str(), d.order_id.as_str(), d.amount.minor)
                }
                Rec::Order(o) => {
                    if o.refunded.minor > 0 {
                        let at = shop_refunds.entry((o.store.as_str(), o.order_id.as_str())).or_insert((i, 0));
                        if i >= at.0 {
                            *at = (i, o.refunded.minor);
                        }
                    }
                    (o.store.as_str(), o.order_id.as_str(), o.total.minor)
                }
            };
            let v = (rank, minor);
            let slot = orders.entry((store, id)).or_insert(v);
            if v.0 > slot.0 {
                *slot = v;
            }
        }
        // A claim's refund and the shop's on one order are the same money:
        // what the shop shows beyond the claims' refunds counts, and a
        // refund only the shop made counts once.
        for ((store, id), (_, minor)) in shop_refunds {
            let claims =
                self.claims_on.get(&(store.to_string(), id.to_string())).map(Vec::as_slice).unwrap_or_default();
            let (mut n, mut claimed) = (0u32, 0i64);
            for &c in claims {
                if let Rec::Claim(ClaimRecord { settled: Some(Settlement::Refunded { amount, .. }), .. }) =
                    &self.recs[c]
                {
                    n += 1;
                    claimed = claimed.saturating_add(amount.minor);
                }
            }
            f.refunded_minor = f.refunded_minor.saturating_add(minor.saturating_sub(claimed).max(0));
            if n == 0 {
                f.refunds += 1;
            }
        }
        f.orders = u32::try_from(orders.len()).unwrap_or(u32::MAX);
        f.ordered_minor = orders.values().fold(0i64, |a, (_, v)| a.saturating_add(*v));
        f.identities_sharing_address = self.sharing(Some(root), addresses.into_iter());
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Currency, Money};

    const KEY: &[u8] = b"brand identity key";

    fn customer(email: &str, address: &str) -> Customer {
        Customer { email: email.into(), phone: String::new(), address: address.into(), card: String::new() }
    }

    fn claim(id: &str, c: Customer, claim: Claim, tracking: Tracking, refunded: Option<i64>) -> ClaimRecord {
        ClaimRecord {
            id: id.into(),
            store: "s1".into(),
            order_id: format!("o-{id}"),
            claim,
            claimed: Money::new(5_000, Currency::EUR),
            order_total: Money::new(5_000, Currency::EUR),
            tracking,
            days_since_shipped: 5,
            customer: c,
            opened_at: Timestamp(10),
            settled: refunded.map(|m| Settlement::Refunded {
                key: format!("k-{id}"),
                amount: Money::new(m, Currency::EUR),
                tier: "trusted".into(),
                tracked: None,
            }),
        }
    }

    #[test]
    fn normalisation_joins_what_one_person_types_differently() {
        assert_eq!(normal_email(" Jane.Doe+shop@GoogleMail.com "), Some("janedoe@gmail.com".into()));
        assert_eq!(normal_email("j.doe@shop.de"), Some("j.doe@shop.de".into()), "dots matter outside Gmail");
        assert_eq!(normal_email("not an email"), None);
        assert_eq!(normal_phone("+49 (0)30-1234567"), Some("490301234567".into()));
        assert_eq!(normal_phone("0049 30 1234567"), Some("49301234567".into()));
        assert_eq!(normal_phone("12"), None);
        assert_eq!(normal_address("Hauptstraße 5,  10115 Berlin"), normal_address("hauptstrasse 5 10115 BERLIN"));
        assert_eq!(normal_address(" , "), None);
        let a = IdentityKeys::of(KEY, &customer("Jane.Doe@gmail.com", "x"));
        let b = IdentityKeys::of(KEY, &customer("janedoe+2@gmail.com", "y"));
        assert_eq!(a.email, b.email);
        assert_eq!(a.email.as_ref().map(String::len), Some(32));
        let other = IdentityKeys::of(b"another brand", &customer("janedoe@gmail.com", "x"));
        assert_ne!(a.email, other.email, "keyed: another key, other hashes");
        assert!(!format!("{a:?}").contains("jane"), "no raw data in the keys");
    }

    #[test]
    fn history_across_stores_adds_up_to_one_identity() {
        let jane = customer("jane@x.de", "Main St 1");
        let mut second = claim(
            "2",
            Customer { phone: "+49 151 000000".into(), ..jane.clone() },
            Claim::Damaged,
            Tracking::Delivered,
            Some(4_000),
        );
        second.store = "s2".into();
        // Same phone, another email: still Jane.
        let third = claim(
            "3",
            Customer { email: "j@other.de".into(), phone: "0049151000000".into(), ..jane.clone() },
            Claim::DidNotArrive,
            Tracking::Delivered,
            None,
        );
        let claims = vec![claim("1", jane.clone(), Claim::WrongItem, Tracking::Delivered, Some(5_000)), second, third];
        let dispute = Dispute {
            id: "d1".into(),
            store: "s1".into(),
            order_id: "o-9".into(),
            status: DisputeStatus::Open,
            reason: "fraudulent".into(),
            amount: Money::new(7_000, Currency::EUR),
            customer: customer("j@other.de", ""),
            initiated_at: Timestamp(20),
        };
        let p = Profile::build(KEY, &claims, std::slice::from_ref(&dispute), &[], Timestamp(20));
        let (_, f) = p.facts_of(&customer("JANE@x.de", ""));
        assert_eq!((f.orders, f.refunds, f.refunded_minor, f.ordered_minor), (4, 2, 9_000, 22_000));
        assert_eq!((f.inr_against_delivered, f.chargebacks_open), (1, 1));
        // Before the dispute: no chargeback (no look-ahead).
        let before = Profile::build(KEY, &claims, &[dispute], &[], Timestamp(19));
        assert_eq!(before.facts_of(&jane).1.chargebacks_open, 0);
        // A stranger knows nothing.
        assert_eq!(p.facts_of(&customer("bob@y.de", "Elm 2")).1, IdentityFacts::default());
    }

    #[test]
    fn a_shared_address_is_a_fact_not_a_join() {
        let ring: Vec<ClaimRecord> = (0..4)
            .map(|i| {
                let mut c = claim(
                    &i.to_string(),
                    customer(&format!("r{i}@mail.com"), "Drop Box 7, Riga"),
                    Claim::DidNotArrive,
                    Tracking::Lost,
                    Some(3_000),
                );
                c.store = format!("s{}", i % 3);
                c
            })
            .collect();
        let p = Profile::build(KEY, &ring, &[], &[], Timestamp(100));
        let (_, f) = p.facts_of(&customer("r0@mail.com", ""));
        assert_eq!((f.orders, f.refunds, f.identities_sharing_address), (1, 1, 3));
        // A newcomer to that address sees all four.
        let (_, new) = p.facts_of(&customer("new@mail.com", "drop box 7 riga"));
        assert_eq!((new.orders, new.identities_sharing_address), (0, 4));
    }

    fn mirrored(id: &str, c: &Customer, store: &str, total: i64, refunded: i64, at: u64) -> OrderRecord {
        OrderRecord::of(
            KEY,
            store,
            &MirroredOrder {
                id: id.into(),
                created_at: Timestamp(at),
                updated_at: Timestamp(at),
                total: Money::new(total, Currency::EUR),
                refunded: Money::new(refunded, Currency::EUR),
                customer: c.clone(),
                tracking_numbers: Vec::new(),
                risk: RiskLevel::Low,
            },
        )
    }

    #[test]
    fn mirrored_orders_join_and_count_without_counting_a_refund_twice() {
        let jane = customer("Jane@x.de", "Main 1");
        // A claim refunded 30.00 on o-1; the shop shows the same 30.00 on
        // o-1 (one refund, not two) and 20.00 a person refunded on o-9.
        let claims = vec![claim("1", jane.clone(), Claim::Damaged, Tracking::Delivered, Some(3_000))];
        let orders = vec![
            mirrored("o-1", &jane, "s1", 5_000, 3_000, 5),
            mirrored("o-9", &customer("jane@X.de", "Main 1"), "s2", 8_000, 2_000, 6),
            mirrored("o-7", &customer("jane@x.de", ""), "s1", 4_000, 0, 50),
        ];
        let p = Profile::build(KEY, &claims, &[], &orders, Timestamp(20));
        let (_, f) = p.facts_of(&jane);
        assert_eq!((f.orders, f.ordered_minor), (2, 13_000), "o-7 was placed after the instant: not yet known");
        assert_eq!((f.refunds, f.refunded_minor), (2, 5_000), "the claim's 30.00 once, the shop's 20.00 on o-9");
        // An order the desk never saw still shows a ring's shared address.
        let ring: Vec<OrderRecord> = (0..4)
            .map(|i| mirrored(&format!("r-{i}"), &customer(&format!("r{i}@m.com"), "Drop Box 7"), "s3", 1_000, 0, 1))
            .collect();
        let p = Profile::build(KEY, &[], &[], &ring, Timestamp(20));
        assert_eq!(p.facts_of(&customer("r0@m.com", "")).1.identities_sharing_address, 3);
        // The rows keep hashes, never the raw data.
        assert!(!serde_json::to_string(&ring).unwrap().contains("m.com"));
    }

    /// Every fact and label of every customer of `people` in `p`.
    fn all_facts(p: &Profile, people: &[Customer]) -> Vec<(String, IdentityFacts)> {
        people.iter().map(|c| p.facts_of(c)).collect()
    }

    #[test]
    fn a_graph_grown_in_any_order_has_the_facts_of_one_built_whole() {
        // Two identities a late record bridges (email of one, phone of the
        // other), a locker three of them share, disputes (one twice), shop
        // refunds on a claimed order and on an unclaimed one.
        let with_phone =
            |email: &str, phone: &str, address: &str| Customer { phone: phone.into(), ..customer(email, address) };
        let people = vec![
            with_phone("a@x.de", "+49 30 111111", "Locker 9"),
            with_phone("b@x.de", "+49 30 222222", "Main 1"),
            with_phone("a@x.de", "+49 30 222222", "Main 1"),
            customer("c@x.de", "Locker 9"),
            customer("d@x.de", "locker 9"),
            customer("e@x.de", "Side 3"),
        ];
        let mut claims: Vec<ClaimRecord> = people
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut r =
                    claim(&i.to_string(), c.clone(), Claim::DidNotArrive, Tracking::Delivered, Some(1_000 + i as i64));
                r.opened_at = Timestamp(10 + i as u64);
                r
            })
            .collect();
        claims[5].settled = None;
        let dispute = |id: &str, c: &Customer, order: &str, status| Dispute {
            id: id.into(),
            store: "s1".into(),
            order_id: order.into(),
            status,
            reason: "fraudulent".into(),
            amount: Money::new(700, Currency::EUR),
            customer: c.clone(),
            initiated_at: Timestamp(12),
        };
        let disputes = vec![
            dispute("d1", &people[1], "o-1", DisputeStatus::Open),
            dispute("d1", &people[1], "o-1", DisputeStatus::Open),
            dispute("d2", &people[4], "o-x", DisputeStatus::Lost),
        ];
        let orders = vec![
            mirrored("o-0", &people[0], "s1", 5_000, 2_500, 3),
            mirrored("o-u", &people[3], "s2", 9_000, 4_000, 4),
            mirrored("o-1", &people[1], "s1", 6_000, 0, 5),
        ];
        let whole = Profile::build(KEY, &claims, &disputes, &orders, Timestamp(100));
        let want = all_facts(&whole, &people);
        assert_eq!(want[0].0, want[1].0, "the bridge makes a and b one identity");
        assert_eq!(want[0].1.chargebacks_open, 1, "a dispute seen twice counts once");
        assert_eq!(want[3].1.identities_sharing_address, 2, "c shares the locker with a+b and d");

        // Grown backwards, interleaved, settled after being added.
        let mut grown = Profile::new(KEY);
        for o in orders.iter().rev() {
            grown.add_order(o.clone());
        }
        let mut handles = Vec::new();
        for (i, c) in claims.iter().enumerate().rev() {
            handles.push((i, grown.add_claim(ClaimRecord { settled: None, ..c.clone() })));
            if i == 3 {
                for d in disputes.iter().rev() {
                    grown.add_dispute(d.clone());
                }
            }
        }
        assert_ne!(all_facts(&grown, &people), want, "unsettled, the refunds are not there yet");
        for (i, h) in handles {
            grown.settle(h, claims[i].settled.clone());
        }
        assert_eq!(all_facts(&grown, &people), want);
        for c in &people {
            assert_eq!(grown.label_of(c), whole.facts_of(c).0);
        }
        // A newcomer at the locker: the same either way.
        let newcomer = customer("z@x.de", "LOCKER 9");
        assert_eq!(grown.facts_of(&newcomer), whole.facts_of(&newcomer));
        assert_eq!(whole.facts_of(&newcomer).1.identities_sharing_address, 3);
    }
}
