//! The shop mirror (issue 14's sensor): each store's orders, read
//! incrementally into the brand's state, so that the identity graph sees
//! every order (who bought, where it shipped, what it was worth, what the
//! shop refunded), not only the ones someone claimed on.
//!
//! - Incremental by `updated_at`: a pass reads every order updated at or
//!   after its lower bound (to the second below), oldest change first, a
//!   page at a time; when the last page is read, the next pass starts
//!   [`OVERLAP`] before the newest `updated_at` the pass saw: the shop's
//!   own high-water mark, never our clock. The shop's search lags its
//!   writes, so a change made just before a pass ended may show only after
//!   it, with an `updated_at` older than our now; bounding by the data (and
//!   re-reading the last minute) reads it next pass. An order read twice
//!   replaces its row; an order changed while a pass pages comes again, in
//!   this pass or the next.
//! - Checkpointed: each page's orders and the cursor after it are one write
//!   (state rows: [`ORDERS_SCOPE`], `{store}/{order}`; [`CURSOR_SCOPE`],
//!   `{store}`). A crash re-reads at most the page it was on; a re-read
//!   order replaces its row.
//! - No raw personal data kept: the customer is hashed on arrival
//!   ([`OrderRecord`]).
//! - An order the shop sends that cannot be read (bad money, a bad
//!   instant) is left out and logged: a [`REJECTED_SCOPE`] row naming the
//!   field, with its event row; the page's other orders and the cursor go
//!   on, so one bad order never holds the mirror at its page. When the
//!   order is next read well (the shop changed it), its row goes, with an
//!   event.
//! - Shopify pages no connection past 25,000 objects: a pass that has read
//!   [`CHAIN_DEPTH`] orders in one cursor chain (a big store's first pass)
//!   starts a new chain at its high-water mark less [`OVERLAP`].
//! - A store is read again no sooner than [`MIN_INTERVAL`] after its last
//!   pass ended (a pass part way goes on at once).
//! - At most [`MAX_PAGES_PER_RUN`] pages a run per store, each sized to
//!   Shopify's per-query cost ceiling (`ORDERS_PAGE_FIRST`); the live
//!   adapter paces each page by the cost bucket. A shop that throttles or
//!   fails stops the mirror for this run, where it was: the refund review
//!   goes on with what is mirrored (it reads each claimed order itself).
//!
//! The refund job runs it first ([`mirror`]), then builds the identity
//! graph from [`orders`].

use serde::{Deserialize, Serialize};

use crate::estimate::identity::OrderRecord;
use crate::sense::shop::{Shop, ShopError};
use crate::sense::wire::shopify_orders::ORDERS_PAGE_FIRST;
use crate::store::{StateOp, Store};
use crate::time::{Clock, Millis, Timestamp};

use super::{Attempt, JobError, Ports};

/// Mirrored orders: `{store}/{order id}` → [`OrderRecord`] (JSON).
pub const ORDERS_SCOPE: &str = "mirror.orders";
/// Each store's cursor: `{store}` → [`Cursor`] (JSON).
pub const CURSOR_SCOPE: &str = "mirror.cursor";
/// Orders the shop sent that could not be read: `{store}/{order id}` →
/// [`Rejected`] (JSON).
pub const REJECTED_SCOPE: &str = "mirror.rejected";
/// Pages read per store per run at most (the rest next run).
pub const MAX_PAGES_PER_RUN: usize = 8;
/// A store whose last pass ended less than this ago is not read again yet
/// (a review every second would otherwise spend the shop's cost bucket on
/// the mirror: a page is requested at up to 990 points).
pub const MIN_INTERVAL: Millis = Millis(15_000);
/// How far before the newest change it saw a pass's successor starts: the
/// search index's lag need not be uniform, so a change older than the
/// newest one seen may show after it.
pub const OVERLAP: Millis = Millis(60_000);
/// Orders one cursor chain reads at most: Shopify stops paginating a
/// connection at 25,000 objects, so a deeper pass (a big store's first)
/// starts a new chain at its high-water mark less [`OVERLAP`] instead.
pub const CHAIN_DEPTH: u32 = 10_000;

