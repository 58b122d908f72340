//! `dlft sandbox serve`: the sim's ads world served over real HTTP with
//! Meta's wire shapes, so the runner can be tried end to end without an
//! account and the live adapter is tested against real HTTP.
//!
//! The world is the sim's own (`dlft_sim::world::AdsWorld`, built from a
//! scenario file's `[world]`) and every request is answered by the sim's own
//! handler (`dlft_sim::hosts::handle_ads`), so the sandbox cannot drift from
//! the world the scenarios test. Its clock is the wall clock: the world
//! starts when the server does.
//!
//! Routes (Graph's, under any version prefix the client adds to its base):
//! - `GET  /{account}/insights?since_ms&until_ms&limit&after`
//! - `POST /{ad}` with `status=PAUSED` (the idempotency key in `x-dlft-idempotency-key`)
//! - `GET  /{ad}?fields=status,effective_status` (`ADSET_PAUSED`,
//!   `CAMPAIGN_PAUSED` when stopped from above); `?fields=adset_id,campaign_id`
//! - `POST /{adset-…|campaign-…}` with `status=PAUSED` or `ACTIVE`, and
//!   `GET` of its status: the levels a kill escalates to
//! - `GET  /ads_archive?search_page_ids=["page-1"]`
//! - `GET  /_truth`: world-side spend, pauses and effects, for tests.
//! - `POST /_launch?losers=N&winners=M`: launches new ads now (drawn like the
//!   world's own), so a long test or demo keeps producing work to do.
//!
//! And a bank with Revolut Business's payout endpoints under `/revolut`
//! (the sim's `BankWorld`: payments settle over 2.5 s; counterparties
//! `cp-1`…`cp-5` with accounts `cpa-1`…`cpa-5`):
//! - `POST /revolut/pay`, `GET /revolut/transactions?request_id&from&to&count`;
//! - `POST /revolut/auth/token` (the refresh grant: a new access token);
//! - `GET  /revolut/_truth`: every transaction and the account's money movements;
//! - `POST /revolut/_expire?token=T`: the token expires now (as Revolut's
//!   do after 40 minutes), for tests of the refresh.
//!
//! And a shop with Shopify's refund semantics under `/shopify` (the sim's
//! `ShopWorld`: 20 orders `gid://shopify/Order/1001`…, each paid by
//! `gid://shopify/OrderTransaction/5001`…; refunds settle over 2.5 s):
//! - `POST /shopify/admin/api/{version}/graphql.json` with
//!   `X-Shopify-Access-Token`: `refundCreate` under `@idempotent(key:)` and
//!   an order's refunds, with the cost extension of a 2,000-point bucket
//!   restoring 100 points a second (THROTTLED when empty);
//! - `GET /shopify/_truth`: every order and every refund;
//! - `POST /shopify/_dispute`: a chargeback on one of its orders, now
//!   (read through `shopifyPaymentsAccount.disputes`);
//! - a customer's latest order by email (`orders(query: "email:…")`): the
//!   orders of the support inbox's customers (`src/sandbox_support.rs`);
//! - the mirror's orders page (`orders(query: "updated_at:>='…'", sortKey:
//!   UPDATED_AT)`): the shop's orders, placed when the sandbox started by
//!   `buyer{n}@shop.example`, each changed again when a refund is made or
//!   settles; the cost is the query's requested cost.
//!
//! And the support loop's vendors: AgentMail under `/agentmail`, Anthropic
//! under `/anthropic`, Gemini under `/gemini` (`src/sandbox_support.rs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use dlft_core::ids::{AdId, IdempotencyKey};
use dlft_core::sense::ads::{AdNode, InsightsQuery, Level};
use dlft_core::time::{Clock, Timestamp};
use dlft_live::SystemClock;
use dlft_sim::bank::{BankConfig, BankWorld};
use dlft_sim::hosts::{ItemFate, handle_ads, handle_pause_batch};
use dlft_sim::rpc::{AdsRequest, HttpReply};
use dlft_sim::run::{rng_for, stream};
use dlft_sim::scenario::Scenario;
use dlft_sim::shop::{ShopConfig, ShopWorld};
use dlft_sim::world::AdsWorld;

