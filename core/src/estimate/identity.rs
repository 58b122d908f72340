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

/// `Jane.Doe+shop@GoogleMail.com` → `janedoe@gmail.com`; `None` without an
/// `@` and for a placeholder that names nobody ([`PLACEHOLDER_LOCALS`]:
/// `noreply@…`, `none@…`).
pub fn normal_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    let (local, domain) = e.rsplit_once('@')?;
    let local = local.split('+').next().unwrap_or_default();
    let domain = if domain == "googlemail.com" { "gmail.com" } else { domain };
    let local = if domain == "gmail.com" { local.replace('.', "") } else { local.to_string() };
    let placeholder = PLACEHOLDER_LOCALS.contains(&local.as_str());
    (!local.is_empty() && !placeholder && domain.contains('.')).then(|| format!("{local}@{domain}"))
}

/// The local parts of email addresses that stand for no one (a staff
/// member's entry for a customer who gave none, a system's sender): many
/// unrelated customers carry them.
pub const PLACEHOLDER_LOCALS: &[&str] = &[
    "noreply",
    "no-reply",
    "donotreply",
    "do-not-reply",
    "noemail",
    "no-email",
    "none",
    "null",
    "nobody",
    "unknown",
    "invalid",
];

/// Digits only, without a `00` international prefix; `None` under 6 digits
/// and for a placeholder that names nobody (its last seven digits one digit
/// repeated, `+49 30 0000000`, or a straight run, `123456789`): typed into
/// a required field by many people, it would join them all into one
/// identity.
pub fn normal_phone(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.strip_prefix("00").map(str::to_string).unwrap_or(digits);
    let tail = &digits.as_bytes()[digits.len().saturating_sub(7)..];
    let repeated = tail.iter().all(|d| Some(d) == tail.first());
    let run = "01234567890123456789".contains(&digits) || "98765432109876543210".contains(&digits);
    (digits.len() >= 6 && !repeated && !run).then_some(digits)
}

/// Lower case, letters and digits, single spaces; `None` when empty.
pub fn normal_address(raw: &str) -> Option<String> {
    let mapped: String =
        raw.to_lowercase().replace('ß', "ss").chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect();
    let words: Vec<&str> = mapped.split_whitespace().collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// A card as the desk and the mirror write it, `BIN-last4-MM/YY` (a BIN of
/// 6 to 8 digits, not all zeros), without spaces; `None` for anything else
/// (`visa`, `****`, a mistyped expiry): a free-text card would join every
/// customer who typed the same words.
pub fn normal_card(raw: &str) -> Option<String> {
    let c: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    let digits =
        |s: &str, n: std::ops::RangeInclusive<usize>| n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let mut parts = c.split('-');
    let (bin, last4, expiry) = (parts.next()?, parts.next()?, parts.next()?);
    let (month, year) = expiry.split_once('/')?;
    let month_ok = digits(month, 2..=2) && (1..=12).contains(&month.parse::<u8>().ok()?);
    let shape = digits(bin, 6..=8) && digits(last4, 4..=4) && month_ok && digits(year, 2..=2);
    (parts.next().is_none() && shape && bin.bytes().any(|b| b != b'0')).then_some(c)
}

/// Values a brand knows many of its customers carry and that name none of
/// them: the store's own phone on orders its staff took by phone, its
/// warehouse as a reshipment's address, a marketplace's relay address.
/// The graph drops them (written any way: each is normalised as its kind)
/// wherever they appear, so they neither join identities nor count as a
/// shared address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedValues {
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub phones: Vec<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub cards: Vec<String>,
}

impl SharedValues {
    /// The values no kind's normalisation accepts (a typo in the config:
    /// dropping nothing, it would leave the collision in place).
    pub fn unusable(&self) -> Vec<String> {
        self.by_kind()
            .into_iter()
            .flat_map(|(kind, values, normal)| {
                values.iter().filter(move |v| normal(v).is_none()).map(move |v| format!("{kind} {v:?}"))
            })
            .collect()
    }

