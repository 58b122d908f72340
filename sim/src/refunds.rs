//! Refunds in the world (issue 14): each brand's stores and their orders
//! (a [`ShopWorld`] per brand, Shopify's refund semantics), the customers
//! who claim on them (honest ones, abusers who say "did not arrive" of
//! parcels tracked as delivered and charge back weeks later, and rings:
//! several identities shipping to one address across the brand's stores),
//! the claims desk that lists those claims, the disputes, and the shop's
//! misbehaviour (throttling, lost replies after the refund, 5xx, requests
//! lost before it). The loop reaches all of it through [`SimBank`]'s
//! `Shop` and `ClaimsSource` (over either driver's wire).
//!
//! Drawn from three streams of the seed: `SHOP` (the refunds' fates),
//! `SHOP_CLAIMS` (customers, orders, claims and disputes) and
//! `SHOP_FAULTS` (the replies'): a scenario without `[shop]` draws nothing.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use dlft_core::ids::BrandId;
use dlft_core::money::{Currency, Money};
use dlft_core::sense::claims::{
    Claim, ClaimRecord, ClaimsSource, Customer, Dispute, DisputeStatus, Settlement, SourceError, Tracking,
};
use dlft_core::sense::shipments::{Shipments, Track17Error, Track17Post, Tracked, register_and_read, stop_all};
use dlft_core::sense::shop::{RefundRequest, Shop, ShopError, ShopOrder, ShopRefund};
use dlft_core::time::{Clock, Millis, Timestamp};
use serde_json::json;

use crate::faults::{Fate, FaultRates, vendor_fate};
use crate::hosts::{PlatformState, Wire, lock};
use crate::payouts::{BankReply, BankRequest, SimBank};
use crate::scenario::{Scenario, ShopSection};
use crate::shop::{Order, ShopConfig, ShopWorld};
use crate::track17::{CARRIER, DAY, Fate as ParcelFate, Parcel, TrackWorld};
use crate::world::draw;

/// Who a customer is, in truth (the checker's and the report's label; the
/// loop sees only what they send).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Honest,
    Abuser,
    Ring,
}

/// One person of the world.
#[derive(Clone, Debug)]
pub struct Person {
    pub kind: Kind,
    pub customer: Customer,
}

/// A claim as the world knows it: its record and who made it.
#[derive(Clone, Debug)]
pub struct ClaimTruth {
    pub record: ClaimRecord,
    pub person: usize,
}

/// One brand's shop, desk and customers.
pub struct BrandShop {
    pub shop: ShopWorld,
    pub people: Vec<Person>,
    pub claims: Vec<ClaimTruth>,
    pub disputes: Vec<(Dispute, usize)>,
    /// The brand's parcels as its tracker knows them (`[shop] tracker`):
    /// one per claimed order, its fate the truth of the claim's tracking.
    pub parcels: Option<TrackWorld>,
}

/// The shop host: every brand's shop, and how the shop misbehaves.
pub struct ShopHost {
    pub cfg: ShopSection,
    pub brands: BTreeMap<BrandId, BrandShop>,
    /// The replies' fates: their own stream.
    pub rng: ChaCha8Rng,
    pub hung: u64,
    pub lost_replies: u64,
    pub throttled: u64,
    pub server_errors: u64,
}

/// The store name of store `i` (0-based) of `brand`.
pub fn store_name(brand: &BrandId, i: u32) -> String {
    format!("{brand}-shop-{}", i + 1)
}

/// The names of `brand`'s stores under `[shop] stores` (at least one).
pub fn store_names(brand: &BrandId, cfg: &ShopSection) -> Vec<String> {
    (0..cfg.stores.max(1)).map(|i| store_name(brand, i)).collect()
}

/// The store person `person` of `kind` orders from: a ring spreads over the
/// brand's stores, one each; everyone else shops anywhere (one draw).
fn store_of(kind: Kind, person: usize, cfg: &ShopSection, rng: &mut ChaCha8Rng) -> u32 {
    if kind == Kind::Ring {
        u32::try_from(person % cfg.stores.max(1) as usize).unwrap_or(0)
    } else {
        rng.random_range(0..cfg.stores.max(1))
    }
}

