//! Shopify Admin GraphQL wire shapes for refunds (API 2026-10; money.md,
//! live-apis.md): the `refundCreate` mutation under `@idempotent(key:)`
//! (required since 2026-04), an order's refunds for the read-back, a
//! customer's latest order by email (the support loop's trusted record),
//! the cost extension, and the error classes.
//!
//! Money is a decimal string with a currency code (`{"amount": "12.50",
//! "currencyCode": "EUR"}`), converted exactly at this edge; anything with
//! more decimals than the currency has, or that is not a decimal, is refused.
//! A failed mutation is HTTP 200 with `userErrors`; THROTTLED comes as HTTP
//! 200 or 429 and is keyed on its code.

use serde_json::{Value, json};

use crate::money::{Currency, Money};
use crate::sense::claims::{Customer, Dispute, DisputeStatus, Tracking};
use crate::sense::shop::{CustomerOrder, RefundRequest, RefundStatus, RiskLevel, ShopError, ShopOrder, ShopRefund};
use crate::time::{Millis, Timestamp};

/// The API version the adapter speaks.
pub const API_VERSION: &str = "2026-10";

/// The refund mutation. The key is a variable, so the text never changes.
pub const REFUND_CREATE: &str = "mutation RefundCreate($input: RefundInput!, $key: String!) { \
refundCreate(input: $input) @idempotent(key: $key) { \
refund { id note createdAt totalRefundedSet { shopMoney { amount currencyCode } } \
transactions(first: 10) { nodes { id kind status gateway } } } \
userErrors { field message } } }";

/// An order's refunds (Shopify returns them all: `Order.refunds` is a list).
pub const ORDER_REFUNDS: &str = "query OrderRefunds($id: ID!) { order(id: $id) { id \
refunds { id note createdAt totalRefundedSet { shopMoney { amount currencyCode } } \
transactions(first: 10) { nodes { id kind status gateway } } } } }";

/// An order as the refund envelope needs it (`Order.transactions` and
/// `Fulfillment.trackingInfo` are lists), with its parcels' tracking numbers
/// for the shipments sensor.
pub const ORDER: &str = "query Order($id: ID!) { order(id: $id) { id \
totalPriceSet { shopMoney { amount currencyCode } } \
suggestedRefund(suggestFullRefund: true) { maximumRefundableSet { shopMoney { amount currencyCode } } } \
transactions(first: 50) { id kind status gateway } \
fulfillments(first: 10) { trackingInfo(first: 10) { number company } } } }";

/// The body of the order query for `order_id`.
pub fn encode_order(order_id: &str) -> Value {
    json!({ "query": ORDER, "variables": { "id": order_id } })
}

/// The reply to the order query.
pub fn decode_order(status: u16, body: &Value) -> Result<ShopOrder, ShopError> {
    if let Some(e) = classify_errors(status, body) {
        return Err(e);
    }
    let o = body.pointer("/data/order").ok_or_else(|| ShopError::Malformed("no data.order".into()))?;
    if o.is_null() {
        return Err(ShopError::Rejected(vec!["no such order".into()]));
    }
    let bad = ShopError::Malformed;
    let id = o.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| bad("order.id".into()))?;
    let total = money_of(o.pointer("/totalPriceSet/shopMoney").ok_or_else(|| bad("order.totalPriceSet".into()))?)
        .map_err(|e| bad(format!("order {id}: totalPriceSet.shopMoney.{e}")))?;
    let max = money_of(
        o.pointer("/suggestedRefund/maximumRefundableSet/shopMoney")
            .ok_or_else(|| bad("order.suggestedRefund.maximumRefundableSet".into()))?,
    )
    .map_err(|e| bad(format!("order {id}: maximumRefundableSet.shopMoney.{e}")))?;
    if max.currency != total.currency || max.minor < 0 || max.minor > total.minor {
        return Err(bad(format!("order {id}: refundable {max} against a total of {total}")));
    }
    let txs =
        o.get("transactions").and_then(Value::as_array).ok_or_else(|| bad(format!("order {id}: transactions")))?;
    let payment = txs.iter().find_map(|t| {
        let field = |f: &str| t.get(f).and_then(Value::as_str);
        let paid = matches!(field("kind"), Some("SALE" | "CAPTURE")) && field("status") == Some("SUCCESS");
        paid.then(|| Some((field("id")?.to_string(), field("gateway")?.to_string()))).flatten()
    });
    let tracking_numbers = super::shopify_orders::tracking_numbers_of(o);
    Ok(ShopOrder { id: id.to_string(), total, max_refundable: max, payment, tracking_numbers })
}

/// A customer's latest order, found by their email address, with what a
/// support conversation needs: the total, what may still be refunded, the
/// parcels' delivery status and the order's risk assessments.
pub const CUSTOMER_ORDER: &str = "query CustomerOrder($q: String!) { \
orders(first: 1, query: $q, sortKey: CREATED_AT, reverse: true) { nodes { id \
totalPriceSet { shopMoney { amount currencyCode } } \
suggestedRefund(suggestFullRefund: true) { maximumRefundableSet { shopMoney { amount currencyCode } } } \
fulfillments(first: 10) { displayStatus } \
risk { assessments { riskLevel } } } } }";

/// The body of the customer-order query for `email` (Shopify's search
/// syntax, the address quoted).
pub fn encode_customer_order(email: &str) -> Value {
    let quoted: String = email
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    json!({ "query": CUSTOMER_ORDER, "variables": { "q": format!("email:\"{quoted}\"") } })
}

/// The email address a customer-order query searches for (the sandbox's side).
pub fn email_of_query(q: &str) -> Option<String> {
    let inner = q.strip_prefix("email:\"")?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(out)
}

/// The parcels' state from the fulfillments' `displayStatus`: delivered if
/// any was; lost if one failed and none is under way; moving while one is;
/// unknown without any.
fn tracking_of(statuses: &[&str]) -> Tracking {
    let any = |set: &[&str]| statuses.iter().any(|s| set.contains(s));
    if any(&["DELIVERED"]) {
        Tracking::Delivered
    } else if any(&[
        "IN_TRANSIT",
        "OUT_FOR_DELIVERY",
        "ATTEMPTED_DELIVERY",
        "READY_FOR_PICKUP",
        "CONFIRMED",
        "LABEL_PRINTED",
        "LABEL_PURCHASED",
        "FULFILLED",
        "PICKED_UP",
        "MARKED_AS_FULFILLED",
    ]) {
        Tracking::Moving
    } else if any(&["FAILURE", "NOT_DELIVERED", "CANCELED"]) {
        Tracking::Lost
    } else {
        Tracking::Unknown
    }
}

