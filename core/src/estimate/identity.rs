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

/// Union-find over record indices.
struct Sets(Vec<usize>);

impl Sets {
    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }
    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        // The smaller index is the root: the same records give the same roots.
        if a != b {
            let (lo, hi) = (a.min(b), a.max(b));
            self.0[hi] = lo;
        }
    }
}

/// The identity graph of one brand at one instant.
pub struct Profile {
    secret: Vec<u8>,
    /// Joining key (`kind:hash`) → identity (a root record).
    by_key: BTreeMap<String, usize>,
    /// Address key → identities shipping to it.
    by_address: BTreeMap<String, BTreeSet<usize>>,
    facts: BTreeMap<usize, IdentityFacts>,
    /// Identity → its address keys.
    addresses: BTreeMap<usize, BTreeSet<String>>,
    /// Identity → its label (its smallest joining key).
    labels: BTreeMap<usize, String>,
    /// Keys already hashed, per customer as given: a customer's records
    /// repeat, and an HMAC per field per record per review is most of a
    /// review's work.
    memo: std::sync::Mutex<BTreeMap<Customer, IdentityKeys>>,
}

enum Rec<'a> {
    Claim(&'a ClaimRecord),
    Dispute(&'a Dispute),
    Order(&'a OrderRecord),
}

/// Customers' keys already hashed under one secret (four HMACs each): a
/// replay builds one graph per instant from mostly the same customers, and
/// needs each customer hashed once.
#[derive(Default)]
pub struct KeyCache {
    secret: Vec<u8>,
    keys: BTreeMap<Customer, IdentityKeys>,
}

impl KeyCache {
    fn of(&mut self, secret: &[u8], c: &Customer) -> IdentityKeys {
        if self.secret != secret {
            self.secret = secret.to_vec();
            self.keys.clear();
        }
        self.keys.entry(c.clone()).or_insert_with(|| IdentityKeys::of(secret, c)).clone()
    }
}

impl Profile {
    /// The graph of what was known at `as_of`.
    pub fn build(secret: &[u8], claims: &[ClaimRecord], disputes: &[Dispute], as_of: Timestamp) -> Profile {
        Profile::build_cached(secret, claims, disputes, &[], as_of, &mut KeyCache::default())
    }

    /// [`Profile::build`] with the shop mirror's `orders` too, and the
    /// customers' keys from (and into) `cache`.
    pub fn build_cached(
        secret: &[u8],
        claims: &[ClaimRecord],
        disputes: &[Dispute],
        orders: &[OrderRecord],
        as_of: Timestamp,
        cache: &mut KeyCache,
    ) -> Profile {
        let recs: Vec<Rec<'_>> = claims
            .iter()
            .filter(|c| c.opened_at <= as_of)
            .map(Rec::Claim)
            .chain(disputes.iter().filter(|d| d.initiated_at <= as_of).map(Rec::Dispute))
            .chain(orders.iter().filter(|o| o.created_at <= as_of).map(Rec::Order))
            .collect();
        let mut memo: BTreeMap<Customer, IdentityKeys> = BTreeMap::new();
        let keys: Vec<IdentityKeys> = recs
            .iter()
            .map(|r| {
                let c = match r {
                    Rec::Claim(c) => &c.customer,
                    Rec::Dispute(d) => &d.customer,
                    Rec::Order(o) => return o.keys.clone(),
                };
                memo.entry(c.clone()).or_insert_with(|| cache.of(secret, c)).clone()
            })
            .collect();
        let mut sets = Sets((0..recs.len()).collect());
        let mut first: BTreeMap<String, usize> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            for (kind, v) in k.joining() {
                match first.get(&format!("{kind}:{v}")) {
                    Some(&j) => sets.join(i, j),
                    None => {
                        first.insert(format!("{kind}:{v}"), i);
                    }
                }
            }
        }
        let mut p = Profile {
            secret: secret.to_vec(),
            by_key: BTreeMap::new(),
            by_address: BTreeMap::new(),
            facts: BTreeMap::new(),
            addresses: BTreeMap::new(),
            labels: BTreeMap::new(),
            memo: std::sync::Mutex::new(BTreeMap::new()),
        };
        let mut orders: BTreeMap<usize, BTreeMap<(String, String), i64>> = BTreeMap::new();
        let mut seen_disputes: BTreeSet<&str> = BTreeSet::new();
        // Per order: the claims' refunds (count, minor), and what the shop
        // shows refunded (identity, minor).
        let mut claim_refunds: BTreeMap<(&str, &str), (u32, i64)> = BTreeMap::new();
        let mut shop_refunds: BTreeMap<(&str, &str), (usize, i64)> = BTreeMap::new();
        for (i, (rec, k)) in recs.iter().zip(&keys).enumerate() {
            let root = sets.find(i);
            for (kind, v) in k.joining() {
                p.by_key.insert(format!("{kind}:{v}"), root);
            }
            if let Some(a) = &k.address {
                p.by_address.entry(a.clone()).or_default().insert(root);
                p.addresses.entry(root).or_default().insert(a.clone());
            }
            let f = p.facts.entry(root).or_default();
            match rec {
                Rec::Claim(c) => {
                    orders.entry(root).or_default().insert((c.store.clone(), c.order_id.clone()), c.order_total.minor);
                    if let Some(Settlement::Refunded { amount, .. }) = &c.settled {
                        f.refunds += 1;
                        f.refunded_minor = f.refunded_minor.saturating_add(amount.minor);
                        let r = claim_refunds.entry((c.store.as_str(), c.order_id.as_str())).or_default();
                        *r = (r.0 + 1, r.1.saturating_add(amount.minor));
                    }
                    if c.claim == Claim::DidNotArrive && c.tracking_seen() == Tracking::Delivered {
                        f.inr_against_delivered += 1;
                    }
                }
                Rec::Dispute(d) => {
                    orders.entry(root).or_default().insert((d.store.clone(), d.order_id.clone()), d.amount.minor);
                    if seen_disputes.insert(d.id.as_str()) {
                        match d.status {
                            DisputeStatus::Open => f.chargebacks_open += 1,
                            DisputeStatus::Lost => f.chargebacks_lost += 1,
                            DisputeStatus::Won => {}
                        }
                    }
                }
                Rec::Order(o) => {
                    orders.entry(root).or_default().insert((o.store.clone(), o.order_id.clone()), o.total.minor);
                    if o.refunded.minor > 0 {
                        shop_refunds.insert((o.store.as_str(), o.order_id.as_str()), (root, o.refunded.minor));
                    }
                }
            }
        }
        for (order, (root, minor)) in shop_refunds {
            let (n, claimed) = claim_refunds.get(&order).copied().unwrap_or_default();
            let f = p.facts.entry(root).or_default();
            f.refunded_minor = f.refunded_minor.saturating_add(minor.saturating_sub(claimed).max(0));
            if n == 0 {
                f.refunds += 1;
            }
        }
        for (root, o) in orders {
            let f = p.facts.entry(root).or_default();
            f.orders = u32::try_from(o.len()).unwrap_or(u32::MAX);
            f.ordered_minor = o.values().fold(0i64, |a, v| a.saturating_add(*v));
        }
        let sharing: Vec<(usize, u32)> =
            p.addresses.iter().map(|(root, addrs)| (*root, p.sharing(Some(*root), addrs.iter()))).collect();
        for (root, n) in sharing {
            p.facts.entry(root).or_default().identities_sharing_address = n;
        }
        for (k, root) in &p.by_key {
            p.labels.entry(*root).or_insert_with(|| k.clone());
        }
        p.memo = std::sync::Mutex::new(memo);
        p
    }

    fn keys_of(&self, c: &Customer) -> IdentityKeys {
        let mut memo = self.memo.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        memo.entry(c.clone()).or_insert_with(|| IdentityKeys::of(&self.secret, c)).clone()
    }

    /// Identities other than `me` shipping to one of `addrs`, at most.
    fn sharing<'a>(&self, me: Option<usize>, addrs: impl Iterator<Item = &'a String>) -> u32 {
        addrs
            .filter_map(|a| self.by_address.get(a))
            .map(|ids| ids.iter().filter(|id| Some(**id) != me).count())
            .max()
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The identity `c` belongs to (a stable label: its root's first
    /// joining key) and its facts; a customer the graph has never seen has
    /// only the address fact.
    pub fn facts_of(&self, c: &Customer) -> (String, IdentityFacts) {
        let keys = self.keys_of(c);
        let root = keys.joining().find_map(|(kind, v)| self.by_key.get(&format!("{kind}:{v}")).copied());
        match root {
            Some(root) => {
                let label = self.labels.get(&root).cloned().unwrap_or_else(|| format!("identity {root}"));
                (label, self.facts.get(&root).cloned().unwrap_or_default())
            }
            None => {
                let label = keys.joining().next().map_or_else(|| "anonymous".to_string(), |(k, v)| format!("{k}:{v}"));
                let facts = IdentityFacts {
                    identities_sharing_address: self.sharing(None, keys.address.iter()),
                    ..IdentityFacts::default()
                };
                (label, facts)
            }
        }
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
        let p = Profile::build(KEY, &claims, std::slice::from_ref(&dispute), Timestamp(20));
        let (_, f) = p.facts_of(&customer("JANE@x.de", ""));
        assert_eq!((f.orders, f.refunds, f.refunded_minor, f.ordered_minor), (4, 2, 9_000, 22_000));
        assert_eq!((f.inr_against_delivered, f.chargebacks_open), (1, 1));
        // Before the dispute: no chargeback (no look-ahead).
        let before = Profile::build(KEY, &claims, &[dispute], Timestamp(19));
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
        let p = Profile::build(KEY, &ring, &[], Timestamp(100));
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
        let p = Profile::build_cached(KEY, &claims, &[], &orders, Timestamp(20), &mut KeyCache::default());
        let (_, f) = p.facts_of(&jane);
        assert_eq!((f.orders, f.ordered_minor), (2, 13_000), "o-7 was placed after the instant: not yet known");
        assert_eq!((f.refunds, f.refunded_minor), (2, 5_000), "the claim's 30.00 once, the shop's 20.00 on o-9");
        // An order the desk never saw still shows a ring's shared address.
        let ring: Vec<OrderRecord> = (0..4)
            .map(|i| mirrored(&format!("r-{i}"), &customer(&format!("r{i}@m.com"), "Drop Box 7"), "s3", 1_000, 0, 1))
            .collect();
        let p = Profile::build_cached(KEY, &[], &[], &ring, Timestamp(20), &mut KeyCache::default());
        assert_eq!(p.facts_of(&customer("r0@m.com", "")).1.identities_sharing_address, 3);
        // The rows keep hashes, never the raw data.
        assert!(!serde_json::to_string(&ring).unwrap().contains("m.com"));
    }
}
