//! The sandbox's support world: an AgentMail inbox and two text model
//! vendors (Anthropic's Messages API, Gemini's `generateContent`) answered
//! by the sim's own inbox (`dlft_sim::inbox::BrandInbox`) and model vendor
//! (`dlft_sim::support::SimModel`), over real HTTP with the vendors' wire
//! shapes, so the live adapters are tested against them and `dlft run`
//! answers a support inbox end to end without an account.
//!
//! Routes:
//! - `GET  /agentmail/v0/inboxes/{inbox}/threads?limit&page_token`
//! - `GET  /agentmail/v0/inboxes/{inbox}/threads/{thread_id}`
//! - `POST /agentmail/v0/inboxes/{inbox}/messages/{message_id}/reply` `{text}`
//!   (no idempotency key, as AgentMail's);
//! - `POST /agentmail/_write` `{text, total?, shipment?, risk?}`: a customer
//!   writes now (for tests and demos); their order is the shop's record,
//!   read through the Shopify endpoint's `orders(query: "email:…")`, and
//!   refunded through its `order` and `refundCreate` (the inbox's own shop);
//!   `{text, thread}`: the thread's customer writes in it again;
//! - `GET  /agentmail/_truth`: every message, every reply sent, every bill,
//!   every refund of the inbox's shop;
//! - `POST /anthropic/v1/messages` (`x-api-key`), `POST /gemini/v1beta/models/{model}:generateContent`
//!   (`x-goog-api-key`): the sim vendor (honest; `compromised` when the
//!   model id says so) answers the forced tool / the response schema, and
//!   bills each call under its `x-dlft-call-id`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use dlft_core::ids::BrandId;
use dlft_core::money::{Currency, Money};
use dlft_core::propose::support::{UNTRUSTED_CLOSE, UNTRUSTED_OPEN};
use dlft_core::sense::claims::Tracking;
use dlft_core::sense::models::{ModelError, Prompt};
use dlft_core::sense::shop::{CustomerOrder, RiskLevel};
use dlft_core::sense::wire::revolut::iso_of;
use dlft_core::time::Clock;
use dlft_live::SystemClock;
use dlft_sim::inbox::BrandInbox;
use dlft_sim::support::{Behaviour, SimModel};

/// The sandbox inbox's own address (what replies are sent from).
pub const ADDRESS: &str = "support@example-shop.com";

struct World {
    inbox: BrandInbox,
    bills: Vec<Value>,
    calls: u64,
}

/// The sandbox's support world, shared with its Shopify endpoint (which
/// answers a customer's latest order from it).
#[derive(Clone)]
pub struct Support {
    world: Arc<Mutex<World>>,
    seed: u64,
}

impl Support {
    pub fn new(seed: u64) -> Support {
        Support {
            world: Arc::new(Mutex::new(World { inbox: BrandInbox::empty(Currency::EUR), bills: Vec::new(), calls: 0 })),
            seed,
        }
    }

    /// The latest order of the customer who writes from `email` (what may
    /// still be refunded as the shop shows it now).
    pub fn customer_order(&self, email: &str) -> Option<CustomerOrder> {
        let w = lock(&self.world);
        let now = SystemClock.now();
        w.inbox.customer(email).map(|c| CustomerOrder {
            refundable: w.inbox.shop.refundable(&c.order.id, now).unwrap_or(c.order.refundable),
            ..c.order.clone()
        })
    }

    /// The shop the inbox's customers bought from, if it holds `order_id`
    /// (the Shopify endpoint serves those orders and their refunds from it).
    pub fn shop_of<R>(&self, order_id: &str, f: impl FnOnce(&mut dlft_sim::shop::ShopWorld) -> R) -> Option<R> {
        let mut w = lock(&self.world);
        w.inbox.shop.has_order(order_id).then(|| f(&mut w.inbox.shop))
    }
}

fn lock(w: &Mutex<World>) -> std::sync::MutexGuard<'_, World> {
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn brand() -> BrandId {
    BrandId::default()
}

/// The support routes, merged into the sandbox's router.
pub fn router(s: Support) -> Router {
    Router::new()
        .route("/agentmail/v0/inboxes/{inbox}/threads", get(threads))
        .route("/agentmail/v0/inboxes/{inbox}/threads/{thread}", get(thread))
        .route("/agentmail/v0/inboxes/{inbox}/messages/{message}/reply", post(reply))
        .route("/agentmail/_write", post(write))
        .route("/agentmail/_truth", get(truth))
        .route("/anthropic/v1/messages", post(anthropic))
        .route("/gemini/v1beta/models/{call}", post(gemini))
        .with_state(s)
}

fn agentmail_error(status: StatusCode, name: &str, message: &str) -> Response {
    (status, axum::Json(json!({ "name": name, "message": message }))).into_response()
}

fn bearer(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| !t.trim().is_empty())
}