#[derive(Clone)]
struct Sandbox {
    world: Arc<Mutex<AdsWorld>>,
    bank: Arc<Mutex<BankWorld>>,
    seed: u64,
    /// Pauses acknowledged without effect (the scenario's `ack_without_effect_pct`),
    /// drawn per pause and per batch item from the platform's stream.
    ack_without_effect_pct: u32,
    rng: Arc<Mutex<rand_chacha::ChaCha8Rng>>,
    /// Access tokens that expired (refused with 401, code 1000).
    expired: Arc<Mutex<std::collections::BTreeSet<String>>>,
    /// Access tokens issued by the refresh grant so far.
    issued: Arc<std::sync::atomic::AtomicU64>,
    shop: Arc<Mutex<ShopWorld>>,
    /// The GraphQL cost bucket: points available, as of when.
    bucket: Arc<Mutex<(f64, Timestamp)>>,
    /// The support inbox's customers: their orders are the shop's records.
    support: crate::sandbox_support::Support,
    /// Orders the mirror's read sends with a malformed total (a test's
    /// bad input, `POST /shopify/_garble`), by id.
    garbled: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

/// The sandbox's GraphQL bucket: 2,000 points, restoring 100 a second
/// (Standard's restore rate; a real shop's bucket size is only known from
/// its replies).
const BUCKET_MAX: f64 = 2_000.0;
const BUCKET_RESTORE: f64 = 100.0;

fn lock(w: &Mutex<AdsWorld>) -> std::sync::MutexGuard<'_, AdsWorld> {
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn reply(r: HttpReply) -> Response {
    let mut resp = (StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(r.body))
        .into_response();
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (k.parse::<axum::http::HeaderName>(), v.parse()) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

fn graph_error(status: u16, code: i64, message: &str) -> Response {
    reply(HttpReply {
        status,
        headers: BTreeMap::new(),
        body: json!({"error": {"message": message, "type": "OAuthException", "code": code,
                               "is_transient": false, "fbtrace_id": "sandbox"}}),
    })
}

/// Graph refuses a request without a token (code 190); any token is accepted.
fn authorized(headers: &HeaderMap, query: &BTreeMap<String, String>) -> bool {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.len() > "Bearer ".len());
    bearer || query.get("access_token").is_some_and(|t| !t.is_empty())
}

impl Sandbox {
    fn serve(&self, req: AdsRequest) -> Response {
        use rand::Rng;
        let now = SystemClock.now();
        let mut rng = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ack_only = || rng.random_range(0..100u32) < self.ack_without_effect_pct;
        let mut world = lock(&self.world);
        if let AdsRequest::PauseBatch { items } = &req {
            let fates: Vec<ItemFate> =
                items.iter().map(|_| if ack_only() { ItemFate::AckWithoutEffect } else { ItemFate::Pause }).collect();
            return reply(handle_pause_batch(&mut world, items, now, &fates));
        }
        let ack = matches!(req, AdsRequest::Pause { .. }) && ack_only();
        reply(handle_ads(&mut world, &req, now, ack))
    }
}

async fn insights(
    State(sb): State<Sandbox>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if !authorized(&headers, &q) {
        return graph_error(400, 190, "Invalid OAuth access token.");
    }
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
    let (Some(since), Some(until)) = (num("since_ms"), num("until_ms")) else {
        return graph_error(400, 100, "(#100) the sandbox needs since_ms and until_ms");
    };
    let query = InsightsQuery {
        since: Timestamp(since),
        until: Timestamp(until),
        after: q.get("after").cloned(),
        limit: num("limit").unwrap_or(25).clamp(1, 5_000) as u32,
    };
    // A one-account world ignores the account; a world of several brands
    // serves the one named (`/{brand}/insights`).
    sb.serve(AdsRequest::Insights { account: Some(account), query })
}

async fn ad_get(
    State(sb): State<Sandbox>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if !authorized(&headers, &q) {
        return graph_error(400, 190, "Invalid OAuth access token.");
    }
    if id == "ads_archive" {
        let page = q
            .get("search_page_ids")
            .and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
            .and_then(|v| v.into_iter().next());
        let Some(page) = page else { return graph_error(400, 100, "(#100) search_page_ids is required") };
        return sb.serve(AdsRequest::Library { page });
    }
    if let Some(node) = node_of(&id) {
        return sb.serve(AdsRequest::NodeStatus { node });
    }
    if q.get("fields").is_some_and(|f| f.contains("adset_id")) {
        return sb.serve(AdsRequest::Parents { ad: AdId::new(id) });
    }
    sb.serve(AdsRequest::Status { ad: AdId::new(id) })
}

/// An ad set (`adset-…`) or campaign (`campaign-…`) id of the sandbox's world.
fn node_of(id: &str) -> Option<AdNode> {
    let level = if id.starts_with("adset-") {
        Level::AdSet
    } else if id.starts_with("campaign-") {
        Level::Campaign
    } else {
        return None;
    };
    Some(AdNode { level, id: id.to_string() })
}

async fn ad_post(
    State(sb): State<Sandbox>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    if !authorized(&headers, &form) {
        return graph_error(400, 190, "Invalid OAuth access token.");
    }
    let key = headers.get(dlft_live::meta::IDEMPOTENCY_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("none");
    if let Some(node) = node_of(&id) {
        let paused = match form.get("status").map(String::as_str) {
            Some("PAUSED") => true,
            Some("ACTIVE") => false,
            _ => return graph_error(400, 100, "(#100) an ad set or campaign takes status=PAUSED or ACTIVE"),
        };
        return sb.serve(AdsRequest::SetNode { node, paused, key: IdempotencyKey::new(key) });
    }
    if form.get("status").map(String::as_str) != Some("PAUSED") {
        return graph_error(400, 100, "(#100) the sandbox supports status=PAUSED only");
    }
    sb.serve(AdsRequest::Pause { ad: AdId::new(id), key: IdempotencyKey::new(key) })
}

/// Meta's batch API, for pauses only: `POST /` with `batch=[…]`.
async fn batch(State(sb): State<Sandbox>, headers: HeaderMap, Form(form): Form<BTreeMap<String, String>>) -> Response {
    if !authorized(&headers, &form) {
        return graph_error(400, 190, "Invalid OAuth access token.");
    }
    let Some(text) = form.get("batch") else { return graph_error(400, 100, "(#100) the batch parameter is required") };
    match dlft_core::sense::wire::meta::parse_pause_batch(text) {
        Ok(items) => sb.serve(AdsRequest::PauseBatch { items }),
        Err(e) => graph_error(400, 100, &format!("(#100) {e}")),
    }
}

/// The world's side of the story, for tests: what each ad spent, whether and
/// when it was paused, and every pause that changed the world.
async fn truth(State(sb): State<Sandbox>) -> Response {
    let now = SystemClock.now();
    let mut w = lock(&sb.world);
    w.advance_to(now);
    let start = w.start();
    let specs: Vec<_> = w.specs().cloned().collect();
    let ads: Vec<Value> = specs
        .iter()
        .map(|s| {
            json!({
                "ad": s.id.as_str(),
                // The ad account (brand) in a world of several; null in a one-account world.
                "account": w.account_of(&s.id),
                "loser": s.loser,
                "launched_at": w.launched_at(&s.id).map(|t| t.0),
                "spend_cents": w.spend_between(&s.id, start, now),
                "paused_at": w.paused_at(&s.id).map(|t| t.0),
                "paused_itself": w.paused_itself(&s.id),
            })
        })
        .collect();
    let effects: Vec<Value> =
        w.effects().iter().map(|e| json!({"key": e.key.as_str(), "ad": e.ad.as_str(), "at": e.at.0})).collect();
    let node_effects: Vec<Value> = w
        .node_effects()
        .iter()
        .map(|e| json!({"key": e.key.as_str(), "node": e.node.id, "paused": e.paused, "at": e.at.0}))
        .collect();
    let paused_nodes: Vec<&str> = w.paused_nodes().iter().map(|n| n.id.as_str()).collect();
    axum::Json(json!({
        "seed": sb.seed,
        "now": now.0,
        "start": start.0,
        "bucket_ms": w.bucket().0,
        "ads": ads,
        "effects": effects,
        "node_effects": node_effects,
        "paused_nodes": paused_nodes,
    }))
    .into_response()
}

/// `POST /_launch?losers=N&winners=M`: new ads, delivering from now.
async fn launch(State(sb): State<Sandbox>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let count = |k: &str| -> Result<u32, String> {
        q.get(k).map_or(Ok(0), |v| v.parse::<u32>().map_err(|_| format!("{k}={v:?} is not a count")))
    };
    let (losers, winners) = match (count("losers"), count("winners")) {
        (Ok(l), Ok(w)) => (l, w),
        (Err(e), _) | (_, Err(e)) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let now = SystemClock.now();
    match lock(&sb.world).launch(losers, winners, now) {
        Ok(ids) => {
            let ids: Vec<&str> = ids.iter().map(AdId::as_str).collect();
            axum::Json(json!({"launched": ids, "at": now.0})).into_response()
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e).into_response(),
    }
}

fn bank_lock(b: &Mutex<BankWorld>) -> std::sync::MutexGuard<'_, BankWorld> {
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn revolut_error(status: StatusCode, code: i64, message: &str) -> Response {
    (status, axum::Json(json!({"code": code, "message": message}))).into_response()
}

/// Revolut refuses a request without a bearer token, or with an expired
/// one (401, code 1000).
fn bank_authorized(sb: &Sandbox, headers: &HeaderMap) -> Option<Response> {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let expired = |t: &str| sb.expired.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(t);
    let ok = token.is_some_and(|t| !t.is_empty() && !expired(t));
    (!ok).then(|| revolut_error(StatusCode::UNAUTHORIZED, 1000, "Invalid or expired token"))
}

/// Revolut's refresh grant: a refresh token, a client id and a client
/// assertion (not verified here) buy a new access token.
async fn revolut_token(State(sb): State<Sandbox>, Form(form): Form<BTreeMap<String, String>>) -> Response {
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "refresh_token" {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "unsupported_grant_type"}))).into_response();
    }
    let assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    if field("refresh_token").is_empty()
        || field("client_id").is_empty()
        || field("client_assertion").is_empty()
        || field("client_assertion_type") != assertion_type
    {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_request"}))).into_response();
    }
    let n = sb.issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    axum::Json(json!({"access_token": format!("sandbox-access-{n}"), "token_type": "bearer", "expires_in": 2399}))
        .into_response()
}

