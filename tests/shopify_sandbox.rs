//! The live Shopify adapter (reqwest) against the sandbox's Admin GraphQL
//! endpoint, over real HTTP, both built on the same wire shapes and the
//! sim's shop: a refund is created under its idempotency key, a repeat of
//! the same request answers with that refund as it stands and makes no
//! second one, the same key with other details is a parameter mismatch, a
//! refund beyond what the order can refund or to another payment is
//! refused, the read-back finds the refund by its note from pending to
//! success, a request without a token is unauthorized, and the sandbox's
//! truth shows exactly one refund; a burst of mutations is paced by the
//! cost bucket without a single THROTTLED; the mirror's orders pages come
//! by change with their cursor, a settled refund brings its order back,
//! and a query over Shopify's 1,000-point ceiling is refused.

#![allow(clippy::disallowed_methods, reason = "a wall-clock test against a real sandbox")]

use std::time::Duration;

use dlft_core::money::{Currency, Money};
use dlft_core::sense::shop::{RefundRequest, RefundStatus, Shop, ShopError};
use dlft_live::meta::Secret;
use dlft_live::shopify::{ShopifyConfig, ShopifyShop};
use serde_json::Value;

mod common;

fn sandbox() -> (common::Sandbox, String) {
    common::sandbox(4)
}