/// Where a store's mirror stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The pass's lower bound on `updated_at`.
    pub since: Timestamp,
    /// The page cursor within the pass (`None`: the pass's first page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The newest `updated_at` the pass has seen: the next pass's bound.
    pub high: Timestamp,
    /// When the last pass ended (our clock: only for pacing the reads).
    #[serde(default)]
    pub ended_at: Timestamp,
    /// Orders read in the current cursor chain (at most [`CHAIN_DEPTH`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub depth: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// An order the mirror could not read, as its row keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The field and what was wrong with it.
    pub why: String,
    /// When it was read so (our clock).
    pub at: Timestamp,
}

/// What one run of the mirror did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirrored {
    pub pages: u32,
    pub orders: u32,
    /// Orders read that could not be (each logged in [`REJECTED_SCOPE`]).
    pub rejected: u32,
    /// Why it stopped short, if it did (the cursor stays where it was).
    pub stopped: Option<ShopError>,
    /// Stores whose orders have not been read through once (no pass has
    /// ended): what the identity graph holds of them is partial.
    pub unread: Vec<String>,
}

/// Reads each of the shop's stores forward from its cursor, page by page,
/// each page written with its cursor. A store error stops the mirror (not
/// the caller): it is returned in [`Mirrored::stopped`].
pub async fn mirror<S: Store, A, C: Clock, P, B: Shop>(
    ports: &Ports<S, A, C, P, B>,
    attempt: &mut Attempt,
    secret: &[u8],
    sabotage: crate::config::Sabotage,
) -> Result<Mirrored, JobError> {
    let mut done = Mirrored::default();
    let stores = ports.bank.stores();
    if stores.is_empty() {
        return Ok(done);
    }
    // A cursor row that cannot be read starts its store over: every order
    // is read again and replaces its row; nothing is lost.
    let cursors: std::collections::BTreeMap<String, Cursor> = ports
        .store
        .state(&attempt.brand, CURSOR_SCOPE)
        .await?
        .into_iter()
        .filter_map(|(store, body)| serde_json::from_str(&body).ok().map(|c| (store, c)))
        .collect();
    let mut rejected: std::collections::BTreeMap<String, String> =
        ports.store.state(&attempt.brand, REJECTED_SCOPE).await?.into_iter().collect();
    let event = |before: &str, after: &str, cause: String| {
        Some(crate::store::StateEvent {
            block: crate::telemetry::Block::Sensor,
            before: before.into(),
            after: after.into(),
            cause,
        })
    };
    // Stores a pass has ended for, ever (this run's included below).
    let mut read_through: std::collections::BTreeSet<String> =
        cursors.iter().filter(|(_, c)| c.ended_at != Timestamp(0)).map(|(store, _)| store.clone()).collect();
    for store in &stores {
        let mut cursor = cursors.get(store).cloned().unwrap_or_default();
        let rested = cursor.ended_at == Timestamp(0) || ports.clock.now().since(cursor.ended_at) >= MIN_INTERVAL;
        if cursor.after.is_none() && !rested {
            continue;
        }
        for _ in 0..MAX_PAGES_PER_RUN {
            let now = ports.clock.now();
            let page = ports.bank.orders_page(store, cursor.since, cursor.after.as_deref(), ORDERS_PAGE_FIRST).await;
            attempt.record(now, "shopify", "orders", page.is_ok());
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    done.stopped = Some(e);
                    break;
                }
            };
            done.pages += 1;
            let mut batch = attempt.batch();
            for o in &page.orders {
                cursor.high = cursor.high.max(o.updated_at);
                let row = OrderRecord::of(secret, store, o);
                let key = format!("{store}/{}", o.id);
                if rejected.remove(&key).is_some() {
                    let cause = format!("read well, updated {}", crate::sense::wire::revolut::iso_of(o.updated_at));
                    let ev = event("rejected", "read", cause);
                    batch.state.push(StateOp { scope: REJECTED_SCOPE.into(), key: key.clone(), body: None, event: ev });
                }
                batch.state.push(StateOp {
                    scope: ORDERS_SCOPE.into(),
                    key,
                    body: Some(serde_json::to_string(&row).expect("an order record serializes")),
                    event: None,
                });
            }
            for r in &page.rejected {
                if let Some(at) = r.updated_at {
                    cursor.high = cursor.high.max(at);
                }
                let key = format!("{store}/{}", r.id);
                let same = rejected
                    .get(&key)
                    .and_then(|b| serde_json::from_str::<Rejected>(b).ok())
                    .is_some_and(|old| old.why == r.why);
                if same {
                    continue;
                }
                let body = serde_json::to_string(&Rejected { why: r.why.clone(), at: now }).expect("serializes");
                let before = if rejected.contains_key(&key) { "rejected" } else { "unread" };
                rejected.insert(key.clone(), body.clone());
                let ev = event(before, "rejected", r.why.clone());
                batch.state.push(StateOp { scope: REJECTED_SCOPE.into(), key, body: Some(body), event: ev });
            }
            done.orders += u32::try_from(page.orders.len()).unwrap_or(u32::MAX);
            done.rejected += u32::try_from(page.rejected.len()).unwrap_or(u32::MAX);
            let last = page.next.is_none();
            let depth =
                cursor.depth.saturating_add(u32::try_from(page.orders.len() + page.rejected.len()).unwrap_or(u32::MAX));
            // A new chain where this one gets deep, if that moves the bound
            // (a minute's worth of changes deeper than the chain cannot).
            let restart = Timestamp(cursor.high.0.saturating_sub(OVERLAP.0));
            cursor = match page.next {
                Some(_) if depth >= CHAIN_DEPTH && restart.0 / 1_000 > cursor.since.0 / 1_000 => {
                    Cursor { since: restart, after: None, depth: 0, ..cursor }
                }
                Some(next) => Cursor { after: Some(next), depth, ..cursor },
                None if sabotage == crate::config::Sabotage::MirrorClockBound => Cursor {
                    since: ports.clock.now(),
                    after: None,
                    high: cursor.high,
                    ended_at: ports.clock.now(),
                    depth: 0,
                },
                None => {
                    let since = restart.max(cursor.since);
                    Cursor { since, after: None, high: cursor.high, ended_at: ports.clock.now(), depth: 0 }
                }
            };
            batch.state.push(StateOp {
                scope: CURSOR_SCOPE.into(),
                key: store.clone(),
                body: Some(serde_json::to_string(&cursor).expect("a cursor serializes")),
                event: None,
            });
            ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
            if last {
                read_through.insert(store.clone());
                break;
            }
        }
        if done.stopped.is_some() {
            break;
        }
    }
    done.unread = stores.into_iter().filter(|s| !read_through.contains(s)).collect();
    Ok(done)
}

/// The orders the shop sent that the mirror could not read, by
/// `{store}/{order id}` (a row that does not parse is left out).
pub async fn rejected<S: Store>(store: &S, brand: &crate::ids::BrandId) -> Result<Vec<(String, Rejected)>, JobError> {
    let rows = store.state(brand, REJECTED_SCOPE).await?;
    Ok(rows.into_iter().filter_map(|(k, body)| Some((k, serde_json::from_str(&body).ok()?))).collect())
}

/// Every order the brand's mirror holds, by store and id. A row that does
/// not parse (written by another version) is left out.
pub async fn orders<S: Store>(store: &S, brand: &crate::ids::BrandId) -> Result<Vec<OrderRecord>, JobError> {
    let rows = store.state(brand, ORDERS_SCOPE).await?;
    Ok(rows.into_iter().filter_map(|(_, body)| serde_json::from_str(&body).ok()).collect())
}