/// Test hook: `token` expires now.
async fn revolut_expire(State(sb): State<Sandbox>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let Some(token) = q.get("token") else { return (StatusCode::BAD_REQUEST, "token=…").into_response() };
    sb.expired.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(token.clone());
    StatusCode::NO_CONTENT.into_response()
}

async fn revolut_pay(State(sb): State<Sandbox>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    use dlft_core::sense::bank::BankError;
    use dlft_core::sense::wire::revolut::{TransferResponse, decode_payment, iso_of};
    if let Some(r) = bank_authorized(&sb, &headers) {
        return r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return revolut_error(StatusCode::BAD_REQUEST, 2101, "the body is not JSON");
    };
    let payment = match decode_payment(&body) {
        Ok(p) => p,
        Err(e) => return revolut_error(StatusCode::BAD_REQUEST, 2101, &e),
    };
    let now = SystemClock.now();
    match bank_lock(&sb.bank).pay(&payment, now) {
        Ok(r) => axum::Json(TransferResponse { id: r.id, state: r.state, created_at: iso_of(now), completed_at: None })
            .into_response(),
        Err(BankError::DuplicateRequest) => revolut_error(
            StatusCode::BAD_REQUEST,
            dlft_core::sense::wire::revolut::DUPLICATE_REQUEST,
            &format!("Duplicate request: {}", payment.request_id),
        ),
        Err(BankError::Rejected { code, message }) => revolut_error(StatusCode::BAD_REQUEST, code, &message),
        Err(e) => revolut_error(StatusCode::INTERNAL_SERVER_ERROR, 0, &e.to_string()),
    }
}