/// The reply to the customer-order query: `None` when the customer has no
/// order. The risk is the highest assessment's (`PENDING` counts as medium:
/// not yet judged is not low).
pub fn decode_customer_order(status: u16, body: &Value) -> Result<Option<CustomerOrder>, ShopError> {
    if let Some(e) = classify_errors(status, body) {
        return Err(e);
    }
    let bad = ShopError::Malformed;
    let nodes = body
        .pointer("/data/orders/nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no data.orders.nodes".into()))?;
    let Some(o) = nodes.first() else { return Ok(None) };
    let id = o.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| bad("order.id".into()))?;
    let total = money_of(o.pointer("/totalPriceSet/shopMoney").ok_or_else(|| bad("order.totalPriceSet".into()))?)
        .map_err(|e| bad(format!("order {id}: totalPriceSet.shopMoney.{e}")))?;
    let refundable = money_of(
        o.pointer("/suggestedRefund/maximumRefundableSet/shopMoney")
            .ok_or_else(|| bad("order.suggestedRefund.maximumRefundableSet".into()))?,
    )
    .map_err(|e| bad(format!("order {id}: maximumRefundableSet.shopMoney.{e}")))?;
    if refundable.currency != total.currency || refundable.minor < 0 || refundable.minor > total.minor {
        return Err(bad(format!("order {id}: refundable {refundable} against a total of {total}")));
    }
    let statuses: Vec<&str> = o
        .get("fulfillments")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(|x| x.get("displayStatus").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    let risk = super::shopify_orders::risk_of(o);
    Ok(Some(CustomerOrder { id: id.to_string(), total, refundable, tracking: tracking_of(&statuses), risk }))
}

/// The reply to the customer-order query as Shopify sends it (the sandbox's side).
pub fn encode_customer_order_reply(order: Option<&CustomerOrder>) -> (u16, Value) {
    let money = |m: &Money| json!({ "shopMoney": { "amount": m.to_decimal(), "currencyCode": m.currency.as_str() } });
    let nodes: Vec<Value> = order
        .map(|o| {
            let status = match o.tracking {
                Tracking::Delivered => vec!["DELIVERED"],
                Tracking::Moving => vec!["IN_TRANSIT"],
                Tracking::Lost => vec!["FAILURE"],
                Tracking::Unknown => vec![],
            };
            let level = match o.risk {
                RiskLevel::Low => "LOW",
                RiskLevel::Medium => "MEDIUM",
                RiskLevel::High => "HIGH",
            };
            json!({
                "id": o.id,
                "totalPriceSet": money(&o.total),
                "suggestedRefund": { "maximumRefundableSet": money(&o.refundable) },
                "fulfillments": status.iter().map(|s| json!({ "displayStatus": s })).collect::<Vec<_>>(),
                "risk": { "assessments": [{ "riskLevel": level }] },
            })
        })
        .into_iter()
        .collect();
    (200, json!({ "data": { "orders": { "nodes": nodes } } }))
}

/// The reply to the order query as Shopify sends it (the sandbox's side).
/// Disputes per page (the query's cost grows with it).
pub const DISPUTES_PAGE: u32 = 50;

const DISPUTES_QUERY: &str = "query Disputes($first: Int!, $after: String) { shopifyPaymentsAccount { \
disputes(first: $first, after: $after) { nodes { id type status reasonDetails { reason } \
amount { amount currencyCode } initiatedAt order { id email phone \
shippingAddress { address1 address2 zip city countryCodeV2 } } } pageInfo { hasNextPage endCursor } } } }";

/// A page of `shopifyPaymentsAccount.disputes`, after `after`.
pub fn encode_disputes(after: Option<&str>) -> Value {
    json!({ "query": DISPUTES_QUERY, "variables": { "first": DISPUTES_PAGE, "after": after } })
}

/// One page of disputes and the cursor of the next, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisputePage {
    pub disputes: Vec<Dispute>,
    pub next: Option<String>,
}

/// Decodes a disputes page of store `store`. Chargebacks only (an inquiry
/// is not one); a status this build does not know counts as open, so an
/// unknown state blocks rather than trusts. A shop without Shopify
/// Payments (`shopifyPaymentsAccount: null`) has none.
pub fn decode_disputes(status: u16, body: &Value, store: &str) -> Result<DisputePage, ShopError> {
    if let Some(e) = classify_errors(status, body) {
        return Err(e);
    }
    let bad = ShopError::Malformed;
    let account =
        body.pointer("/data/shopifyPaymentsAccount").ok_or_else(|| bad("no data.shopifyPaymentsAccount".into()))?;
    if account.is_null() {
        return Ok(DisputePage { disputes: Vec::new(), next: None });
    }
    let conn = account.get("disputes").ok_or_else(|| bad("shopifyPaymentsAccount.disputes".into()))?;
    let nodes = conn.get("nodes").and_then(Value::as_array).ok_or_else(|| bad("disputes.nodes".into()))?;
    let mut disputes = Vec::new();
    for (i, d) in nodes.iter().enumerate() {
        let text = |f: &str| d.get(f).and_then(Value::as_str).unwrap_or_default();
        let id = text("id");
        if id.is_empty() {
            return Err(bad(format!("disputes.nodes.{i}.id: missing")));
        }
        if text("type") == "INQUIRY" {
            continue;
        }
        let status = match text("status") {
            "WON" => DisputeStatus::Won,
            "LOST" | "ACCEPTED" | "CHARGE_REFUNDED" => DisputeStatus::Lost,
            _ => DisputeStatus::Open,
        };
        let amount = money_of(d.get("amount").ok_or_else(|| bad(format!("dispute {id}: amount")))?)
            .map_err(|e| bad(format!("dispute {id}: amount.{e}")))?;
        let initiated_at = crate::sense::wire::revolut::instant_of(text("initiatedAt"))
            .map_err(|e| bad(format!("dispute {id}: initiatedAt: {e}")))?;
        let order = d.get("order").filter(|o| !o.is_null());
        let field = |f: &str| order.and_then(|o| o.get(f)).and_then(Value::as_str).unwrap_or_default().to_string();
        let address = super::shopify_orders::address_line(order.and_then(|o| o.get("shippingAddress")));
        disputes.push(Dispute {
            id: id.to_string(),
            store: store.to_string(),
            order_id: field("id"),
            status,
            reason: d.pointer("/reasonDetails/reason").and_then(Value::as_str).unwrap_or_default().to_lowercase(),
            amount,
            customer: Customer { email: field("email"), phone: field("phone"), address, card: String::new() },
            initiated_at,
        });
    }
    let more = conn.pointer("/pageInfo/hasNextPage").and_then(Value::as_bool).unwrap_or(false);
    let next = conn.pointer("/pageInfo/endCursor").and_then(Value::as_str).filter(|_| more).map(str::to_string);
    Ok(DisputePage { disputes, next })
}

