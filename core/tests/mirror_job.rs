//! The shop mirror (`jobs::mirror`) against a scripted shop: it pages a
//! store's orders into the brand's state with its cursor, reads a changed
//! order again on the next pass (no sooner than its interval), resumes
//! where a throttled run stopped, logs an order it cannot read and goes on,
//! and keeps hashes, not the customer's data.

use std::sync::Mutex;

use dlft_core::config::Sabotage;
use dlft_core::estimate::identity::OrderRecord;
use dlft_core::ids::BrandId;
use dlft_core::jobs::mirror::{
    CHAIN_DEPTH, CURSOR_SCOPE, Cursor, MAX_PAGES_PER_RUN, MIN_INTERVAL, Mirrored, OVERLAP, mirror, orders, rejected,
};
use dlft_core::jobs::{Attempt, Ports};
use dlft_core::money::{Currency, Money};
use dlft_core::probe::NoProbe;
use dlft_core::sense::claims::Customer;
use dlft_core::sense::shop::{MirroredOrder, OrdersPage, RejectedOrder, RiskLevel, Shop, ShopError};
use dlft_core::sense::wire::shopify_orders::ORDERS_PAGE_FIRST;
use dlft_core::store::{SharedMemStore, Store};
use dlft_core::time::{ManualClock, Millis, Timestamp};

mod common;
use common::{NOW, block_on};

/// One store's orders, served by `updated_at` then id after a cursor
/// (`{updated_at}/{id}`), and a script of calls to throttle.
struct ScriptedShop {
    orders: Mutex<Vec<MirroredOrder>>,
    throttle_call: Mutex<Option<usize>>,
    /// Like Shopify, no page past this many objects of one cursor chain.
    chain_limit: Option<usize>,
    /// Orders sent garbled: the page rejects them (as the decoder would).
    garbled: Mutex<Vec<String>>,
    calls: Mutex<Vec<(Timestamp, Option<String>)>>,
}

impl Shop for ScriptedShop {
    fn stores(&self) -> Vec<String> {
        vec!["eu".into()]
    }
    async fn orders_page(
        &self,
        store: &str,
        since: Timestamp,
        after: Option<&str>,
        first: u32,
    ) -> Result<OrdersPage, ShopError> {
        assert_eq!(store, "eu");
        let mut calls = self.calls.lock().unwrap();
        calls.push((since, after.map(str::to_string)));
        if *self.throttle_call.lock().unwrap() == Some(calls.len()) {
            return Err(ShopError::Throttled { retry_after: Millis(1_000) });
        }
        let floor = Timestamp(since.0 / 1_000 * 1_000);
        let mut rows: Vec<MirroredOrder> = self.orders.lock().unwrap().clone();
        rows.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)));
        let key = |o: &MirroredOrder| format!("{:020}/{}", o.updated_at.0, o.id);
        let after = after.map(str::to_string);
        let rows: Vec<MirroredOrder> =
            rows.into_iter().filter(|o| o.updated_at >= floor && after.as_ref().is_none_or(|a| key(o) > *a)).collect();
        if let Some(limit) = self.chain_limit {
            let depth = self.orders.lock().unwrap().iter().filter(|o| o.updated_at >= floor).count() - rows.len();
            if depth >= limit {
                return Err(ShopError::Rejected(vec![format!("pagination past {limit} objects")]));
            }
        }
        let more = rows.len() > first as usize;
        let page: Vec<MirroredOrder> = rows.into_iter().take(first as usize).collect();
        let next = page.last().filter(|_| more).map(key);
        let garbled = self.garbled.lock().unwrap().clone();
        let (bad, page): (Vec<MirroredOrder>, Vec<MirroredOrder>) =
            page.into_iter().partition(|o| garbled.contains(&o.id));
        let rejected = bad
            .into_iter()
            .map(|o| RejectedOrder {
                why: format!("order {}: totalPriceSet.shopMoney.amount: \"80.001\"", o.id),
                id: o.id,
                updated_at: Some(o.updated_at),
            })
            .collect();
        Ok(OrdersPage { orders: page, rejected, next })
    }
}

fn order(n: u64, updated: u64) -> MirroredOrder {
    MirroredOrder {
        id: format!("gid://shopify/Order/{n}"),
        created_at: Timestamp(updated),
        updated_at: Timestamp(updated),
        total: Money::new(5_000, Currency::EUR),
        refunded: Money::zero(Currency::EUR),
        customer: Customer {
            email: format!("c{n}@example.com"),
            phone: String::new(),
            address: format!("{n} Elm Street"),
            card: String::new(),
        },
        tracking_numbers: vec![format!("DL{n:09}DE")],
        risk: RiskLevel::Low,
    }
}