/// The brand's call centre: the number its staff enter for a customer on
/// an order taken by phone (`[shop] phone_orders_pct`), and that the loop
/// declares shared (`RefundConfig.shared`).
pub const CALL_CENTRE: &str = "+49 30 5550100";

fn customer(kind: Kind, i: usize, ring_address: &str) -> Customer {
    let (tag, address) = match kind {
        Kind::Honest => ("h", format!("{} Honest Lane, Berlin", i + 1)),
        Kind::Abuser => ("a", format!("{} Crooked Road, Hamburg", i + 1)),
        Kind::Ring => ("r", ring_address.to_string()),
    };
    Customer {
        email: format!("{tag}{i}@mail.example"),
        phone: format!("+49 151 {:07}", 1_000_000 + i),
        address,
        card: format!("424242-{:04}-12/29", 1000 + i),
    }
}

impl BrandShop {
    /// The brand's people, orders, claims and disputes over `[start, until)`
    /// (also the refund history `dlft datasets generate` writes).
    pub fn draw(
        cfg: &ShopSection,
        brand: &BrandId,
        currency: Currency,
        start: Timestamp,
        until: Timestamp,
        rng: &mut ChaCha8Rng,
        fates: ChaCha8Rng,
    ) -> BrandShop {
        let shop_cfg = ShopConfig {
            orders: 0,
            currency,
            amount_minor: (0, 0),
            settle_ms: cfg.settle_ms,
            failure_pct: cfg.failure_pct,
        };
        let mut shop = ShopWorld::new(shop_cfg, fates);
        let ring_address = format!("Parcel Locker {brand}, Riga");
        let mut people = Vec::new();
        for (kind, n) in [(Kind::Honest, cfg.honest_customers), (Kind::Abuser, cfg.abusers), (Kind::Ring, cfg.ring)] {
            for _ in 0..n {
                let i = people.len();
                people.push(Person { kind, customer: customer(kind, i, &ring_address) });
            }
        }
        let of_kind = |k: Kind| people.iter().enumerate().filter(|(_, p)| p.kind == k).map(|(i, _)| i).collect();
        let (honest, abusers, ring): (Vec<usize>, Vec<usize>, Vec<usize>) =
            (of_kind(Kind::Honest), of_kind(Kind::Abuser), of_kind(Kind::Ring));
        let span = until.since(start).0.max(1);
        let hours = span.div_ceil(3_600_000);
        let count = hours * draw(rng, cfg.claims_per_hour);
        let mut claims = Vec::new();
        let mut disputes = Vec::new();
        let mut parcels = Vec::new();
        let mut opened: Vec<u64> = (0..count).map(|_| rng.random_range(0..span)).collect();
        opened.sort_unstable();
        for (n, at) in opened.into_iter().enumerate() {
            let roll = rng.random_range(0..100);
            let (kind, pool) = if roll < cfg.ring_pct && !ring.is_empty() {
                (Kind::Ring, &ring)
            } else if roll < cfg.ring_pct + cfg.abuser_pct && !abusers.is_empty() {
                (Kind::Abuser, &abusers)
            } else {
                (Kind::Honest, &honest)
            };
            if pool.is_empty() {
                continue;
            }
            let person = pool[rng.random_range(0..pool.len())];
            let store_i = store_of(kind, person, cfg, rng);
            let store = store_name(brand, store_i);
            let item = draw(rng, cfg.item_cents) as i64;
            let total = item + draw(rng, cfg.order_extra_cents) as i64;
            let order_n = n as u64 + 1;
            let number = 100_000 * (u64::from(store_i) + 1) + order_n;
            // Taken by phone: the call centre's number for the customer's
            // (no draw when there are none: the seed's streams stay those of
            // a world without them).
            let mut who = people[person].customer.clone();
            if cfg.phone_orders_pct > 0 && rng.random_range(0..100) < cfg.phone_orders_pct {
                who.phone = CALL_CENTRE.into();
            }
            let mut order = Order {
                id: format!("gid://shopify/Order/{number}"),
                amount: Money::new(total, currency),
                payment_id: format!("gid://shopify/OrderTransaction/{}", 500_000 * (u64::from(store_i) + 1) + order_n),
                gateway: "shopify_payments".into(),
                tracking: Vec::new(),
                store: store.clone(),
                created_at: Timestamp(0),
                customer: Some(who.clone()),
            };
            let (claim, tracking) = match kind {
                Kind::Honest => {
                    let claim = Claim::ALL[rng.random_range(0..Claim::ALL.len())];
                    let tracking = match claim {
                        Claim::DidNotArrive if rng.random_range(0..100) < cfg.lost_pct => Tracking::Lost,
                        Claim::DidNotArrive => Tracking::Moving,
                        _ => Tracking::Delivered,
                    };
                    (claim, tracking)
                }
                // "It never came" of a parcel tracked as delivered, or the wrong item.
                Kind::Abuser if rng.random_bool(0.5) => (Claim::DidNotArrive, Tracking::Delivered),
                Kind::Abuser => (Claim::WrongItem, Tracking::Delivered),
                // Lost parcels and damaged goods, at one address.
                Kind::Ring if rng.random_bool(0.5) => (Claim::DidNotArrive, Tracking::Lost),
                Kind::Ring => (Claim::Damaged, Tracking::Delivered),
            };
            let days_since_shipped = match tracking {
                Tracking::Moving => rng.random_range(3..40),
                _ => rng.random_range(2..20),
            };
            let opened_at = start + Millis(at);
            // Placed the day before it shipped (no draw).
            order.created_at = Timestamp(opened_at.0.saturating_sub((u64::from(days_since_shipped) + 1) * DAY));
            // With a tracker, the order ships as a parcel whose fate is the
            // truth, and the desk takes the customer's word: an abuser says
            // "lost" of a parcel delivered. (No draws: the seed's streams
            // are those of a world without a tracker.)
            let told = if cfg.tracker {
                let shipped_at = Timestamp(opened_at.0.saturating_sub(u64::from(days_since_shipped) * DAY));
                let half = Millis(u64::from(days_since_shipped) * DAY / 2);
                let fate = match tracking {
                    Tracking::Delivered => ParcelFate::Delivered(half),
                    Tracking::Lost => ParcelFate::Exception(half),
                    Tracking::Moving | Tracking::Unknown => ParcelFate::Lost,
                };
                let parcel = Parcel { number: format!("DL{number:09}DE"), carrier: CARRIER, shipped_at, fate };
                order.tracking.push(parcel.number.clone());
                parcels.push(parcel);
                match (kind, claim) {
                    (Kind::Abuser, Claim::DidNotArrive) => Tracking::Lost,
                    _ => tracking,
                }
            } else {
                tracking
            };
            let record = ClaimRecord {
                id: format!("claim-{brand}-{order_n:05}"),
                store: store.clone(),
                order_id: order.id.clone(),
                claim,
                claimed: Money::new(item, currency),
                order_total: order.amount,
                tracking: told,
                days_since_shipped,
                customer: who.clone(),
                opened_at,
                settled: None,
            };
            // Abusers charge back some orders weeks later (scaled down).
            if kind == Kind::Abuser
                && rng.random_range(0..100) < cfg.chargeback_pct
                && let Some(after) = cfg.chargeback_after_s
            {
                let dispute = Dispute {
                    id: format!("dispute-{brand}-{order_n:05}"),
                    store,
                    order_id: order.id.clone(),
                    status: DisputeStatus::Open,
                    reason: "product_not_received".into(),
                    amount: order.amount,
                    customer: who,
                    initiated_at: record.opened_at + Millis::from_secs(draw(rng, after)),
                };
                disputes.push((dispute, person));
            }
            shop.add_order(order);
            claims.push(ClaimTruth { record, person });
        }
        // Each customer's earlier orders, never claimed on (drawn after the
        // claims: a world without them draws the same claims).
        if let Some(range) = cfg.orders_before {
            let mut k = 0u64;
            for (person, p) in people.iter().enumerate() {
                for _ in 0..draw(rng, range) {
                    k += 1;
                    let store_i = store_of(p.kind, person, cfg, rng);
                    let total = (draw(rng, cfg.item_cents) + draw(rng, cfg.order_extra_cents)) as i64;
                    let ago = rng.random_range(DAY..30 * DAY);
                    shop.add_order(Order {
                        id: format!("gid://shopify/Order/{}", 10_000_000 * (u64::from(store_i) + 1) + k),
                        amount: Money::new(total, currency),
                        payment_id: format!(
                            "gid://shopify/OrderTransaction/{}",
                            50_000_000 * (u64::from(store_i) + 1) + k
                        ),
                        gateway: "shopify_payments".into(),
                        tracking: Vec::new(),
                        store: store_name(brand, store_i),
                        created_at: Timestamp(start.0.saturating_sub(ago)),
                        customer: Some(p.customer.clone()),
                    });
                }
            }
        }
        let parcels = cfg.tracker.then(|| TrackWorld::of(parcels));
        BrandShop { shop, people, claims, disputes, parcels }
    }