/// The sandbox's answer to a disputes page: `disputes` from index `from`.
pub fn encode_disputes_reply(disputes: &[Dispute], from: usize) -> (u16, Value) {
    let page: Vec<Value> = disputes
        .iter()
        .skip(from)
        .take(DISPUTES_PAGE as usize)
        .map(|d| {
            let status = match d.status {
                DisputeStatus::Open => "NEEDS_RESPONSE",
                DisputeStatus::Won => "WON",
                DisputeStatus::Lost => "LOST",
            };
            json!({ "id": d.id, "type": "CHARGEBACK", "status": status,
                    "reasonDetails": { "reason": d.reason.to_uppercase() },
                    "amount": { "amount": d.amount.to_decimal(), "currencyCode": d.amount.currency.as_str() },
                    "initiatedAt": crate::sense::wire::revolut::iso_of(d.initiated_at),
                    "order": { "id": d.order_id, "email": d.customer.email, "phone": d.customer.phone,
                               "shippingAddress": { "address1": d.customer.address } } })
        })
        .collect();
    let end = from + page.len();
    let more = end < disputes.len();
    (
        200,
        json!({ "data": { "shopifyPaymentsAccount": { "disputes": { "nodes": page,
            "pageInfo": { "hasNextPage": more, "endCursor": end.to_string() } } } } }),
    )
}

pub fn encode_order_reply(result: &Result<ShopOrder, ShopError>) -> (u16, Value) {
    let set = |m: &Money| json!({ "shopMoney": { "amount": m.to_decimal(), "currencyCode": m.currency.as_str() } });
    match result {
        Ok(o) => {
            let txs: Vec<Value> = o
                .payment
                .iter()
                .map(|(id, gw)| json!({ "id": id, "kind": "SALE", "status": "SUCCESS", "gateway": gw }))
                .collect();
            let fulfillments: Vec<Value> = o
                .tracking_numbers
                .iter()
                .map(|n| json!({ "trackingInfo": [{ "number": n, "company": "DHL" }] }))
                .collect();
            (
                200,
                json!({ "data": { "order": { "id": o.id, "totalPriceSet": set(&o.total),
                    "suggestedRefund": { "maximumRefundableSet": set(&o.max_refundable) }, "transactions": txs,
                    "fulfillments": fulfillments } } }),
            )
        }
        Err(ShopError::Rejected(_)) => (200, json!({ "data": { "order": null } })),
        Err(e) => error_reply(e),
    }
}

/// The body of `POST /admin/api/2026-10/graphql.json` for a refund.
pub fn encode_refund_create(req: &RefundRequest, key: &str) -> Result<Value, String> {
    if req.amount.minor <= 0 {
        return Err(format!("a refund of {} is not positive", req.amount));
    }
    if key.is_empty() || key.len() > 255 {
        return Err(format!("an idempotency key of {} characters (1..=255)", key.len()));
    }
    Ok(json!({
        "query": REFUND_CREATE,
        "variables": {
            "key": key,
            "input": {
                "orderId": req.order_id,
                "note": req.note,
                "notify": false,
                "currency": req.amount.currency.as_str(),
                "transactions": [{
                    "orderId": req.order_id,
                    "parentId": req.parent_transaction_id,
                    "amount": req.amount.to_decimal(),
                    "gateway": req.gateway,
                    "kind": "REFUND",
                }],
            },
        },
    }))
}

/// The body of the read-back query for `order_id`.
pub fn encode_order_refunds(order_id: &str) -> Value {
    json!({ "query": ORDER_REFUNDS, "variables": { "id": order_id } })
}

/// `extensions.cost.throttleStatus`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleStatus {
    pub maximum_available: f64,
    pub currently_available: f64,
    pub restore_rate: f64,
}

/// The throttle status of a reply, if it carries one.
pub fn throttle_status(body: &Value) -> Option<ThrottleStatus> {
    let t = body.pointer("/extensions/cost/throttleStatus")?;
    Some(ThrottleStatus {
        maximum_available: t.get("maximumAvailable")?.as_f64()?,
        currently_available: t.get("currentlyAvailable")?.as_f64()?,
        restore_rate: t.get("restoreRate")?.as_f64()?,
    })
}

/// The longest wait a throttle status can ask for (a full bucket refills
/// in seconds at every plan's restore rate; more is a garbled reply).
pub const MAX_THROTTLE_WAIT: Millis = Millis(60_000);

/// How long until `cost` points are available again (0 if they are), in
/// whole milliseconds rounded up, at most [`MAX_THROTTLE_WAIT`]. Points are
/// not money: a float is fine here.
pub fn wait_for(cost: f64, status: &ThrottleStatus) -> Millis {
    let missing = cost - status.currently_available;
    if missing.is_nan() || missing <= 0.0 || status.restore_rate.is_nan() || status.restore_rate <= 0.0 {
        return Millis(0);
    }
    Millis(((missing / status.restore_rate * 1000.0).ceil() as u64).min(MAX_THROTTLE_WAIT.0))
}

/// What a mutation costs up front (Shopify: 10 points).
pub const MUTATION_COST: f64 = 10.0;