fn shop(n: u64) -> ScriptedShop {
    ScriptedShop {
        orders: Mutex::new((1..=n).map(|i| order(i, NOW.0 - 3_600_000 + i * 10_000)).collect()),
        throttle_call: Mutex::new(None),
        chain_limit: None,
        garbled: Mutex::new(Vec::new()),
        calls: Mutex::new(Vec::new()),
    }
}

fn mirror_once(
    store: &SharedMemStore,
    lease: &dlft_core::store::Lease,
    shop: &ScriptedShop,
    clock: &ManualClock,
) -> Mirrored {
    let ports = Ports { store, ads: (), clock, probe: NoProbe, bank: shop };
    let mut attempt = Attempt::new(lease.clone(), BrandId::default(), Currency::EUR);
    block_on(mirror(&ports, &mut attempt, b"key", Sabotage::None)).unwrap()
}

/// The orders one run of the mirror read.
fn run(store: &SharedMemStore, lease: &dlft_core::store::Lease, shop: &ScriptedShop, clock: &ManualClock) -> u32 {
    mirror_once(store, lease, shop, clock).orders
}

/// Event rows about `order`'s rejection (those moving it to `after`, if given).
fn rejection_events(store: &SharedMemStore, order: &str, after: Option<&str>) -> usize {
    let events = block_on(store.events(0)).unwrap();
    let entity = format!("mirror.rejected/eu/{order}");
    events.iter().filter(|e| e.entity == entity && after.is_none_or(|a| e.after == a)).count()
}

fn cursor(store: &SharedMemStore) -> Cursor {
    let rows = block_on(store.state(&BrandId::default(), CURSOR_SCOPE)).unwrap();
    serde_json::from_str(&rows.iter().find(|(k, _)| k == "eu").unwrap().1).unwrap()
}

fn mirrored(store: &SharedMemStore) -> Vec<OrderRecord> {
    block_on(orders(store, &BrandId::default())).unwrap()
}

#[test]
fn a_store_is_paged_into_the_state_and_a_changed_order_read_again() {
    let (store, claim) = common::claimed_store(Vec::new());
    let clock = ManualClock::new(NOW);
    let shop = shop(60);
    assert_eq!(run(&store, &claim.lease, &shop, &clock), 60);
    let calls = shop.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 60usize.div_ceil(ORDERS_PAGE_FIRST as usize), "a page of {ORDERS_PAGE_FIRST} at a time");
    assert!(calls.iter().all(|(since, _)| *since == Timestamp(0)), "one pass, one bound");
    assert_eq!(mirrored(&store).len(), 60);
    let newest = NOW.0 - 3_600_000 + 60 * 10_000;
    assert_eq!(
        cursor(&store),
        Cursor { since: Timestamp(newest - OVERLAP.0), after: None, high: Timestamp(newest), ended_at: NOW, depth: 0 },
        "the next pass starts a minute before the newest change the shop showed"
    );
    // Order 3 is refunded now: the next pass reads it again (and the last
    // minute's orders), and its row shows the refund.
    {
        let mut orders = shop.orders.lock().unwrap();
        orders[2].refunded = Money::new(1_250, Currency::EUR);
        orders[2].updated_at = NOW;
    }
    // Not read again within MIN_INTERVAL of the last pass.
    clock.advance(Millis(5_000));
    assert_eq!(run(&store, &claim.lease, &shop, &clock), 0, "rested");
    assert_eq!(shop.calls.lock().unwrap().len(), calls.len(), "no request");
    clock.advance(MIN_INTERVAL);
    let read = run(&store, &claim.lease, &shop, &clock);
    assert_eq!(read, 8, "order 3 and the last minute's 7 (54..=60)");
    let rows = mirrored(&store);
    assert_eq!(rows.len(), 60, "a re-read order replaces its row");
    let three = rows.iter().find(|r| r.order_id == "gid://shopify/Order/3").unwrap();
    assert_eq!(three.refunded.minor, 1_250);
    assert!(!serde_json::to_string(&rows).unwrap().contains("example.com"), "hashes only");
}

#[test]
fn a_throttled_page_stops_the_mirror_where_it_was_and_the_next_run_resumes() {
    let (store, claim) = common::claimed_store(Vec::new());
    let clock = ManualClock::new(NOW);
    let shop = shop(60);
    *shop.throttle_call.lock().unwrap() = Some(2);
    let done = mirror_once(&store, &claim.lease, &shop, &clock);
    assert_eq!((done.pages, done.orders), (1, ORDERS_PAGE_FIRST));
    assert!(matches!(done.stopped, Some(ShopError::Throttled { .. })), "{done:?}");
    assert_eq!(done.unread, vec!["eu".to_string()], "its first pass has not ended");
    let after_first = cursor(&store);
    assert!(after_first.after.is_some(), "the first page's cursor is kept: {after_first:?}");
    // The next run asks for the page after the one it has, not the first.
    *shop.throttle_call.lock().unwrap() = None;
    let done = mirror_once(&store, &claim.lease, &shop, &clock);
    assert_eq!((done.orders, done.unread.len()), (60 - ORDERS_PAGE_FIRST, 0), "read through");
    assert_eq!(shop.calls.lock().unwrap()[2].1, after_first.after);
    assert_eq!(mirrored(&store).len(), 60);
    // Once read through, a store stays so: a later pass that fails part
    // way leaves it a known store with a change or two unread.
    clock.advance(MIN_INTERVAL);
    let next_call = shop.calls.lock().unwrap().len() + 1;
    *shop.throttle_call.lock().unwrap() = Some(next_call);
    let done = mirror_once(&store, &claim.lease, &shop, &clock);
    assert!(done.stopped.is_some() && done.unread.is_empty(), "{done:?}");
}