fn shop(addr: &str, token: &str) -> ShopifyShop {
    ShopifyShop::new(ShopifyConfig {
        base_url: format!("http://{addr}/shopify"),
        token: Secret::new(token.into()),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

async fn truth(addr: &str) -> Value {
    reqwest::get(format!("http://{addr}/shopify/_truth")).await.unwrap().json().await.unwrap()
}

fn request(order: &Value, minor: i64, note: &str) -> RefundRequest {
    RefundRequest {
        order_id: order["id"].as_str().unwrap().into(),
        amount: Money::new(minor, Currency::parse(order["currency"].as_str().unwrap()).unwrap()),
        parent_transaction_id: order["payment_id"].as_str().unwrap().into(),
        gateway: order["gateway"].as_str().unwrap().into(),
        note: note.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_refunds_once_and_reads_back_against_the_sandbox() {
    let (_sb, addr) = sandbox();
    let s = shop(&addr, "sandbox-token");
    let t = truth(&addr).await;
    let order = t["orders"][0].clone();
    let total = order["amount_minor"].as_i64().unwrap();
    let req = request(&order, total / 2, "dlft:refund/default/eu/1001/t-1");

    // The order as the envelope needs it: total, what may be refunded, its payment.
    let before = s.order(&req.order_id).await.unwrap();
    assert_eq!((before.total.minor, before.max_refundable.minor), (total, total));
    assert_eq!(before.payment, Some((req.parent_transaction_id.clone(), req.gateway.clone())));
    assert!(matches!(s.order("gid://shopify/Order/1").await, Err(ShopError::Rejected(_))));

    let first = s.refund(&req, "refund/default/eu/1001/t-1").await.unwrap();
    assert_eq!((first.amount, first.status), (req.amount, RefundStatus::Pending));
    let again = s.refund(&req, "refund/default/eu/1001/t-1").await.unwrap();
    assert_eq!(again.id, first.id, "the same key answers with the same refund, never a second");
    let other = RefundRequest { amount: Money::new(1, req.amount.currency), ..req.clone() };
    assert!(matches!(s.refund(&other, "refund/default/eu/1001/t-1").await, Err(ShopError::ParameterMismatch(_))));

    // What the order can no longer refund, or a refund to another payment: refused, nothing made.
    let too_much = request(&order, total - total / 2 + 1, "dlft:refund/x");
    match s.refund(&too_much, "refund/default/eu/1001/t-2").await {
        Err(ShopError::Rejected(m)) => assert!(m[0].starts_with("transactions.0.amount"), "{m:?}"),
        other => panic!("{other:?}"),
    }
    let elsewhere = RefundRequest { parent_transaction_id: "gid://shopify/OrderTransaction/1".into(), ..req.clone() };
    assert!(matches!(s.refund(&elsewhere, "refund/default/eu/1001/t-3").await, Err(ShopError::Rejected(_))));

    // The read-back finds it by its note, pending, then settled.
    let read = s.order_refunds(&req.order_id).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].note.as_deref(), Some("dlft:refund/default/eu/1001/t-1"));
    tokio::time::sleep(Duration::from_millis(2_700)).await;
    assert_eq!(s.order_refunds(&req.order_id).await.unwrap()[0].status, RefundStatus::Success);
    assert_eq!(s.order(&req.order_id).await.unwrap().max_refundable.minor, total - total / 2, "the bound moved");
    assert!(matches!(s.order_refunds("gid://shopify/Order/1").await, Err(ShopError::Rejected(_))), "no such order");

    // No token: unauthorized, nothing made.
    let anon = shop(&addr, "");
    assert!(matches!(anon.refund(&request(&order, 1, "n"), "k-anon").await, Err(ShopError::Unauthorized(_))));

    let t = truth(&addr).await;
    let refunds = t["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "one refund in the world: {refunds:?}");
    assert_eq!(refunds[0]["parent_id"], order["payment_id"], "to the order's own payment");
    assert_eq!(t["orders"][0]["refundable_minor"].as_i64(), Some(total - total / 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_paced_by_the_cost_bucket_and_never_throttled() {
    // 2,000 points, 10 a mutation, restoring 100 a second: 260 refunds in a
    // burst would drain the bucket after 200; the adapter waits instead.
    let (_sb, addr) = sandbox();
    let s = shop(&addr, "sandbox-token");
    let t = truth(&addr).await;
    let orders: Vec<Value> = t["orders"].as_array().unwrap().clone();
    let started = std::time::Instant::now();
    let mut made = 0;
    for i in 0..260usize {
        let order = &orders[i % orders.len()];
        let req = request(order, 1, &format!("dlft:burst/{i}"));
        match s.refund(&req, &format!("burst/{i}")).await {
            Ok(_) => made += 1,
            Err(e) => panic!("refund {i}: {e}"),
        }
    }
    assert_eq!(made, 260);
    // 60 mutations past the bucket need about 6 s of restoring.
    assert!(started.elapsed() >= Duration::from_secs(4), "paced: {:?}", started.elapsed());
    assert_eq!(truth(&addr).await["refunds"].as_array().unwrap().len(), 260);
}

/// The mirror's read: the sandbox's orders page by page, oldest change
/// first, each read once per pass; a refund moves its order to the end of
/// the next pass, refunded once it settled; a forged cursor is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_pages_the_orders_by_change_and_sees_a_refund() {
    let (_sb, addr) = sandbox();
    let s = shop(&addr, "sandbox-token");
    let t = truth(&addr).await;
    let all = t["orders"].as_array().unwrap().len();
    let since = dlft_core::time::Timestamp(0);
    let (mut seen, mut after, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let page = s.orders_page("eu", since, after.as_deref(), 7).await.unwrap();
        assert!(page.orders.len() <= 7);
        pages += 1;
        seen.extend(page.orders);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (all, all.div_ceil(7)), "every order once, 7 a page");
    assert!(seen.windows(2).all(|w| (w[0].updated_at, &w[0].id) < (w[1].updated_at, &w[1].id)), "by change");
    assert!(seen.iter().all(|o| o.customer.email.ends_with("@shop.example") && o.refunded.minor == 0));
    // A refund of the first order: once it settles, the next pass (from the
    // newest change seen) reads that order again, refunded.
    let order = t["orders"][0].clone();
    let refund = s.refund(&request(&order, 500, "dlft:refund/default/eu/1001/m-1"), "mirror-1").await.unwrap();
    assert_eq!(refund.status, RefundStatus::Pending);
    tokio::time::sleep(Duration::from_millis(2_700)).await;
    let newest = seen.iter().map(|o| o.updated_at).max().unwrap();
    // Asking for more than one query may cost gets the most it may.
    let page = s.orders_page("eu", newest, None, 250).await.unwrap();
    let again = page.orders.iter().find(|o| o.id == order["id"].as_str().unwrap()).expect("the refunded order");
    assert_eq!(again.refunded.minor, 500, "{again:?}");
    assert!(again.updated_at > newest);
    assert!(matches!(s.orders_page("eu", since, Some("forged"), 7).await, Err(ShopError::Rejected(_))));
    // A query over the cost ceiling, sent raw, is refused whole.
    let mut body = dlft_core::sense::wire::shopify_orders::encode_orders_page(since, None, 7);
    body["variables"]["first"] = serde_json::json!(200);
    let raw = reqwest::Client::new()
        .post(format!("http://{addr}/shopify/admin/api/{}/graphql.json", dlft_core::sense::wire::shopify::API_VERSION))
        .header("X-Shopify-Access-Token", "sandbox-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    let raw: Value = raw.json().await.unwrap();
    assert_eq!(raw["errors"][0]["extensions"]["code"], "MAX_COST_EXCEEDED", "{raw}");
    // An order sent with money that is no amount is rejected by itself,
    // named with its field; the page's other orders and its cursor stand.
    let bad = t["orders"][3]["id"].as_str().unwrap().to_string();
    common::garble(&addr, &bad).await;
    let page = s.orders_page("eu", since, None, 7).await.unwrap();
    assert_eq!(page.orders.len() + page.rejected.len(), 7, "{page:?}");
    assert_eq!(page.rejected.len(), 1, "{page:?}");
    assert_eq!(page.rejected[0].id, bad);
    assert!(page.rejected[0].why.contains("totalPriceSet") && page.rejected[0].why.contains(&bad), "{page:?}");
    assert!(page.next.is_some() && !page.orders.iter().any(|o| o.id == bad));
}