    /// Each kind's values with its normalisation.
    fn by_kind(&self) -> [(&'static str, &[String], Normal); 4] {
        [
            ("email", &self.emails, normal_email),
            ("phone", &self.phones, normal_phone),
            ("address", &self.addresses, normal_address),
            ("card", &self.cards, normal_card),
        ]
    }
}

/// A kind's normalisation (`normal_email` …).
type Normal = fn(&str) -> Option<String>;

/// A key as the graph holds it: a keyed hash's 128 bits (no allocation,
/// one comparison), or, for a row another version wrote, its text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Hash(u128),
    Text(String),
}

impl Key {
    fn of(hex: &str) -> Key {
        // Lower-case hex of 32 digits only: it prints back the same.
        let hash = hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match u128::from_str_radix(hex, 16) {
            Ok(v) if hash => Key::Hash(v),
            _ => Key::Text(hex.to_string()),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Hash(v) => write!(f, "{v:032x}"),
            Key::Text(t) => f.write_str(t),
        }
    }
}

/// A joining key: its kind (`card`, `email`, `phone`: ordered as their
/// names, so a label is the smallest `kind:hash` text) and its hash.
type Joining = (&'static str, Key);

/// A record's keys as the graph holds them.
#[derive(Clone, Debug, Default)]
struct Keys {
    joining: Vec<Joining>,
    address: Option<Key>,
}

impl Keys {
    fn of(k: &IdentityKeys) -> Keys {
        Keys {
            joining: k.joining().map(|(kind, v)| (kind, Key::of(v))).collect(),
            address: k.address.as_deref().map(Key::of),
        }
    }
}

/// What one record adds to its identity's facts (an order named by its
/// place in [`Profile::orders`]).
enum Rec {
    Claim { order: usize, total: i64, refunded: Option<i64>, inr_against_delivered: bool },
    Dispute { order: usize, id: String, status: DisputeStatus, amount: i64 },
    Order { order: usize, total: i64, refunded: i64 },
}

impl Rec {
    fn order(&self) -> usize {
        match self {
            Rec::Claim { order, .. } | Rec::Dispute { order, .. } | Rec::Order { order, .. } => *order,
        }
    }
    /// Which record's value an order takes when several name it: a mirrored
    /// order's total, else a dispute's amount, else a claim's order total
    /// (the later of one kind).
    fn rank(&self) -> u8 {
        match self {
            Rec::Claim { .. } => 0,
            Rec::Dispute { .. } => 1,
            Rec::Order { .. } => 2,
        }
    }
}

fn claim_rec(order: usize, c: &ClaimRecord) -> Rec {
    let refunded = match &c.settled {
        Some(Settlement::Refunded { amount, .. }) => Some(amount.minor),
        _ => None,
    };
    Rec::Claim {
        order,
        total: c.order_total.minor,
        refunded,
        inr_against_delivered: c.claim == Claim::DidNotArrive && c.tracking_seen() == Tracking::Delivered,
    }
}

/// The identity graph of one brand, grown record by record.
///
/// Built whole for a review ([`Profile::build`]) or grown as a replay's
/// clock moves ([`Profile::add_claim`], [`Profile::add_dispute`],
/// [`Profile::settle`]): the same records give the same facts either way,
/// whatever order they came in. Joins are a union-find over the records
/// (the smaller identity merged into the larger, its addresses with it;
/// each identity's records a ring list spliced in one step), so growing a
/// graph of `n` records costs `O(n log n)` and an identity's facts are read
/// from its own records ([`Profile::facts_of`]), not from the whole graph.
/// A record keeps only what the facts read (its order by number, money as
/// minor units, its keys as 128-bit hashes).
pub struct Profile {
    secret: Vec<u8>,
    /// The hashes of the brand's [`SharedValues`], by kind: dropped from
    /// every record's keys.
    shared: BTreeSet<(&'static str, Key)>,
    /// Stores whose orders the mirror has not read through once: a fact of
    /// every identity ([`IdentityFacts::stores_unread`]).
    unread: u32,
    recs: Vec<Rec>,
    /// Each record's address key.
    address: Vec<Option<Key>>,
    parent: Vec<usize>,
    /// Records of an identity: a ring through `next` (from the root back
    /// to it), and the identity's size at its root.
    next: Vec<usize>,
    size: Vec<usize>,
    /// Joining key → a record of its identity.
    by_key: BTreeMap<Joining, usize>,
    /// Identity (a root) → its label (its smallest joining key).
    labels: BTreeMap<usize, Joining>,
    /// Address key → identities shipping to it.
    by_address: BTreeMap<Key, BTreeSet<usize>>,
    /// Store → order id → the order's number.
    orders: BTreeMap<String, BTreeMap<String, usize>>,
    /// Per order number, the claims on it (for what the shop refunded
    /// outside them).
    claims_on: Vec<Vec<usize>>,
    /// Customers' keys already hashed (four HMACs each): a customer's
    /// records repeat, and hashing is most of a review's work.
    memo: std::sync::Mutex<BTreeMap<Customer, Keys>>,
}

impl Profile {
    /// An empty graph under `secret`.
    pub fn new(secret: &[u8]) -> Profile {
        Profile {
            secret: secret.to_vec(),
            shared: BTreeSet::new(),
            unread: 0,
            recs: Vec::new(),
            address: Vec::new(),
            parent: Vec::new(),
            next: Vec::new(),
            size: Vec::new(),
            by_key: BTreeMap::new(),
            labels: BTreeMap::new(),
            by_address: BTreeMap::new(),
            orders: BTreeMap::new(),
            claims_on: Vec::new(),
            memo: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The same graph, dropping `shared` from every record it is given
    /// (before any: records already added keep their keys).
    pub fn without(mut self, shared: &SharedValues) -> Profile {
        for (kind, values, normal) in shared.by_kind() {
            for v in values.iter().filter_map(|v| normal(v)) {
                self.shared.insert((kind, Key::of(&keyed_hash(&self.secret, kind, &v))));
            }
        }
        self.memo.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        self
    }

    /// The same graph, knowing that `stores` of the brand's stores have
    /// not had their orders read through once (the shop mirror's first
    /// pass): every identity's facts say so.
    pub fn unread(mut self, stores: u32) -> Profile {
        self.unread = stores;
        self
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
        Profile::new(secret).with(claims, disputes, orders, as_of)
    }

    /// This graph with what was known at `as_of` added ([`Profile::build`]).
    pub fn with(
        mut self,
        claims: &[ClaimRecord],
        disputes: &[Dispute],
        orders: &[OrderRecord],
        as_of: Timestamp,
    ) -> Profile {
        let p = &mut self;
        for c in claims.iter().filter(|c| c.opened_at <= as_of) {
            p.add_claim(c);
        }
        for d in disputes.iter().filter(|d| d.initiated_at <= as_of) {
            p.add_dispute(d);
        }
        for o in orders.iter().filter(|o| o.created_at <= as_of) {
            p.add_order(o);
        }
        self
    }

    /// The number of `store`'s order `id` (a new one if it is new).
    fn order_number(&mut self, store: &str, id: &str) -> usize {
        if let Some(&n) = self.orders.get(store).and_then(|o| o.get(id)) {
            return n;
        }
        let n = self.claims_on.len();
        self.claims_on.push(Vec::new());
        self.orders.entry(store.to_string()).or_default().insert(id.to_string(), n);
        n
    }

    /// Adds a claim (as settled so far); its handle for [`Profile::settle`].
    pub fn add_claim(&mut self, c: &ClaimRecord) -> usize {
        let keys = self.keys_of(&c.customer);
        let order = self.order_number(&c.store, &c.order_id);
        let i = self.add(claim_rec(order, c), keys);
        self.claims_on[order].push(i);
        i
    }

    /// Adds a dispute.
    pub fn add_dispute(&mut self, d: &Dispute) {
        let keys = self.keys_of(&d.customer);
        let order = self.order_number(&d.store, &d.order_id);
        let rec = Rec::Dispute { order, id: d.id.clone(), status: d.status, amount: d.amount.minor };
        self.add(rec, keys);
    }

    /// Adds a mirrored order (its keys hashed on arrival).
    pub fn add_order(&mut self, o: &OrderRecord) {
        let order = self.order_number(&o.store, &o.order_id);
        let keys = self.strip(Keys::of(&o.keys));
        self.add(Rec::Order { order, total: o.total.minor, refunded: o.refunded.minor }, keys);
    }

    /// Records how the claim `handle` (from [`Profile::add_claim`]) was
    /// settled: `claim` as it stands now.
    pub fn settle(&mut self, handle: usize, claim: &ClaimRecord) {
        if let Some(rec @ Rec::Claim { .. }) = self.recs.get_mut(handle) {
            *rec = claim_rec(rec.order(), claim);
        }
    }

    fn add(&mut self, rec: Rec, keys: Keys) -> usize {
        let i = self.recs.len();
        self.parent.push(i);
        self.next.push(i);
        self.size.push(1);
        if let Some(a) = &keys.address {
            self.by_address.entry(a.clone()).or_default().insert(i);
        }
        if let Some(min) = keys.joining.iter().min() {
            self.labels.insert(i, min.clone());
        }
        self.recs.push(rec);
        self.address.push(keys.address);
        for k in keys.joining {
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

    /// The records of the identity whose root is `root`.
    fn members(&self, root: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(Some(root), move |&i| Some(self.next[i]).filter(|&n| n != root))
    }

    /// Merges two identities: the one with fewer records into the other.
    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        let (keep, gone) = if (self.size[a], b) >= (self.size[b], a) { (a, b) } else { (b, a) };
        let addresses: BTreeSet<Key> = self.members(gone).filter_map(|m| self.address[m].clone()).collect();
        for a in addresses {
            if let Some(ids) = self.by_address.get_mut(&a) {
                ids.remove(&gone);
                ids.insert(keep);
            }
        }
        self.parent[gone] = keep;
        self.size[keep] += self.size[gone];
        self.next.swap(keep, gone);
        if let Some(l) = self.labels.remove(&gone) {
            let label = match self.labels.remove(&keep) {
                Some(k) => k.min(l),
                None => l,
            };
            self.labels.insert(keep, label);
        }
    }

    fn keys_of(&self, c: &Customer) -> Keys {
        let mut memo = self.memo.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(k) = memo.get(c) {
            return k.clone();
        }
        let k = self.strip(Keys::of(&IdentityKeys::of(&self.secret, c)));
        memo.insert(c.clone(), k.clone());
        k
    }

    /// `keys` without the brand's shared values.
    fn strip(&self, mut keys: Keys) -> Keys {
        if !self.shared.is_empty() {
            keys.joining.retain(|k| !self.shared.contains(k));
            keys.address = keys.address.filter(|a| !self.shared.contains(&("address", a.clone())));
        }
        keys
    }

    /// Identities other than `me` shipping to one of `addrs`, at most.
    fn sharing<'a>(&self, me: Option<usize>, addrs: impl Iterator<Item = &'a Key>) -> u32 {
        addrs
            .filter_map(|a| self.by_address.get(a))
            .map(|ids| ids.iter().filter(|id| Some(**id) != me).count())
            .max()
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The identity `c` belongs to, if the graph knows one of its joining keys.
    fn root_of(&self, keys: &Keys) -> Option<usize> {
        keys.joining.iter().find_map(|k| self.by_key.get(k).map(|&i| self.find(i)))
    }

    fn label(&self, keys: &Keys, root: Option<usize>) -> String {
        match root {
            Some(root) => {
                self.labels.get(&root).map_or_else(|| format!("identity {root}"), |(k, v)| format!("{k}:{v}"))
            }
            None => keys.joining.first().map_or_else(|| "anonymous".to_string(), |(k, v)| format!("{k}:{v}")),
        }
    }

    /// The label of the identity `c` belongs to ([`Profile::facts_of`]'s,
    /// without its facts).
    pub fn label_of(&self, c: &Customer) -> String {
        let keys = self.keys_of(c);
        self.label(&keys, self.root_of(&keys))
    }

    /// The identity `c` belongs to (a stable label: its smallest joining
    /// key) and its facts; a customer the graph has never seen has only
    /// the address fact.
    pub fn facts_of(&self, c: &Customer) -> (String, IdentityFacts) {
        let keys = self.keys_of(c);
        let root = self.root_of(&keys);
        let label = self.label(&keys, root);
        let facts = match root {
            Some(root) => self.facts_of_root(root),
            None => {
                let shared = self.sharing(None, keys.address.iter());
                IdentityFacts { identities_sharing_address: shared, ..IdentityFacts::default() }
            }
        };
        (label, IdentityFacts { stores_unread: self.unread, unidentified: keys.joining.is_empty(), ..facts })
    }

    fn facts_of_root(&self, root: usize) -> IdentityFacts {
        let mut f = IdentityFacts::default();
        // Each order once, at the value of its highest-ranked record.
        let mut orders: BTreeMap<usize, (Rank, i64)> = BTreeMap::new();
        let mut seen_disputes: BTreeSet<&str> = BTreeSet::new();
        // What the shop shows refunded per order (the last mirrored row).
        let mut shop_refunds: BTreeMap<usize, (usize, i64)> = BTreeMap::new();
        let mut addresses: BTreeSet<&Key> = BTreeSet::new();
        for i in self.members(root) {
            if let Some(a) = &self.address[i] {
                addresses.insert(a);
            }
            let rec = &self.recs[i];
            let minor = match rec {
                Rec::Claim { total, refunded, inr_against_delivered, .. } => {
                    if let Some(amount) = refunded {
                        f.refunds += 1;
                        f.refunded_minor = f.refunded_minor.saturating_add(*amount);
                    }
                    if *inr_against_delivered {
                        f.inr_against_delivered += 1;
                    }
                    *total
                }
                Rec::Dispute { id, status, amount, .. } => {
                    if seen_disputes.insert(id.as_str()) {
                        match status {
                            DisputeStatus::Open => f.chargebacks_open += 1,
                            DisputeStatus::Lost => f.chargebacks_lost += 1,
                            DisputeStatus::Won => {}
                        }
                    }
                    *amount
                }
                Rec::Order { order, total, refunded } => {
                    if *refunded > 0 {
                        let at = shop_refunds.entry(*order).or_insert((i, 0));
                        if i >= at.0 {
                            *at = (i, *refunded);
                        }
                    }
                    *total
                }
            };
            let v = ((rec.rank(), i), minor);
            let slot = orders.entry(rec.order()).or_insert(v);
            if v.0 > slot.0 {
                *slot = v;
            }
        }
        // A claim's refund and the shop's on one order are the same money:
        // what the shop shows beyond the claims' refunds counts, and a
        // refund only the shop made counts once.
        for (order, (_, minor)) in shop_refunds {
            let (mut n, mut claimed) = (0u32, 0i64);
            for &c in &self.claims_on[order] {
                if let Rec::Claim { refunded: Some(amount), .. } = &self.recs[c] {
                    n += 1;
                    claimed = claimed.saturating_add(*amount);
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

/// A record's precedence for an order's value: its kind's, then its place.
type Rank = (u8, usize);

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
        assert_eq!(normal_card(" 424242-4242-07/29"), Some("424242-4242-07/29".into()));
        assert_eq!(normal_card("42424242-4242-12/30"), Some("42424242-4242-12/30".into()), "8-digit BINs");
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
    fn placeholders_and_malformed_values_are_no_keys() {
        for phone in ["0000000", "+49 30 0000000", "0049 999 9999999", "123456789", "+0123456789", "987654"] {
            assert_eq!(normal_phone(phone), None, "{phone}");
        }
        assert!(normal_phone("+49 30 1000000").is_some(), "a real number with zeros");
        for email in ["noreply@shop.de", "No-Reply+x@shop.de", "none@gmail.com", "n.o.n.e@gmail.com", "@shop.de"] {
            assert_eq!(normal_email(email), None, "{email}");
        }
        assert!(normal_email("nonesuch@shop.de").is_some());
        for card in [
            "visa",
            "****",
            "424242-4242",
            "424242-424-12/29",
            "424242-4242-13/29",
            "424242-4242-1/29",
            "000000-4242-12/29",
            "4242-4242-12/29",
            "424242-4242-12/29-1",
            "42424x-4242-12/29",
        ] {
            assert_eq!(normal_card(card), None, "{card}");
        }
    }

    #[test]
    fn shared_values_neither_join_nor_make_a_ring() {
        // The shop's own phone on orders its staff took, and its warehouse
        // as the address of reshipments: five customers carry both, one of
        // them with a lost chargeback.
        let shop = |i: u32| Customer {
            email: format!("c{i}@mail.de"),
            phone: "+49 (30) 555-0100".into(),
            address: "Lagerweg 1, 12345 Lager".into(),
            card: String::new(),
        };
        let claims: Vec<ClaimRecord> =
            (0..5).map(|i| claim(&format!("c{i}"), shop(i), Claim::Damaged, Tracking::Delivered, None)).collect();
        let lost = Dispute {
            id: "d1".into(),
            store: "s1".into(),
            order_id: "o-c0".into(),
            status: DisputeStatus::Lost,
            reason: "product_not_received".into(),
            amount: Money::new(5_000, Currency::EUR),
            customer: shop(0),
            initiated_at: Timestamp(20),
        };
        let merged = Profile::build(KEY, &claims, std::slice::from_ref(&lost), &[], Timestamp(100));
        let (label, facts) = merged.facts_of(&shop(4));
        assert_eq!((facts.orders, facts.chargebacks_lost), (5, 1), "one phone joins them all");
        assert_eq!(merged.label_of(&shop(0)), label, "one identity");
        let shared = SharedValues {
            phones: vec!["030 5550100".into(), "+49305550100".into()],
            addresses: vec!["LAGERWEG 1 12345 lager".into()],
            ..SharedValues::default()
        };
        assert!(shared.unusable().is_empty());
        let apart = Profile::new(KEY).without(&shared).with(&claims, std::slice::from_ref(&lost), &[], Timestamp(100));
        let (label, facts) = apart.facts_of(&shop(4));
        assert_eq!((facts.orders, facts.chargebacks_lost, facts.identities_sharing_address), (1, 0, 0));
        assert!(label.starts_with("email:") && label != apart.label_of(&shop(0)), "its own identity: {label}");
        assert_eq!(apart.facts_of(&shop(0)).1.chargebacks_lost, 1, "the chargeback stays its own customer's");
        // A mirrored order (keys hashed on arrival, before the brand said
        // so) is stripped as it joins the graph.
        let order = mirrored("o9", &shop(9), "s2", 4_000, 0, 50);
        let p = Profile::new(KEY).without(&shared).with(&claims, &[], std::slice::from_ref(&order), Timestamp(100));
        assert_eq!(p.facts_of(&shop(9)).1.orders, 1);
        assert_eq!(p.facts_of(&shop(1)).1.orders, 1);
        // Nothing left to know a customer by: unidentified, not trusted.
        let nobody = Customer { email: "noreply@shop.de".into(), ..shop(5) };
        assert!(apart.facts_of(&nobody).1.unidentified && !apart.facts_of(&shop(5)).1.unidentified);
        // Stores not read through: a fact of every identity, known or new.
        let early = Profile::new(KEY).unread(2).with(&claims, &[], &[], Timestamp(100));
        assert_eq!((early.facts_of(&shop(1)).1.stores_unread, early.facts_of(&shop(77)).1.stores_unread), (2, 2));
        let typo = SharedValues { phones: vec!["n/a".into()], cards: vec!["visa".into()], ..SharedValues::default() };
        assert_eq!(typo.unusable(), vec!["phone \"n/a\"".to_string(), "card \"visa\"".to_string()]);
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
            grown.add_order(o);
        }
        let mut handles = Vec::new();
        for (i, c) in claims.iter().enumerate().rev() {
            handles.push((i, grown.add_claim(&ClaimRecord { settled: None, ..c.clone() })));
            if i == 3 {
                for d in disputes.iter().rev() {
                    grown.add_dispute(d);
                }
            }
        }
        assert_ne!(all_facts(&grown, &people), want, "unsettled, the refunds are not there yet");
        for (i, h) in handles {
            grown.settle(h, &claims[i]);
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