/// Top-level `errors` of a reply, classified; `None` when there are none.
/// `status` is the HTTP status.
pub fn classify_errors(status: u16, body: &Value) -> Option<ShopError> {
    let errors = body.get("errors").and_then(Value::as_array);
    let codes: Vec<&str> =
        errors.into_iter().flatten().filter_map(|e| e.pointer("/extensions/code").and_then(Value::as_str)).collect();
    let messages: Vec<String> = errors
        .into_iter()
        .flatten()
        .map(|e| e.get("message").and_then(Value::as_str).unwrap_or("(no message)").to_string())
        .collect();
    if codes.contains(&"THROTTLED") || status == 429 {
        let wait = throttle_status(body).map_or(Millis(1000), |t| wait_for(MUTATION_COST, &t).max(Millis(100)));
        return Some(ShopError::Throttled { retry_after: wait });
    }
    if codes.contains(&"IDEMPOTENCY_CONCURRENT_REQUEST") {
        return Some(ShopError::ConcurrentRequest);
    }
    if codes.contains(&"IDEMPOTENCY_KEY_PARAMETER_MISMATCH") {
        return Some(ShopError::ParameterMismatch(messages.join("; ")));
    }
    if status == 401 || status == 403 || codes.contains(&"ACCESS_DENIED") {
        return Some(ShopError::Unauthorized(messages.join("; ")));
    }
    if status >= 500 {
        return Some(ShopError::Server(status));
    }
    if errors.is_some_and(|e| !e.is_empty()) {
        // A query Shopify could not run (a syntax or schema error, a missing
        // @idempotent): nothing was made.
        return Some(ShopError::Rejected(messages));
    }
    if status >= 400 {
        return Some(ShopError::Rejected(vec![format!("HTTP {status}")]));
    }
    None
}

/// The reply to `refundCreate`.
pub fn decode_refund_create(status: u16, body: &Value) -> Result<ShopRefund, ShopError> {
    if let Some(e) = classify_errors(status, body) {
        return Err(e);
    }
    let payload = body
        .pointer("/data/refundCreate")
        .filter(|p| p.is_object())
        .ok_or_else(|| ShopError::Malformed("no data.refundCreate".into()))?;
    let user_errors = payload.get("userErrors").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if !user_errors.is_empty() {
        let msgs = user_errors
            .iter()
            .map(|e| {
                let field = e
                    .get("field")
                    .and_then(Value::as_array)
                    .map(|f| f.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("."));
                let msg = e.get("message").and_then(Value::as_str).unwrap_or("(no message)");
                match field {
                    Some(f) if !f.is_empty() => format!("{f}: {msg}"),
                    _ => msg.to_string(),
                }
            })
            .collect();
        return Err(ShopError::Rejected(msgs));
    }
    match payload.get("refund") {
        Some(r) if r.is_object() => decode_refund(r).map_err(ShopError::Malformed),
        _ => Err(ShopError::Malformed("refundCreate: no refund and no userErrors".into())),
    }
}

/// The reply to the read-back query: every refund of the order.
pub fn decode_order_refunds(status: u16, body: &Value) -> Result<Vec<ShopRefund>, ShopError> {
    if let Some(e) = classify_errors(status, body) {
        return Err(e);
    }
    let order = body.pointer("/data/order").ok_or_else(|| ShopError::Malformed("no data.order".into()))?;
    if order.is_null() {
        return Err(ShopError::Rejected(vec!["no such order".into()]));
    }
    let refunds =
        order.get("refunds").and_then(Value::as_array).ok_or_else(|| ShopError::Malformed("order.refunds".into()))?;
    refunds.iter().map(|r| decode_refund(r).map_err(ShopError::Malformed)).collect()
}

/// `{amount, currencyCode}` as money, exactly.
pub fn money_of(v: &Value) -> Result<Money, String> {
    let amount = v.get("amount").and_then(Value::as_str).ok_or("amount: not a decimal string")?;
    let code = v.get("currencyCode").and_then(Value::as_str).ok_or("currencyCode: missing")?;
    let currency = Currency::parse(code).map_err(|e| format!("currencyCode: {e}"))?;
    Money::parse_decimal(amount, currency).map_err(|e| format!("amount {amount:?}: {e}"))
}

fn decode_refund(r: &Value) -> Result<ShopRefund, String> {
    let id = r.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or("refund.id: missing")?;
    let note = r.get("note").and_then(Value::as_str).map(str::to_string);
    let amount = money_of(r.pointer("/totalRefundedSet/shopMoney").ok_or("refund.totalRefundedSet: missing")?)
        .map_err(|e| format!("refund {id}: totalRefundedSet.shopMoney.{e}"))?;
    if amount.minor < 0 {
        return Err(format!("refund {id}: totalRefundedSet of {amount} is negative"));
    }
    let created = r.get("createdAt").and_then(Value::as_str).ok_or("refund.createdAt: missing")?;
    let created_at =
        crate::sense::wire::revolut::instant_of(created).map_err(|e| format!("refund {id}: createdAt: {e}"))?;
    let nodes = r.pointer("/transactions/nodes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut statuses = Vec::new();
    for n in nodes {
        let s =
            n.get("status").and_then(Value::as_str).ok_or_else(|| format!("refund {id}: a transaction's status"))?;
        statuses.push(match s {
            "SUCCESS" => RefundStatus::Success,
            "PENDING" | "AWAITING_RESPONSE" | "UNKNOWN" => RefundStatus::Pending,
            "FAILURE" | "ERROR" => RefundStatus::Failure,
            other => return Err(format!("refund {id}: unknown transaction status {other:?}")),
        });
    }
    let status = if statuses.contains(&RefundStatus::Failure) {
        RefundStatus::Failure
    } else if statuses.is_empty() || statuses.contains(&RefundStatus::Pending) {
        RefundStatus::Pending
    } else {
        RefundStatus::Success
    };
    Ok(ShopRefund { id: id.to_string(), note, amount, status, created_at })
}

/// What a GraphQL request asks (the sandbox's side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Asked {
    /// `refundCreate` with its idempotency key (empty when the request
    /// carried no `@idempotent` directive: Shopify refuses it at run time).
    RefundCreate {
        req: RefundRequest,
        key: String,
    },
    OrderRefunds {
        order_id: String,
    },
    Order {
        order_id: String,
    },
    /// A page of disputes after the cursor (the sandbox's cursor is an index).
    Disputes {
        after: Option<String>,
    },
    /// A customer's latest order, by email address.
    CustomerOrder {
        email: String,
    },
    /// The mirror's page: orders updated at or after `since`, after the
    /// cursor, `first` of them.
    OrdersPage {
        since: Timestamp,
        after: Option<String>,
        first: u32,
    },
}