#[test]
fn an_order_that_cannot_be_read_is_logged_and_the_mirror_goes_past_it() {
    let (store, claim) = common::claimed_store(Vec::new());
    let clock = ManualClock::new(NOW);
    let shop = shop(60);
    let five = "gid://shopify/Order/5".to_string();
    shop.garbled.lock().unwrap().push(five.clone());
    let done = mirror_once(&store, &claim.lease, &shop, &clock);
    assert_eq!((done.orders, done.rejected), (59, 1), "every other order of every page");
    assert_eq!(mirrored(&store).len(), 59);
    assert!(mirrored(&store).iter().all(|r| r.order_id != five), "nothing mirrored on a guess");
    assert_eq!(cursor(&store).after, None, "the pass ended: the bad order held no page");
    let logged = block_on(rejected(&store, &BrandId::default())).unwrap();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].0, format!("eu/{five}"));
    assert!(logged[0].1.why.contains("totalPriceSet"), "{:?}", logged[0]);
    assert_eq!(rejection_events(&store, &five, Some("rejected")), 1, "one event row names it");

    // The shop mends it (and so changes it): the next pass reads it, and
    // the rejection goes, with an event.
    shop.garbled.lock().unwrap().clear();
    shop.orders.lock().unwrap()[4].updated_at = NOW;
    clock.advance(MIN_INTERVAL);
    assert!(run(&store, &claim.lease, &shop, &clock) >= 1);
    assert!(mirrored(&store).iter().any(|r| r.order_id == five));
    assert!(block_on(rejected(&store, &BrandId::default())).unwrap().is_empty());
    assert_eq!(rejection_events(&store, &five, Some("read")), 1);
}

#[test]
fn a_rejection_read_again_unchanged_is_not_logged_twice() {
    let (store, claim) = common::claimed_store(Vec::new());
    let clock = ManualClock::new(NOW);
    let shop = shop(3);
    let three = "gid://shopify/Order/3".to_string();
    shop.garbled.lock().unwrap().push(three.clone());
    assert_eq!(run(&store, &claim.lease, &shop, &clock), 2);
    // The last minute is read again on the next pass: order 3 comes again,
    // still garbled.
    clock.advance(MIN_INTERVAL);
    run(&store, &claim.lease, &shop, &clock);
    assert!(shop.calls.lock().unwrap().len() >= 2, "read twice");
    assert_eq!(rejection_events(&store, &three, None), 1, "the same rejection once");
}

#[test]
fn a_deep_first_pass_starts_new_cursor_chains_before_the_shops_pagination_limit() {
    // 12,000 orders a second apart; the shop pages no chain past 10,100.
    let (store, claim) = common::claimed_store(Vec::new());
    let clock = ManualClock::new(NOW);
    let mut shop = shop(0);
    shop.chain_limit = Some(CHAIN_DEPTH as usize + 100);
    *shop.orders.lock().unwrap() = (1..=12_000).map(|i| order(i, 1_000_000 + i * 1_000)).collect();
    let mut runs = 0;
    loop {
        let done = mirror_once(&store, &claim.lease, &shop, &clock);
        assert!(done.stopped.is_none(), "run {runs}: {done:?}");
        runs += 1;
        if done.unread.is_empty() {
            break;
        }
        assert!(runs < 100, "the first pass never ends");
    }
    assert_eq!(mirrored(&store).len(), 12_000);
    // One new chain, a minute before the 10,000th order (pages of 26).
    let restarts: Vec<Timestamp> =
        shop.calls.lock().unwrap().iter().skip(1).filter(|(_, after)| after.is_none()).map(|(s, _)| *s).collect();
    let deep = 10_010; // the last order of the page that crossed 10,000
    assert_eq!(restarts, vec![Timestamp(1_000_000 + deep * 1_000 - OVERLAP.0)]);
    assert_eq!(cursor(&store).depth, 0, "a pass ends at depth 0");
    assert_eq!(runs, (12_000usize + 60).div_ceil(ORDERS_PAGE_FIRST as usize).div_ceil(MAX_PAGES_PER_RUN));
}