    fn claims(&self, now: Timestamp) -> Vec<ClaimRecord> {
        self.claims.iter().filter(|c| c.record.opened_at <= now).map(|c| c.record.clone()).collect()
    }

    fn disputes(&self, now: Timestamp) -> Vec<Dispute> {
        self.disputes.iter().filter(|(d, _)| d.initiated_at <= now).map(|(d, _)| d.clone()).collect()
    }

    fn settle(&mut self, id: &str, how: &Settlement) -> Result<(), SourceError> {
        let c =
            self.claims.iter_mut().find(|c| c.record.id == id).ok_or_else(|| SourceError(format!("no claim {id}")))?;
        // Settled once; a second settle changes nothing.
        c.record.settled.get_or_insert_with(|| how.clone());
        Ok(())
    }

    /// The claim a refund's note names (`dlft:refund/{brand}/{store}/{order}/{claim}`).
    pub fn claim_of_note(&self, note: &str) -> Option<&ClaimTruth> {
        let claim = note.rsplit('/').next()?;
        let claim = claim.split('#').next()?;
        self.claims.iter().find(|c| c.record.id == claim)
    }
}

impl ShopHost {
    pub fn new(scn: &Scenario, start: Timestamp, seed: u64) -> Option<ShopHost> {
        use crate::run::{rng_for, stream};
        let cfg = scn.shop.clone()?;
        let until = start + Millis::from_secs(scn.run.duration_s - scn.run.heal_s);
        let mut rng = rng_for(seed, stream::SHOP_CLAIMS);
        let brands = scn
            .brand_ids()
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let fates = rng_for(seed, stream::SHOP + 1000 * i as u64);
                let shop = BrandShop::draw(&cfg, &b, scn.currency(), start, until, &mut rng, fates);
                (b, shop)
            })
            .collect();
        Some(ShopHost {
            cfg,
            brands,
            rng: rng_for(seed, stream::SHOP_FAULTS),
            hung: 0,
            lost_replies: 0,
            throttled: 0,
            server_errors: 0,
        })
    }
}