/// Decodes a GraphQL request body of the two operations the adapter sends.
pub fn decode_request(body: &Value) -> Result<Asked, String> {
    let query = body.get("query").and_then(Value::as_str).ok_or("query: missing")?;
    let vars = body.get("variables").filter(|v| v.is_object()).ok_or("variables: missing")?;
    if query.contains("refundCreate") {
        let key = if query.contains("@idempotent") {
            vars.get("key").and_then(Value::as_str).unwrap_or_default().to_string()
        } else {
            String::new()
        };
        let input = vars.get("input").ok_or("variables.input: missing")?;
        let text = |v: &Value, f: &str| {
            v.get(f).and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("input.{f}: missing"))
        };
        let order_id = text(input, "orderId")?;
        let note = input.get("note").and_then(Value::as_str).unwrap_or_default().to_string();
        let currency = Currency::parse(&text(input, "currency")?).map_err(|e| format!("input.currency: {e}"))?;
        let txs = input.get("transactions").and_then(Value::as_array).ok_or("input.transactions: missing")?;
        let [tx] = txs.as_slice() else {
            return Err(format!("input.transactions: {} transactions (one wanted)", txs.len()));
        };
        let amount_text = text(tx, "amount").map_err(|e| format!("transactions.0.{e}"))?;
        let amount = Money::parse_decimal(&amount_text, currency)
            .map_err(|e| format!("transactions.0.amount {amount_text:?}: {e}"))?;
        let req = RefundRequest {
            order_id,
            amount,
            parent_transaction_id: text(tx, "parentId").map_err(|e| format!("transactions.0.{e}"))?,
            gateway: text(tx, "gateway").map_err(|e| format!("transactions.0.{e}"))?,
            note,
        };
        return Ok(Asked::RefundCreate { req, key });
    }
    if query.contains("sortKey: UPDATED_AT") {
        let q = vars.get("q").and_then(Value::as_str).ok_or("variables.q: missing")?;
        let since = super::shopify_orders::since_of_query(q)?;
        let first = vars.get("first").and_then(Value::as_u64).ok_or("variables.first: missing")?;
        let first = u32::try_from(first)
            .ok()
            .filter(|f| (1..=super::shopify_orders::ORDERS_PAGE_MAX).contains(f))
            .ok_or_else(|| format!("variables.first: {first} is not in 1..=250"))?;
        let after = vars.get("after").and_then(Value::as_str).map(str::to_string);
        return Ok(Asked::OrdersPage { since, after, first });
    }
    if query.contains("orders(") {
        let q = vars.get("q").and_then(Value::as_str).ok_or("variables.q: missing")?;
        let email = email_of_query(q).ok_or_else(|| format!("variables.q {q:?}: not an email search"))?;
        return Ok(Asked::CustomerOrder { email });
    }
    if query.contains("shopifyPaymentsAccount") {
        let after = vars.get("after").and_then(Value::as_str).map(str::to_string);
        return Ok(Asked::Disputes { after });
    }
    if query.contains("order(") {
        let id = vars.get("id").and_then(Value::as_str).ok_or("variables.id: missing")?.to_string();
        if query.contains("suggestedRefund") {
            return Ok(Asked::Order { order_id: id });
        }
        if query.contains("refunds") {
            return Ok(Asked::OrderRefunds { order_id: id });
        }
    }
    Err("an operation this API does not serve".into())
}

/// The cost extension of a reply (the sandbox's bucket).
pub fn cost_extension(requested: f64, actual: f64, status: &ThrottleStatus) -> Value {
    json!({ "cost": {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": {
            "maximumAvailable": status.maximum_available,
            "currentlyAvailable": status.currently_available,
            "restoreRate": status.restore_rate,
        },
    } })
}

/// A top-level GraphQL error with its code (`THROTTLED`, `ACCESS_DENIED`,
/// the idempotency codes).
pub fn error_body(code: &str, message: &str) -> Value {
    json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })
}

/// The reply to `refundCreate` as Shopify sends it: `(HTTP status, body)`.
pub fn encode_refund_create_reply(result: &Result<ShopRefund, ShopError>) -> (u16, Value) {
    match result {
        Ok(r) => (200, json!({ "data": { "refundCreate": { "refund": encode_refund(r), "userErrors": [] } } })),
        Err(ShopError::Rejected(msgs)) => {
            let errors: Vec<Value> = msgs
                .iter()
                .map(|m| match m.split_once(": ") {
                    Some((field, msg)) if !field.contains(' ') => {
                        json!({ "field": field.split('.').collect::<Vec<_>>(), "message": msg })
                    }
                    _ => json!({ "field": null, "message": m }),
                })
                .collect();
            (200, json!({ "data": { "refundCreate": { "refund": null, "userErrors": errors } } }))
        }
        Err(e) => error_reply(e),
    }
}

/// The reply to the read-back query: `(HTTP status, body)`.
pub fn encode_order_refunds_reply(order_id: &str, result: &Result<Vec<ShopRefund>, ShopError>) -> (u16, Value) {
    match result {
        Ok(rs) => {
            let refunds: Vec<Value> = rs.iter().map(encode_refund).collect();
            (200, json!({ "data": { "order": { "id": order_id, "refunds": refunds } } }))
        }
        Err(ShopError::Rejected(_)) => (200, json!({ "data": { "order": null } })),
        Err(e) => error_reply(e),
    }
}

fn error_reply(e: &ShopError) -> (u16, Value) {
    match e {
        ShopError::Throttled { .. } => (200, error_body("THROTTLED", "Throttled")),
        ShopError::ConcurrentRequest => (200, error_body("IDEMPOTENCY_CONCURRENT_REQUEST", &e.to_string())),
        ShopError::ParameterMismatch(m) => (200, error_body("IDEMPOTENCY_KEY_PARAMETER_MISMATCH", m)),
        ShopError::Unauthorized(m) => (401, error_body("ACCESS_DENIED", m)),
        ShopError::Server(s) => (*s, json!({ "errors": "Internal error" })),
        other => (500, json!({ "errors": other.to_string() })),
    }
}