async fn revolut_transactions(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    use dlft_core::sense::wire::revolut::{TRANSACTIONS_SPAN, encode_transaction, instant_of};
    if let Some(r) = bank_authorized(&sb, &headers) {
        return r;
    }
    let now = SystemClock.now();
    let from = match q.get("from").map(|f| instant_of(f)) {
        Some(Ok(t)) => t,
        Some(Err(e)) => return revolut_error(StatusCode::BAD_REQUEST, 2101, &e),
        None if q.contains_key("request_id") => {
            return revolut_error(StatusCode::BAD_REQUEST, 2101, "`from` is required with `request_id`");
        }
        None => Timestamp(0),
    };
    let to = match q.get("to").map(|t| instant_of(t)) {
        Some(Ok(t)) => t,
        Some(Err(e)) => return revolut_error(StatusCode::BAD_REQUEST, 2101, &e),
        None => now,
    };
    if q.contains_key("request_id") && to.since(from) > TRANSACTIONS_SPAN {
        return revolut_error(StatusCode::BAD_REQUEST, 2101, "the span from `from` to `to` is over 14 days");
    }
    let count = q.get("count").and_then(|c| c.parse::<usize>().ok()).unwrap_or(100).min(1000);
    let bank = bank_lock(&sb.bank);
    let mut rows: Vec<Value> = bank
        .transactions(now)
        .into_iter()
        .filter(|t| t.created_at >= from && t.created_at < to)
        .filter(|t| q.get("request_id").is_none_or(|r| &t.request_id == r))
        .filter_map(|t| {
            let p = bank.payment(&t.id)?;
            serde_json::to_value(encode_transaction(&t, &p.account_id, &p.counterparty_account)).ok()
        })
        .collect();
    rows.reverse(); // newest first, as Revolut lists them
    rows.truncate(count);
    axum::Json(Value::Array(rows)).into_response()
}