/// Shop and claims calls over the sim's wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ShopRequest {
    Refund {
        brand: BrandId,
        req: RefundRequest,
        key: String,
    },
    OrderRefunds {
        brand: BrandId,
        order_id: String,
    },
    Order {
        brand: BrandId,
        order_id: String,
    },
    Claims {
        brand: BrandId,
    },
    SettleClaim {
        brand: BrandId,
        id: String,
        how: Settlement,
    },
    Disputes {
        brand: BrandId,
    },
    /// One request to the brand's 17TRACK (`register`, `gettrackinfo`, `stoptrack`).
    Track17 {
        brand: BrandId,
        call: String,
        body: serde_json::Value,
    },
    /// A GraphQL request to one of the brand's stores, as the live adapter
    /// sends it (the mirror's orders page).
    Graphql {
        brand: BrandId,
        store: String,
        body: serde_json::Value,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShopReply {
    Refund(ShopRefund),
    Refunds(Vec<ShopRefund>),
    Order(ShopOrder),
    Claims(Vec<ClaimRecord>),
    Settled,
    Disputes(Vec<Dispute>),
    /// 17TRACK's reply, as it would send it.
    Track17 {
        http: u16,
        body: serde_json::Value,
    },
    /// Shopify's GraphQL reply, as it would send it.
    Graphql {
        http: u16,
        body: serde_json::Value,
    },
}

pub type ShopResponse = Result<ShopReply, ShopError>;

/// The Shopify call's fate; the desk's calls have only the network's.
fn fate(h: &mut ShopHost, req: &ShopRequest) -> Fate {
    let is_refund = matches!(req, ShopRequest::Refund { .. });
    if matches!(req, ShopRequest::Claims { .. } | ShopRequest::SettleClaim { .. } | ShopRequest::Disputes { .. }) {
        return Fate::Serve;
    }
    let c = &h.cfg;
    let rates = FaultRates {
        lost_reply: c.lost_reply_pct,
        timeout: c.timeout_pct,
        limit: c.throttle_pct,
        server_error: c.server_error_pct,
    };
    vendor_fate(&mut h.rng, rates, is_refund)
}

fn apply(h: &mut ShopHost, req: &ShopRequest, now: Timestamp) -> ShopResponse {
    let brand = match req {
        ShopRequest::Refund { brand, .. }
        | ShopRequest::OrderRefunds { brand, .. }
        | ShopRequest::Order { brand, .. }
        | ShopRequest::Claims { brand }
        | ShopRequest::SettleClaim { brand, .. }
        | ShopRequest::Disputes { brand }
        | ShopRequest::Track17 { brand, .. }
        | ShopRequest::Graphql { brand, .. } => brand,
    };
    let search_lag = Millis(h.cfg.search_lag_ms);
    let Some(b) = h.brands.get_mut(brand) else {
        return Err(ShopError::Unauthorized(format!("no shop of brand {brand}")));
    };
    match req {
        ShopRequest::Refund { req, key, .. } => b.shop.refund(req, key, now).map(ShopReply::Refund),
        ShopRequest::OrderRefunds { order_id, .. } => b.shop.order_refunds(order_id, now).map(ShopReply::Refunds),
        ShopRequest::Order { order_id, .. } => b.shop.order(order_id, now).map(ShopReply::Order),
        ShopRequest::Claims { .. } => Ok(ShopReply::Claims(b.claims(now))),
        ShopRequest::SettleClaim { id, how, .. } => {
            b.settle(id, how).map(|()| ShopReply::Settled).map_err(|e| ShopError::Rejected(vec![e.0]))
        }
        ShopRequest::Disputes { .. } => Ok(ShopReply::Disputes(b.disputes(now))),
        ShopRequest::Track17 { call, body, .. } => {
            let (http, body) = match b.parcels.as_mut() {
                Some(p) => p.serve(call, body, now),
                None => (401, json!({"code": 401, "message": "no 17TRACK key for this brand"})),
            };
            Ok(ShopReply::Track17 { http, body })
        }
        ShopRequest::Graphql { store, body, .. } => {
            use dlft_core::sense::wire::shopify::{Asked, decode_request, error_body};
            use dlft_core::sense::wire::shopify_orders::encode_orders_page_reply;
            let (http, body) = match decode_request(body) {
                Ok(Asked::OrdersPage { since, after, first }) => {
                    let as_of = Timestamp(now.0.saturating_sub(search_lag.0));
                    match b.shop.orders_page(Some(store), since, after.as_deref(), first, as_of) {
                        Ok((orders, next)) => encode_orders_page_reply(&orders, next.as_deref()),
                        Err(e) => (200, error_body("BAD_REQUEST", &e.to_string())),
                    }
                }
                Ok(other) => (200, error_body("BAD_REQUEST", &format!("not served over this wire: {other:?}"))),
                Err(e) => (200, error_body("GRAPHQL_VALIDATION_FAILED", &e)),
            };
            Ok(ShopReply::Graphql { http, body })
        }
    }
}

/// How long a hung shop request holds its connection.
const HANG_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// What the shop host does with one request that reached it, on any
/// driver (`None`: no reply).
pub async fn serve_shop_request<C: Clock>(
    platform: std::sync::Arc<std::sync::Mutex<PlatformState>>,
    clock: C,
    req: ShopRequest,
) -> Option<ShopResponse> {
    let (fate, latency) = {
        let mut p = lock(&platform);
        let h = p.shop.as_mut()?;
        let latency = Millis(draw(&mut h.rng, h.cfg.latency_ms));
        (fate(h, &req), latency)
    };
    tokio::time::sleep(latency.as_std()).await;
    let reply = {
        let mut p = lock(&platform);
        let h = p.shop.as_mut()?;
        let now = clock.now();
        match fate {
            Fate::Serve => Some(apply(h, &req, now)),
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
                h.throttled += 1;
                Some(Err(ShopError::Throttled { retry_after: Millis(1_000) }))
            }
            Fate::ServerError { applied } => {
                h.server_errors += 1;
                if applied {
                    let _ = apply(h, &req, now);
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
    async fn shop_call(&self, req: ShopRequest) -> Result<ShopReply, ShopError> {
        match self.wire.bank(BankRequest::Shop { req }).await {
            Ok(Ok(BankReply::Shop(r))) => r,
            Ok(other) => Err(ShopError::Malformed(format!("{other:?}"))),
            Err(crate::rpc::RpcError::Timeout | crate::rpc::RpcError::Io(_)) => Err(ShopError::Timeout),
            Err(crate::rpc::RpcError::Frame(m)) => Err(ShopError::Malformed(m)),
        }
    }
}

fn unexpected<T>(r: ShopReply) -> Result<T, ShopError> {
    Err(ShopError::Malformed(format!("unexpected reply {r:?}")))
}

impl<W: Wire> Shop for SimBank<W> {
    async fn refund(&self, req: &RefundRequest, key: &str) -> Result<ShopRefund, ShopError> {
        let asked = ShopRequest::Refund { brand: self.brand.clone(), req: req.clone(), key: key.to_string() };
        match self.shop_call(asked).await? {
            ShopReply::Refund(r) => Ok(r),
            other => unexpected(other),
        }
    }
    async fn order_refunds(&self, order_id: &str) -> Result<Vec<ShopRefund>, ShopError> {
        match self.shop_call(ShopRequest::OrderRefunds { brand: self.brand.clone(), order_id: order_id.into() }).await?
        {
            ShopReply::Refunds(r) => Ok(r),
            other => unexpected(other),
        }
    }
    async fn order(&self, order_id: &str) -> Result<ShopOrder, ShopError> {
        match self.shop_call(ShopRequest::Order { brand: self.brand.clone(), order_id: order_id.into() }).await? {
            ShopReply::Order(o) => Ok(o),
            other => unexpected(other),
        }
    }
    async fn customer_order(&self, email: &str) -> Result<Option<dlft_core::sense::shop::CustomerOrder>, ShopError> {
        self.support_customer_order(email).await
    }
    fn stores(&self) -> Vec<String> {
        self.stores.clone()
    }
    /// Sent and read with the live adapter's encoder and decoder.
    async fn orders_page(
        &self,
        store: &str,
        since: Timestamp,
        after: Option<&str>,
        first: u32,
    ) -> Result<dlft_core::sense::shop::OrdersPage, ShopError> {
        use dlft_core::sense::wire::shopify_orders::{decode_orders_page, encode_orders_page};
        let body = encode_orders_page(since, after, first);
        let req = ShopRequest::Graphql { brand: self.brand.clone(), store: store.into(), body };
        match self.shop_call(req).await? {
            ShopReply::Graphql { http, body } => decode_orders_page(http, &body),
            other => unexpected(other),
        }
    }
}

/// The world's 17TRACK over the sim's wire, behind the shop's faults.
impl<W: Wire> Track17Post for SimBank<W> {
    async fn post(&self, op: &str, body: serde_json::Value) -> Result<(u16, serde_json::Value), Track17Error> {
        let req = ShopRequest::Track17 { brand: self.brand.clone(), call: op.into(), body };
        match self.shop_call(req).await {
            Ok(ShopReply::Track17 { http, body }) => Ok((http, body)),
            Ok(other) => Err(Track17Error::Malformed(format!("unexpected reply {other:?}"))),
            Err(ShopError::Throttled { .. }) => Err(Track17Error::RateLimited("HTTP 429".into())),
            Err(e) => Err(Track17Error::Unavailable(e.to_string())),
        }
    }
}

/// The brand's parcel tracker, when the scenario gives it one: the world's
/// 17TRACK, driven as the live adapter drives it.
impl<W: Wire> Shipments for SimBank<W> {
    fn tracks(&self) -> bool {
        self.tracker
    }
    async fn track(&self, numbers: &[String]) -> Result<Tracked, Track17Error> {
        register_and_read(self, numbers).await
    }
    async fn stop(&self, numbers: &[String]) -> Result<(), Track17Error> {
        stop_all(self, numbers).await
    }
}

impl<W: Wire> ClaimsSource for SimBank<W> {
    async fn claims(&self) -> Result<Vec<ClaimRecord>, SourceError> {
        match self.shop_call(ShopRequest::Claims { brand: self.brand.clone() }).await {
            Ok(ShopReply::Claims(c)) => Ok(c),
            Ok(other) => Err(SourceError(format!("unexpected reply {other:?}"))),
            Err(e) => Err(SourceError(e.to_string())),
        }
    }
    async fn settle_claim(&self, id: &str, how: &Settlement) -> Result<(), SourceError> {
        let req = ShopRequest::SettleClaim { brand: self.brand.clone(), id: id.into(), how: how.clone() };
        match self.shop_call(req).await {
            Ok(ShopReply::Settled) => Ok(()),
            Ok(other) => Err(SourceError(format!("unexpected reply {other:?}"))),
            Err(e) => Err(SourceError(e.to_string())),
        }
    }
    async fn disputes(&self) -> Result<Vec<Dispute>, SourceError> {
        match self.shop_call(ShopRequest::Disputes { brand: self.brand.clone() }).await {
            Ok(ShopReply::Disputes(d)) => Ok(d),
            Ok(other) => Err(SourceError(format!("unexpected reply {other:?}"))),
            Err(e) => Err(SourceError(e.to_string())),
        }
    }
}

/// The loop's refund settings for a scenario's `[shop]`.
pub fn refund_config(cfg: &ShopSection, currency: Currency) -> dlft_core::config::RefundConfig {
    dlft_core::config::RefundConfig {
        every: Millis::from_secs(cfg.review_every_s),
        policy: dlft_core::propose::refund::RefundPolicy::default(),
        tiers: dlft_core::estimate::risk::TierRules::default(),
        caps: dlft_core::envelope::refund::TierCaps {
            currency,
            trusted: None,
            watch: cfg.watch_cap_cents,
            high: cfg.high_cap_cents,
        },
        identity_key: "sim identity key".into(),
        shared: dlft_core::estimate::identity::SharedValues { phones: vec![CALL_CENTRE.into()], ..Default::default() },
    }
}