/// A refund as Shopify shows it (the sandbox's and the tests' side).
pub fn encode_refund(r: &ShopRefund) -> Value {
    let status = match r.status {
        RefundStatus::Success => "SUCCESS",
        RefundStatus::Pending => "PENDING",
        RefundStatus::Failure => "FAILURE",
    };
    json!({
        "id": r.id,
        "note": r.note,
        "createdAt": crate::sense::wire::revolut::iso_of(r.created_at),
        "totalRefundedSet": { "shopMoney": { "amount": r.amount.to_decimal(), "currencyCode": r.amount.currency.as_str() } },
        "transactions": { "nodes": [{ "id": format!("{}/tx", r.id), "kind": "REFUND", "status": status, "gateway": "shopify_payments" }] },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_is_a_hint_to_reread_or_nothing() {
        let body = br#"{"id": 1}"#;
        assert_eq!(
            decode_webhook(Some("disputes/create"), body),
            Ok(ShopHint::Reread { topic: "disputes/create".into() })
        );
        assert_eq!(
            decode_webhook(Some("products/update"), body),
            Ok(ShopHint::Ignored { topic: "products/update".into() })
        );
        assert!(decode_webhook(None, body).is_err(), "no topic");
        assert!(decode_webhook(Some("orders/updated"), b"[1, 2]").is_err(), "not an object");
        assert!(decode_webhook(Some("orders/updated"), b"\xff garbage").is_err(), "not JSON");
    }

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::EUR)
    }

    fn request() -> RefundRequest {
        RefundRequest {
            order_id: "gid://shopify/Order/1001".into(),
            amount: eur(1_250),
            parent_transaction_id: "gid://shopify/OrderTransaction/55".into(),
            gateway: "shopify_payments".into(),
            note: "dlft:refund/north/s/1001/t-7".into(),
        }
    }

    fn refund(status: RefundStatus) -> ShopRefund {
        ShopRefund {
            id: "gid://shopify/Refund/9".into(),
            note: Some("dlft:refund/north/s/1001/t-7".into()),
            amount: eur(1_250),
            status,
            created_at: Timestamp(1_796_205_600_000),
        }
    }

    #[test]
    fn the_mutation_carries_the_key_and_exact_money() {
        let body = encode_refund_create(&request(), "refund/north/s/1001/t-7").unwrap();
        assert!(body["query"].as_str().unwrap().contains("@idempotent(key: $key)"), "required since 2026-04");
        assert_eq!(body["variables"]["key"], "refund/north/s/1001/t-7");
        let tx = &body["variables"]["input"]["transactions"][0];
        assert_eq!((tx["amount"].as_str(), tx["kind"].as_str()), (Some("12.50"), Some("REFUND")));
        assert_eq!(tx["parentId"], "gid://shopify/OrderTransaction/55", "to the original payment");
        let mut zero = request();
        zero.amount = eur(0);
        assert!(encode_refund_create(&zero, "k").is_err());
        assert!(encode_refund_create(&request(), "").is_err());
    }

    #[test]
    fn a_refund_round_trips() {
        for s in [RefundStatus::Success, RefundStatus::Pending, RefundStatus::Failure] {
            let r = refund(s);
            let body = json!({ "data": { "refundCreate": { "refund": encode_refund(&r), "userErrors": [] } } });
            assert_eq!(decode_refund_create(200, &body), Ok(r.clone()));
            let read = json!({ "data": { "order": { "id": "o", "refunds": [encode_refund(&r)] } } });
            assert_eq!(decode_order_refunds(200, &read), Ok(vec![r]));
        }
    }

    #[test]
    fn each_error_class_is_told_apart() {
        let throttled = json!({
            "errors": [{ "message": "Throttled", "extensions": { "code": "THROTTLED" } }],
            "extensions": { "cost": { "requestedQueryCost": 10, "actualQueryCost": null,
                "throttleStatus": { "maximumAvailable": 1000.0, "currentlyAvailable": 4.0, "restoreRate": 50.0 } } }
        });
        // 6 points missing at 50 a second: 120 ms.
        assert_eq!(decode_refund_create(200, &throttled), Err(ShopError::Throttled { retry_after: Millis(120) }));
        assert!(
            matches!(decode_refund_create(429, &json!({})), Err(ShopError::Throttled { .. })),
            "429 without a body"
        );
        let code = |c: &str| json!({ "errors": [{ "message": c, "extensions": { "code": c } }] });
        assert_eq!(
            decode_refund_create(200, &code("IDEMPOTENCY_CONCURRENT_REQUEST")),
            Err(ShopError::ConcurrentRequest)
        );
        assert!(matches!(
            decode_refund_create(200, &code("IDEMPOTENCY_KEY_PARAMETER_MISMATCH")),
            Err(ShopError::ParameterMismatch(_))
        ));
        assert!(matches!(decode_refund_create(200, &code("ACCESS_DENIED")), Err(ShopError::Unauthorized(_))));
        assert_eq!(decode_refund_create(502, &json!("<html>")), Err(ShopError::Server(502)));
        let user = json!({ "data": { "refundCreate": { "refund": null, "userErrors": [
            { "field": ["transactions", "0", "amount"], "message": "Amount exceeds the refundable amount" }] } } });
        assert_eq!(
            decode_refund_create(200, &user),
            Err(ShopError::Rejected(vec!["transactions.0.amount: Amount exceeds the refundable amount".into()]))
        );
        // Which of them may have moved money.
        assert!(ShopError::ConcurrentRequest.outcome_unknown() && ShopError::Server(500).outcome_unknown());
        assert!(!ShopError::Rejected(vec![]).outcome_unknown());
        assert!(!ShopError::Throttled { retry_after: Millis(1) }.outcome_unknown());
    }

    #[test]
    fn disputes_read_back_as_written_chargebacks_only() {
        use crate::sense::claims::{Customer, Dispute, DisputeStatus};
        let d = |i: usize, status| Dispute {
            id: format!("gid://shopify/ShopifyPaymentsDispute/{i}"),
            store: "eu".into(),
            order_id: format!("gid://shopify/Order/{i}"),
            status,
            reason: "product_not_received".into(),
            amount: eur(4_999),
            customer: Customer {
                email: "jane@example.com".into(),
                phone: "+49 151".into(),
                address: "Main St 1".into(),
                card: String::new(),
            },
            initiated_at: crate::time::Timestamp(1_767_225_600_000),
        };
        let all: Vec<Dispute> =
            (0..60).map(|i| d(i, [DisputeStatus::Open, DisputeStatus::Won, DisputeStatus::Lost][i % 3])).collect();
        let (status, first) = encode_disputes_reply(&all, 0);
        let page = decode_disputes(status, &first, "eu").unwrap();
        assert_eq!((page.disputes.len(), page.next.as_deref()), (DISPUTES_PAGE as usize, Some("50")));
        assert_eq!(page.disputes[..3], all[..3]);
        let (_, second) = encode_disputes_reply(&all, 50);
        let rest = decode_disputes(200, &second, "eu").unwrap();
        assert_eq!((rest.disputes.len(), rest.next), (10, None));
        assert!(
            matches!(decode_request(&encode_disputes(Some("50"))), Ok(Asked::Disputes { after: Some(a) }) if a == "50")
        );
        // An inquiry is not a chargeback; a status not known here blocks; no Shopify Payments, no disputes.
        let mut odd = first.clone();
        odd["data"]["shopifyPaymentsAccount"]["disputes"]["nodes"][0]["type"] = json!("INQUIRY");
        odd["data"]["shopifyPaymentsAccount"]["disputes"]["nodes"][1]["status"] = json!("SOMETHING_NEW");
        let p = decode_disputes(200, &odd, "eu").unwrap();
        assert_eq!((p.disputes.len(), p.disputes[0].status), (49, DisputeStatus::Open));
        let none = json!({ "data": { "shopifyPaymentsAccount": null } });
        assert_eq!(decode_disputes(200, &none, "eu").unwrap().disputes, vec![]);
        let mut bad = first;
        bad["data"]["shopifyPaymentsAccount"]["disputes"]["nodes"][0]["amount"]["amount"] = json!("1.005");
        assert!(matches!(decode_disputes(200, &bad, "eu"), Err(ShopError::Malformed(m)) if m.contains("amount")));
    }

    #[test]
    fn malformed_replies_are_clear_errors() {
        let with = |amount: Value| {
            let mut r = encode_refund(&refund(RefundStatus::Success));
            r["totalRefundedSet"]["shopMoney"]["amount"] = amount;
            json!({ "data": { "refundCreate": { "refund": r, "userErrors": [] } } })
        };
        for (bad, want) in [
            (json!("12.505"), "amount \"12.505\""),
            (json!("twelve"), "amount \"twelve\""),
            (json!(12.5), "not a decimal string"),
            (json!("-0.01"), "is negative"),
        ] {
            match decode_refund_create(200, &with(bad)) {
                Err(ShopError::Malformed(m)) => assert!(m.contains(want), "{want:?} not in {m:?}"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(decode_refund_create(200, &json!({ "data": null })), Err(ShopError::Malformed(_))));
        assert!(matches!(
            decode_refund_create(200, &json!({ "data": { "refundCreate": { "refund": null, "userErrors": [] } } })),
            Err(ShopError::Malformed(_))
        ));
        let mut odd = encode_refund(&refund(RefundStatus::Success));
        odd["transactions"]["nodes"][0]["status"] = json!("MAYBE");
        let body = json!({ "data": { "order": { "refunds": [odd] } } });
        assert!(matches!(decode_order_refunds(200, &body), Err(ShopError::Malformed(m)) if m.contains("MAYBE")));
        assert_eq!(
            decode_order_refunds(200, &json!({ "data": { "order": null } })),
            Err(ShopError::Rejected(vec!["no such order".into()]))
        );
    }

    #[test]
    fn what_the_adapter_sends_the_sandbox_reads_and_back() {
        let body = encode_refund_create(&request(), "refund/north/s/1001/t-7").unwrap();
        assert_eq!(
            decode_request(&body),
            Ok(Asked::RefundCreate { req: request(), key: "refund/north/s/1001/t-7".into() })
        );
        let mut no_directive = body.clone();
        no_directive["query"] = json!(REFUND_CREATE.replace(" @idempotent(key: $key)", ""));
        assert!(matches!(decode_request(&no_directive), Ok(Asked::RefundCreate { key, .. }) if key.is_empty()));
        assert_eq!(
            decode_request(&encode_order_refunds("gid://shopify/Order/1")),
            Ok(Asked::OrderRefunds { order_id: "gid://shopify/Order/1".into() })
        );
        assert!(decode_request(&json!({ "query": "{ shop { name } }", "variables": {} })).is_err());
        let mut bad = body.clone();
        bad["variables"]["input"]["transactions"][0]["amount"] = json!("1.005");
        assert!(decode_request(&bad).unwrap_err().contains("transactions.0.amount"));
        // Every reply the sandbox sends decodes to what it meant.
        for result in [
            Ok(refund(RefundStatus::Pending)),
            Err(ShopError::Rejected(vec!["transactions.0.amount: too much".into()])),
            Err(ShopError::ParameterMismatch("other parameters".into())),
            Err(ShopError::ConcurrentRequest),
            Err(ShopError::Server(503)),
        ] {
            let (status, body) = encode_refund_create_reply(&result);
            assert_eq!(decode_refund_create(status, &body), result);
        }
        let (status, body) = encode_refund_create_reply(&Err(ShopError::Throttled { retry_after: Millis(5) }));
        assert!(matches!(decode_refund_create(status, &body), Err(ShopError::Throttled { .. })));
        let read = Ok(vec![refund(RefundStatus::Success)]);
        let (status, body) = encode_order_refunds_reply("o", &read);
        assert_eq!(decode_order_refunds(status, &body), read);
    }

    #[test]
    fn an_order_reads_with_its_bound_and_its_payment() {
        let order = ShopOrder {
            id: "gid://shopify/Order/1001".into(),
            total: eur(8_000),
            max_refundable: eur(3_000),
            payment: Some(("gid://shopify/OrderTransaction/55".into(), "shopify_payments".into())),
            tracking_numbers: vec!["DL000100001DE".into(), "DL000100002DE".into()],
        };
        assert_eq!(decode_request(&encode_order(&order.id)), Ok(Asked::Order { order_id: order.id.clone() }));
        let (status, body) = encode_order_reply(&Ok(order.clone()));
        assert_eq!(decode_order(status, &body), Ok(order.clone()));
        // Only a successful sale or capture is a payment.
        let mut v = body.clone();
        v["data"]["order"]["transactions"] = json!([
            { "id": "a", "kind": "AUTHORIZATION", "status": "SUCCESS", "gateway": "g" },
            { "id": "b", "kind": "SALE", "status": "FAILURE", "gateway": "g" },
            { "id": "c", "kind": "CAPTURE", "status": "SUCCESS", "gateway": "g" }]);
        assert_eq!(decode_order(200, &v).unwrap().payment, Some(("c".into(), "g".into())));
        v["data"]["order"]["transactions"] = json!([]);
        assert_eq!(decode_order(200, &v).unwrap().payment, None);
        // Parcels: one number once, blank ones and fulfillments without tracking are no parcel.
        v["data"]["order"]["fulfillments"] = json!([
            { "trackingInfo": [{ "number": " DL1 " }, { "number": "" }] },
            { "trackingInfo": [] }, {},
            { "trackingInfo": [{ "number": "DL1" }, { "number": "DL2", "company": null }] }]);
        assert_eq!(decode_order(200, &v).unwrap().tracking_numbers, ["DL1", "DL2"]);
        v["data"]["order"].as_object_mut().unwrap().remove("fulfillments");
        assert!(decode_order(200, &v).unwrap().tracking_numbers.is_empty(), "an unfulfilled order");
        // A bound above the total, or in another currency: malformed.
        let mut over = body.clone();
        over["data"]["order"]["suggestedRefund"]["maximumRefundableSet"]["shopMoney"]["amount"] = json!("80.01");
        assert!(matches!(decode_order(200, &over), Err(ShopError::Malformed(_))));
        assert_eq!(
            decode_order(200, &json!({ "data": { "order": null } })),
            Err(ShopError::Rejected(vec!["no such order".into()]))
        );
    }

    #[test]
    fn throttle_waits_round_up() {
        let t = ThrottleStatus { maximum_available: 1000.0, currently_available: 0.0, restore_rate: 100.0 };
        assert_eq!(wait_for(MUTATION_COST, &t), Millis(100));
        assert_eq!(wait_for(1.0, &ThrottleStatus { currently_available: 0.5, ..t }), Millis(5));
        assert_eq!(wait_for(10.0, &ThrottleStatus { currently_available: 50.0, ..t }), Millis(0));
        assert_eq!(wait_for(10.0, &ThrottleStatus { restore_rate: 0.0, ..t }), Millis(0));
        assert_eq!(wait_for(10.0, &ThrottleStatus { restore_rate: 1e-300, ..t }), MAX_THROTTLE_WAIT, "bounded");
        assert_eq!(wait_for(f64::NAN, &t), Millis(0));
    }

    #[test]
    fn a_customers_latest_order_is_found_by_email_and_read_exactly() {
        // The address is quoted for Shopify's search syntax and read back whole.
        for email in ["jane@example.com", "o\"brien\\x@example.com", "a@b.c\" OR email:*"] {
            let body = encode_customer_order(email);
            match decode_request(&body) {
                Ok(Asked::CustomerOrder { email: got }) => assert_eq!(got, email),
                other => panic!("{email}: {other:?}"),
            }
        }
        let eur = |m: i64| Money::new(m, Currency::EUR);
        let order = CustomerOrder {
            id: "gid://shopify/Order/7".into(),
            total: eur(4_990),
            refundable: eur(2_000),
            tracking: Tracking::Lost,
            risk: RiskLevel::Medium,
        };
        let (status, reply) = encode_customer_order_reply(Some(&order));
        assert_eq!(decode_customer_order(status, &reply).unwrap(), Some(order));
        let (status, none) = encode_customer_order_reply(None);
        assert_eq!(decode_customer_order(status, &none).unwrap(), None);
        // Delivered wins; a pending assessment is not low; the highest counts.
        let node = json!({"data": {"orders": {"nodes": [{"id": "o1",
            "totalPriceSet": {"shopMoney": {"amount": "10.00", "currencyCode": "EUR"}},
            "suggestedRefund": {"maximumRefundableSet": {"shopMoney": {"amount": "10.00", "currencyCode": "EUR"}}},
            "fulfillments": [{"displayStatus": "IN_TRANSIT"}, {"displayStatus": "DELIVERED"}],
            "risk": {"assessments": [{"riskLevel": "LOW"}, {"riskLevel": "PENDING"}]}}]}}});
        let o = decode_customer_order(200, &node).unwrap().unwrap();
        assert_eq!((o.tracking, o.risk), (Tracking::Delivered, RiskLevel::Medium));
        // Nothing refunded on a guess: money that does not parse, or more
        // refundable than paid, is an error.
        let mut bad = node.clone();
        bad["data"]["orders"]["nodes"][0]["totalPriceSet"]["shopMoney"]["amount"] = json!("10.001");
        assert!(matches!(decode_customer_order(200, &bad), Err(ShopError::Malformed(_))));
        let mut over = node.clone();
        over["data"]["orders"]["nodes"][0]["suggestedRefund"]["maximumRefundableSet"]["shopMoney"]["amount"] =
            json!("11.00");
        assert!(matches!(decode_customer_order(200, &over), Err(ShopError::Malformed(_))));
        assert!(decode_customer_order(200, &json!({"data": {}})).is_err());
    }
}

/// The webhook topics that may change what the refund desk reads (an
/// order, its refunds, its fulfillments, a chargeback): each is a hint to
/// re-read, never the truth itself.
pub const HINT_TOPICS: [&str; 8] = [
    "orders/create",
    "orders/updated",
    "orders/paid",
    "refunds/create",
    "fulfillments/create",
    "fulfillments/update",
    "disputes/create",
    "disputes/update",
];

/// What a (verified) Shopify webhook asks of the desk: re-read the shop, or
/// nothing (a topic it does not read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShopHint {
    Reread { topic: String },
    Ignored { topic: String },
}

/// Decodes a webhook's topic (`X-Shopify-Topic`) and body: a body that is
/// not a JSON object is refused whatever the topic (Shopify sends the
/// resource as an object); the body's contents are not trusted further.
pub fn decode_webhook(topic: Option<&str>, body: &[u8]) -> Result<ShopHint, String> {
    let topic = topic.filter(|t| !t.is_empty()).ok_or("no X-Shopify-Topic header")?;
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(_)) => {}
        Ok(_) => return Err("the body is not a JSON object".into()),
        Err(e) => return Err(format!("the body is not JSON: {e}")),
    }
    Ok(if HINT_TOPICS.contains(&topic) {
        ShopHint::Reread { topic: topic.to_string() }
    } else {
        ShopHint::Ignored { topic: topic.to_string() }
    })
}