async fn revolut_truth(State(sb): State<Sandbox>) -> Response {
    let now = SystemClock.now();
    let bank = bank_lock(&sb.bank);
    let txs: Vec<Value> = bank
        .transactions(now)
        .iter()
        .map(|t| {
            json!({"id": t.id, "request_id": t.request_id, "state": t.state, "amount_minor": t.amount.minor,
                        "currency": t.amount.currency.as_str(), "created_at": t.created_at.0})
        })
        .collect();
    let moves: Vec<Value> = bank
        .movements(now)
        .iter()
        .map(|m| {
            json!({"tx_id": m.tx_id, "request_id": m.request_id, "amount_minor": m.amount.minor,
                        "currency": m.amount.currency.as_str(), "at": m.at.0, "counterparty_id": m.counterparty_id})
        })
        .collect();
    axum::Json(json!({"now": now.0, "transactions": txs, "movements": moves})).into_response()
}

fn shop_lock(w: &Mutex<ShopWorld>) -> std::sync::MutexGuard<'_, ShopWorld> {
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `POST /shopify/admin/api/{version}/graphql.json`.
async fn shopify_graphql(
    State(sb): State<Sandbox>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use dlft_core::sense::wire::shopify::{
        API_VERSION, Asked, MUTATION_COST, ThrottleStatus, cost_extension, decode_request, encode_order_refunds_reply,
        encode_order_reply, encode_refund_create_reply, error_body,
    };
    let json_reply = |status: u16, body: Value| {
        (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response()
    };
    if headers.get("x-shopify-access-token").and_then(|v| v.to_str().ok()).is_none_or(str::is_empty) {
        return json_reply(
            401,
            json!({ "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)" }),
        );
    }
    if version != API_VERSION {
        return json_reply(
            404,
            json!({ "errors": format!("API version {version} is not served (only {API_VERSION})") }),
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return json_reply(400, error_body("BAD_REQUEST", "the body is not JSON"));
    };
    let asked = match decode_request(&body) {
        Ok(a) => a,
        Err(e) => return json_reply(200, error_body("GRAPHQL_VALIDATION_FAILED", &e)),
    };
    let now = SystemClock.now();
    // The leaky bucket: restored since the last request, then charged.
    let cost = match asked {
        Asked::RefundCreate { .. } => MUTATION_COST,
        Asked::OrderRefunds { .. } | Asked::Order { .. } => 3.0,
        Asked::Disputes { .. } => f64::from(dlft_core::sense::wire::shopify::DISPUTES_PAGE) + 2.0,
        Asked::CustomerOrder { .. } => 5.0,
        Asked::OrdersPage { first, .. } => f64::from(dlft_core::sense::wire::shopify_orders::orders_page_cost(first)),
    };
    // Shopify refuses a query that may cost more than 1,000 points outright.
    if cost > f64::from(dlft_core::sense::wire::shopify_orders::MAX_QUERY_COST) {
        let why = format!("Query cost is {cost}, which exceeds the single query max cost limit (1000).");
        return json_reply(200, error_body("MAX_COST_EXCEEDED", &why));
    }
    let status = {
        let mut b = sb.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.0.saturating_sub(b.1.0) as f64 / 1000.0;
        b.0 = (b.0 + elapsed * BUCKET_RESTORE).min(BUCKET_MAX);
        b.1 = now;
        let throttled = b.0 < cost;
        if !throttled {
            b.0 -= cost;
        }
        (
            ThrottleStatus { maximum_available: BUCKET_MAX, currently_available: b.0, restore_rate: BUCKET_RESTORE },
            throttled,
        )
    };
    let mut actual = cost;
    let (code, mut reply) = if status.1 {
        (200, error_body("THROTTLED", "Throttled"))
    } else {
        match asked {
            // The support inbox's customers' orders are in its own shop.
            Asked::RefundCreate { req, key } => encode_refund_create_reply(
                &sb.support
                    .shop_of(&req.order_id, |shop| shop.refund(&req, &key, now))
                    .unwrap_or_else(|| shop_lock(&sb.shop).refund(&req, &key, now)),
            ),
            Asked::OrderRefunds { order_id } => encode_order_refunds_reply(
                &order_id,
                &sb.support
                    .shop_of(&order_id, |shop| shop.order_refunds(&order_id, now))
                    .unwrap_or_else(|| shop_lock(&sb.shop).order_refunds(&order_id, now)),
            ),
            Asked::Order { order_id } => encode_order_reply(
                &sb.support
                    .shop_of(&order_id, |shop| shop.order(&order_id, now))
                    .unwrap_or_else(|| shop_lock(&sb.shop).order(&order_id, now)),
            ),
            Asked::Disputes { after } => {
                let from = after.and_then(|a| a.parse().ok()).unwrap_or(0);
                dlft_core::sense::wire::shopify::encode_disputes_reply(&shop_lock(&sb.shop).disputes, from)
            }
            Asked::CustomerOrder { email } => {
                dlft_core::sense::wire::shopify::encode_customer_order_reply(sb.support.customer_order(&email).as_ref())
            }
            // The mirror's read: the shop's own orders (its search is current).
            Asked::OrdersPage { since, after, first } => {
                match shop_lock(&sb.shop).orders_page(None, since, after.as_deref(), first, now) {
                    Ok((orders, next)) => {
                        use dlft_core::sense::wire::shopify_orders::{
                            encode_orders_page_reply, orders_page_actual_cost,
                        };
                        // Shopify holds the requested cost and refunds what the
                        // query did not use.
                        actual = f64::from(orders_page_actual_cost(&orders));
                        let (status, mut body) = encode_orders_page_reply(&orders, next.as_deref());
                        let garbled = sb.garbled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        let nodes = body.pointer_mut("/data/orders/nodes").and_then(Value::as_array_mut);
                        for node in nodes.into_iter().flatten() {
                            if node["id"].as_str().is_some_and(|id| garbled.contains(id)) {
                                // A third decimal: money that is no euro amount.
                                node["totalPriceSet"]["shopMoney"]["amount"] = json!("80.001");
                            }
                        }
                        (status, body)
                    }
                    Err(e) => (200, error_body("BAD_REQUEST", &e.to_string())),
                }
            }
        }
    };
    let mut status = status.0;
    if actual < cost {
        let mut b = sb.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        b.0 = (b.0 + cost - actual).min(BUCKET_MAX);
        status.currently_available = b.0;
    }
    if let Some(obj) = reply.as_object_mut() {
        obj.insert("extensions".into(), cost_extension(cost, actual, &status));
    }
    json_reply(code, reply)
}

/// `GET /shopify/_truth`: every order and refund, with what is still refundable.
async fn shopify_truth(State(sb): State<Sandbox>) -> Response {
    let now = SystemClock.now();
    let w = shop_lock(&sb.shop);
    let orders: Vec<Value> = w
        .orders()
        .map(|o| {
            json!({"id": o.id, "amount_minor": o.amount.minor, "currency": o.amount.currency.as_str(),
                   "payment_id": o.payment_id, "gateway": o.gateway,
                   "refundable_minor": w.refundable(&o.id, now).map(|m| m.minor)})
        })
        .collect();
    let refunds: Vec<Value> = w
        .refunds()
        .iter()
        .map(|r| {
            json!({"id": r.id, "order_id": r.order_id, "key": r.key, "note": r.note, "amount_minor": r.amount.minor,
                   "parent_id": r.parent_id, "created_at": r.created_at.0})
        })
        .collect();
    axum::Json(json!({"now": now.0, "orders": orders, "refunds": refunds})).into_response()
}

/// `POST /shopify/_dispute` `{order_id, status?, reason?, email?, phone?, address?}`:
/// a chargeback on an order of the shop, initiated now (for tests and demos
/// of the refund profile's block).
/// A test's bad input: the mirror's read sends order `{"order_id"}` with a
/// total of `80.001` from now on (the shop's own records are untouched).
async fn shopify_garble(State(sb): State<Sandbox>, body: axum::body::Bytes) -> Response {
    let Some(id) = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["order_id"].as_str().map(str::to_string))
    else {
        return (StatusCode::BAD_REQUEST, "expected {\"order_id\": \"gid://shopify/Order/…\"}").into_response();
    };
    if !shop_lock(&sb.shop).orders().any(|o| o.id == id) {
        return (StatusCode::NOT_FOUND, format!("no order {id:?}")).into_response();
    }
    sb.garbled.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id);
    StatusCode::NO_CONTENT.into_response()
}