fn message_json(m: &dlft_core::sense::inbox::MailMessage) -> Value {
    json!({
        "message_id": m.message_id,
        "from": m.from,
        "text": m.text,
        "extracted_text": m.text,
        "in_reply_to": m.in_reply_to,
        "timestamp": iso_of(m.timestamp),
    })
}

async fn threads(
    State(s): State<Support>,
    headers: HeaderMap,
    Path(_inbox): Path<String>,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
) -> Response {
    if !bearer(&headers) {
        return agentmail_error(StatusCode::UNAUTHORIZED, "UnauthorizedError", "a bearer token is required");
    }
    let w = lock(&s.world);
    match w.inbox.threads(q.get("page_token").map(String::as_str), SystemClock.now()) {
        Ok(page) => axum::Json(json!({
            "count": page.threads.len(),
            "limit": dlft_sim::inbox::PAGE,
            "next_page_token": page.next_page_token,
            "threads": page.threads.iter().map(|t| json!({
                "thread_id": t.thread_id,
                "message_count": t.message_count,
                "updated_at": iso_of(t.updated_at),
                "senders": [],
                "preview": "",
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => agentmail_error(StatusCode::BAD_REQUEST, "ValidationError", &e.to_string()),
    }
}

async fn thread(State(s): State<Support>, headers: HeaderMap, Path((_inbox, id)): Path<(String, String)>) -> Response {
    if !bearer(&headers) {
        return agentmail_error(StatusCode::UNAUTHORIZED, "UnauthorizedError", "a bearer token is required");
    }
    let w = lock(&s.world);
    let messages = w.inbox.thread(&id, SystemClock.now());
    if messages.is_empty() {
        return agentmail_error(StatusCode::NOT_FOUND, "NotFoundError", &format!("thread {id} not found"));
    }
    axum::Json(json!({ "thread_id": id, "messages": messages.iter().map(message_json).collect::<Vec<_>>() }))
        .into_response()
}

async fn reply(
    State(s): State<Support>,
    headers: HeaderMap,
    Path((_inbox, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if !bearer(&headers) {
        return agentmail_error(StatusCode::UNAUTHORIZED, "UnauthorizedError", "a bearer token is required");
    }
    let Some(text) = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["text"].as_str().map(str::to_string))
    else {
        return agentmail_error(StatusCode::BAD_REQUEST, "ValidationError", "a JSON body with `text` is required");
    };
    let mut w = lock(&s.world);
    match w.inbox.send(ADDRESS, &id, &text, SystemClock.now()) {
        Ok(sent) => axum::Json(json!({ "message_id": sent.message_id, "thread_id": sent.thread_id })).into_response(),
        Err(e) => agentmail_error(StatusCode::NOT_FOUND, "NotFoundError", &e.to_string()),
    }
}

/// `{text, total?: "49.90", shipment?: delivered|in_transit|lost, risk?: low|medium|high}`.
async fn write(State(s): State<Support>, body: axum::body::Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "a JSON body is required").into_response();
    };
    let Some(text) = v["text"].as_str() else {
        return (StatusCode::BAD_REQUEST, "`text` is required").into_response();
    };
    let total = match Money::parse_decimal(v["total"].as_str().unwrap_or("49.90"), Currency::EUR) {
        Ok(m) if m.minor > 0 => m,
        _ => return (StatusCode::BAD_REQUEST, "`total` must be a positive decimal").into_response(),
    };
    let tracking = match v["shipment"].as_str().unwrap_or("delivered") {
        "delivered" => Tracking::Delivered,
        "in_transit" => Tracking::Moving,
        "lost" => Tracking::Lost,
        other => return (StatusCode::BAD_REQUEST, format!("unknown shipment {other:?}")).into_response(),
    };
    let risk = match v["risk"].as_str().unwrap_or("low") {
        "low" => RiskLevel::Low,
        "medium" => RiskLevel::Medium,
        "high" => RiskLevel::High,
        other => return (StatusCode::BAD_REQUEST, format!("unknown risk {other:?}")).into_response(),
    };
    let mut w = lock(&s.world);
    // A follow-up in a thread of the customer's: the same customer writes again.
    if let Some(thread) = v["thread"].as_str() {
        return match w.inbox.write_in(&brand(), thread, text, SystemClock.now()) {
            Some(written) => axum::Json(json!({
                "message_id": written.message.message_id,
                "thread_id": written.thread,
                "email": written.message.from,
            }))
            .into_response(),
            None => (StatusCode::NOT_FOUND, format!("no thread {thread:?}")).into_response(),
        };
    }
    let id = format!("{}", 7_000 + w.inbox.written.len());
    let order = CustomerOrder { id, total, refundable: total, tracking, risk };
    let written = w.inbox.write(&brand(), text, order, SystemClock.now());
    axum::Json(json!({
        "message_id": written.message.message_id,
        "thread_id": written.thread,
        "email": written.message.from,
    }))
    .into_response()
}

async fn truth(State(s): State<Support>) -> Response {
    let w = lock(&s.world);
    axum::Json(json!({
        "messages": w.inbox.written.iter().map(|x| json!({
            "message_id": x.message.message_id,
            "thread_id": x.thread,
            "from": x.message.from,
            "order": w.inbox.customers[x.customer].order,
        })).collect::<Vec<_>>(),
        "replies": w.inbox.sent.iter().map(|x| json!({
            "to": x.to, "thread_id": x.thread, "text": x.message.text, "message_id": x.message.message_id,
        })).collect::<Vec<_>>(),
        "bills": w.bills,
        "refunds": w.inbox.shop.refunds().iter().map(|r| json!({
            "order_id": r.order_id, "amount": r.amount.to_string(), "note": r.note, "key": r.key,
        })).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// The prompt back out of the vendors' request: the system text and the
/// user turn `Facts (trusted):\n{facts}\n\n{customer}…`.
fn prompt_of(system: &str, user: &str) -> Option<Prompt> {
    let rest = user.strip_prefix("Facts (trusted):\n")?;
    let open = rest.find(UNTRUSTED_OPEN)?;
    let close = rest.find(UNTRUSTED_CLOSE)? + UNTRUSTED_CLOSE.len();
    Some(Prompt {
        system: system.to_string(),
        facts: rest[..open].trim_end().to_string(),
        customer: rest.get(open..close)?.to_string(),
        schema: String::new(),
        repairs: Vec::new(),
    })
}

/// The sim vendor's answer to one call, billed under its call id.
fn answer(
    s: &Support,
    vendor: &str,
    model: &str,
    headers: &HeaderMap,
    prompt: &Prompt,
) -> Result<(String, u32, u32), ModelError> {
    let behaviour = if model.contains("compromised") { Behaviour::Compromised } else { Behaviour::Honest };
    let mut w = lock(&s.world);
    w.calls += 1;
    let call_id = headers
        .get("x-dlft-call-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| format!("call-{}", w.calls), str::to_string);
    let c = SimModel::new(behaviour, s.seed).answer(&call_id, prompt)?;
    w.bills.push(json!({
        "call_id": call_id, "vendor": vendor, "model": model,
        "input_tokens": c.input_tokens, "output_tokens": c.output_tokens,
    }));
    Ok((c.raw, c.input_tokens, c.output_tokens))
}

async fn anthropic(State(s): State<Support>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let error = |status: StatusCode, kind: &str, message: &str| {
        (status, axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}}))).into_response()
    };
    if headers.get("x-api-key").is_none_or(|k| k.is_empty()) {
        return error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid x-api-key");
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "the body is not JSON");
    };
    let model = v["model"].as_str().unwrap_or_default().to_string();
    let user = v.pointer("/messages/0/content").and_then(Value::as_str).unwrap_or_default();
    let Some(prompt) = prompt_of(v["system"].as_str().unwrap_or_default(), user) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "no facts and customer message in the user turn",
        );
    };
    match answer(&s, "anthropic", &model, &headers, &prompt) {
        Ok((raw, input, output)) => {
            // The forced tool's input is an object; a malformed answer is
            // one the caller's validator refuses.
            let input_json = serde_json::from_str::<Value>(&raw)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({ "raw": raw }));
            axum::Json(json!({
                "id": "msg_sandbox", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "tool_use", "id": "toolu_sandbox", "name": "propose", "input": input_json}],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": input, "output_tokens": output},
            }))
            .into_response()
        }
        Err(ModelError::Timeout) => {
            error(StatusCode::from_u16(529).expect("a status"), "overloaded_error", "Overloaded (sandbox timeout)")
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_request_error", &e.to_string()),
    }
}

async fn gemini(
    State(s): State<Support>,
    headers: HeaderMap,
    Path(call): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let error = |status: StatusCode, code: &str, message: &str| {
        (status, axum::Json(json!({"error": {"code": status.as_u16(), "status": code, "message": message}})))
            .into_response()
    };
    if headers.get("x-goog-api-key").is_none_or(|k| k.is_empty()) {
        return error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "API key not valid");
    }
    let Some(model) = call.strip_suffix(":generateContent") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", &format!("no method {call}"));
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "the body is not JSON");
    };
    let system = v.pointer("/systemInstruction/parts/0/text").and_then(Value::as_str).unwrap_or_default();
    let user = v.pointer("/contents/0/parts/0/text").and_then(Value::as_str).unwrap_or_default();
    let Some(prompt) = prompt_of(system, user) else {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "no facts and customer message in the user turn");
    };
    match answer(&s, "gemini", model, &headers, &prompt) {
        Ok((raw, input, output)) => axum::Json(json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": raw}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": input, "candidatesTokenCount": output},
            "modelVersion": model,
        }))
        .into_response(),
        Err(ModelError::Timeout) => error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "The model is overloaded."),
        Err(e) => error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &e.to_string()),
    }
}