async fn shopify_dispute(State(sb): State<Sandbox>, body: axum::body::Bytes) -> Response {
    use dlft_core::sense::claims::{Customer, Dispute, DisputeStatus};
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not JSON").into_response();
    };
    let text = |f: &str| v.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
    let now = SystemClock.now();
    let mut w = shop_lock(&sb.shop);
    let Some(order) = w.orders().find(|o| o.id == text("order_id")).cloned() else {
        return (StatusCode::NOT_FOUND, format!("no order {:?}", text("order_id"))).into_response();
    };
    let status = match text("status").as_str() {
        "" | "open" => DisputeStatus::Open,
        "won" => DisputeStatus::Won,
        "lost" => DisputeStatus::Lost,
        other => return (StatusCode::BAD_REQUEST, format!("status {other:?}: open, won or lost")).into_response(),
    };
    let id = format!("gid://shopify/ShopifyPaymentsDispute/{}", 700 + w.disputes.len() + 1);
    w.disputes.push(Dispute {
        id: id.clone(),
        store: String::new(),
        order_id: order.id,
        status,
        reason: if text("reason").is_empty() { "fraudulent".into() } else { text("reason") },
        amount: order.amount,
        customer: Customer {
            email: text("email"),
            phone: text("phone"),
            address: text("address"),
            card: String::new(),
        },
        initiated_at: now,
    });
    axum::Json(json!({ "id": id, "at": now.0 })).into_response()
}

/// Serves until the process is stopped. Prints `listening on ADDR` once bound.
pub async fn serve(scenario: &Scenario, seed: u64, addr: SocketAddr) -> Result<()> {
    let start = SystemClock.now();
    let world = AdsWorld::new(scenario, start, rng_for(seed, stream::WORLD));
    let mut bank = BankWorld::new(BankConfig::default(), rng_for(seed, stream::BANK));
    for i in 1..=5 {
        bank.add_counterparty(&format!("cp-{i}"), &format!("cpa-{i}"));
    }
    let support = crate::sandbox_support::Support::new(seed);
    let sb = Sandbox {
        support: support.clone(),
        world: Arc::new(Mutex::new(world)),
        bank: Arc::new(Mutex::new(bank)),
        seed,
        ack_without_effect_pct: scenario.platform.ack_without_effect_pct,
        rng: Arc::new(Mutex::new(rng_for(seed, stream::PLATFORM))),
        expired: Arc::default(),
        issued: Arc::default(),
        shop: Arc::new(Mutex::new({
            let mut shop = ShopWorld::new(ShopConfig::default(), rng_for(seed, stream::SHOP));
            shop.placed_at(start);
            shop
        })),
        bucket: Arc::new(Mutex::new((BUCKET_MAX, start))),
        garbled: Arc::default(),
    };
    let app = Router::new()
        .route("/shopify/admin/api/{version}/graphql.json", post(shopify_graphql))
        .route("/shopify/_truth", get(shopify_truth))
        .route("/_truth", get(truth))
        .route("/_launch", post(launch))
        .route("/shopify/_dispute", post(shopify_dispute))
        .route("/shopify/_garble", post(shopify_garble))
        .route("/revolut/pay", post(revolut_pay))
        .route("/revolut/transactions", get(revolut_transactions))
        .route("/revolut/_truth", get(revolut_truth))
        .route("/revolut/auth/token", post(revolut_token))
        .route("/revolut/_expire", post(revolut_expire))
        .route("/", post(batch))
        .route("/{account}/insights", get(insights))
        .route("/{id}", get(ad_get).post(ad_post))
        .with_state(sb)
        .merge(crate::sandbox_support::router(support))
        .merge(crate::sandbox_track::router(crate::sandbox_track::Parcels::new(seed, start)));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr()?;
    println!("listening on {bound}");
    axum::serve(listener, app).await.context("serving")?;
    Ok(())
}
