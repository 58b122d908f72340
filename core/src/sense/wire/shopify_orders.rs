//! The Shopify mirror's read (issue 14, Admin GraphQL 2026-10): the
//! store's orders updated since an instant, oldest change first, at most
//! 250 a page with a cursor, each with what the fraud profile and the
//! shipments sensor need: the customer's keys (email, phone, shipping
//! address, card BIN + last 4 + expiry), the total and what was refunded,
//! the parcels' tracking numbers and the order's risk assessments.
//!
//! Money is the shop's (`shopMoney`): the presentment currency a customer
//! paid in is not the one refunds are bounded in. An order whose money or
//! instants cannot be read is rejected by itself, naming the order and the
//! field (the page's other orders stand, and nothing is mirrored on a
//! guess); a page that is not Shopify's shape (no nodes, a node without an
//! id, a next page without a cursor) is malformed as a whole. THROTTLED and the
//! other error classes are `shopify::classify_errors`'.
//!
//! Read by the Shopify adapter (`dlft_live::shopify`) for the mirror
//! (`jobs::mirror`); answered by the sandbox and the sim's shop with
//! [`encode_orders_page_reply`].

use serde_json::{Value, json};

use crate::money::Money;
use crate::sense::claims::Customer;
use crate::sense::shop::{MirroredOrder, OrdersPage, RejectedOrder, RiskLevel, ShopError};
use crate::sense::wire::revolut::{instant_of, iso_of};
use crate::sense::wire::shopify::{classify_errors, money_of};
use crate::time::Timestamp;

/// Orders per page at most (Shopify's connection limit).
pub const ORDERS_PAGE_MAX: u32 = 250;

/// What one order of [`ORDERS_PAGE`] adds to the query's requested cost, by
/// Shopify's published rule (an object costs 1, a list or connection its
/// `first` times its items' cost, scalars nothing): the order 1, its two
/// money sets 2 each, the address 1, 5 fulfillments of 1 + 3 tracking
/// infos, the risk and its assessments 2, 5 transactions of 1 + their
/// payment details 1. An upper bound: Shopify refunds the difference.
pub const ORDER_COST: u32 = 1 + 2 + 2 + 1 + 5 * (1 + 3) + 2 + 5 * (1 + 1);

/// The most a single query may cost (Shopify refuses more, whatever the
/// bucket holds).
pub const MAX_QUERY_COST: u32 = 1_000;

/// Orders a mirror page asks for: as many as one query may cost, at most
/// [`ORDERS_PAGE_MAX`] (the cost binds first: 26 with this query).
pub const ORDERS_PAGE_FIRST: u32 = {
    let n = (MAX_QUERY_COST - 2) / ORDER_COST;
    if n > ORDERS_PAGE_MAX { ORDERS_PAGE_MAX } else { n }
};

/// What a page of orders actually costs, as Shopify charges it after the
/// query ran (it holds the requested cost up front and refunds the rest):
/// the connection 2, and per order returned its objects, its fulfillments
/// and transactions as they are.
pub fn orders_page_actual_cost(orders: &[MirroredOrder]) -> u32 {
    let each = |o: &MirroredOrder| {
        let n = u32::try_from(o.tracking_numbers.len()).unwrap_or(u32::MAX).min(5);
        1 + 2 + 2 + 1 + n * 2 + 2 + 2
    };
    orders.iter().fold(2u32, |a, o| a.saturating_add(each(o)))
}

/// The requested cost of a page of `first` orders (the connection and its
/// page info cost 2).
pub fn orders_page_cost(first: u32) -> u32 {
    2 + first.clamp(1, ORDERS_PAGE_MAX) * ORDER_COST
}

/// The mirror's query: orders updated at or after `$q`'s instant, by
/// `updatedAt`, after the cursor.
pub const ORDERS_PAGE: &str = "query OrdersPage($first: Int!, $after: String, $q: String!) { \
orders(first: $first, after: $after, query: $q, sortKey: UPDATED_AT) { nodes { id createdAt updatedAt email phone \
totalPriceSet { shopMoney { amount currencyCode } } \
totalRefundedSet { shopMoney { amount currencyCode } } \
shippingAddress { address1 address2 zip city countryCodeV2 } \
fulfillments(first: 5) { trackingInfo(first: 3) { number } } \
risk { assessments { riskLevel } } \
transactions(first: 5) { kind status paymentDetails { ... on CardPaymentDetails { \
bin number expirationMonth expirationYear } } } } \
pageInfo { hasNextPage endCursor } } }";

/// One page of orders updated at or after `since` (to the second below:
/// a boundary order is read twice rather than missed), after `after`,
/// `first` of them (clamped to 1..=[`ORDERS_PAGE_FIRST`]: Shopify refuses a
/// query whose requested cost is over [`MAX_QUERY_COST`], whatever its
/// bucket holds).
pub fn encode_orders_page(since: Timestamp, after: Option<&str>, first: u32) -> Value {
    let ms = i64::try_from(since.0).unwrap_or(i64::MAX).min(jiff::Timestamp::MAX.as_millisecond());
    let second = jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    json!({ "query": ORDERS_PAGE, "variables": {
        "first": first.clamp(1, ORDERS_PAGE_FIRST),
        "after": after,
        "q": format!("updated_at:>='{}'", second.unwrap_or_default()),
    } })
}

/// The instant of the mirror's search (`updated_at:>='…'`), the sandbox's
/// and the sim's side.
pub fn since_of_query(q: &str) -> Result<Timestamp, String> {
    let at = q
        .strip_prefix("updated_at:>='")
        .and_then(|r| r.strip_suffix('\''))
        .ok_or_else(|| format!("variables.q {q:?}: not an updated_at search"))?;
    instant_of(at)
}

/// A shipping address as one line (`address1, address2, zip, city, country`).
pub fn address_line(a: Option<&Value>) -> String {
    a.map(|a| {
        ["address1", "address2", "zip", "city", "countryCodeV2"]
            .iter()
            .filter_map(|f| a.get(*f).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

/// The card of the order's successful payment, as the claims desk writes
/// it: `BIN-last4-MM/YY` (`424242-4242-12/29`); empty when there is none.
pub fn card_of(o: &Value) -> String {
    let txs = o.get("transactions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    txs.iter()
        .filter(|t| {
            let kind = t.get("kind").and_then(Value::as_str);
            matches!(kind, Some("SALE" | "CAPTURE" | "AUTHORIZATION"))
                && t.get("status").and_then(Value::as_str) == Some("SUCCESS")
        })
        .find_map(|t| {
            let d = t.get("paymentDetails")?;
            let bin = d
                .get("bin")
                .and_then(Value::as_str)
                .filter(|b| b.len() >= 6 && b.bytes().all(|c| c.is_ascii_digit()))?;
            let digits: String =
                d.get("number").and_then(Value::as_str)?.chars().filter(char::is_ascii_digit).collect();
            let last4 = digits.get(digits.len().checked_sub(4)?..)?;
            let month = d.get("expirationMonth").and_then(Value::as_u64).filter(|m| (1..=12).contains(m))?;
            let year = d.get("expirationYear").and_then(Value::as_u64)?;
            Some(format!("{}-{last4}-{month:02}/{:02}", &bin[..6], year % 100))
        })
        .unwrap_or_default()
}

/// The parcels' numbers of `o`'s fulfillments, each once; blank ones are no parcel.
pub fn tracking_numbers_of(o: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in o.get("fulfillments").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        for t in f.get("trackingInfo").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            let number = t.get("number").and_then(Value::as_str).map(str::trim).unwrap_or_default();
            if !number.is_empty() && !out.iter().any(|n| n == number) {
                out.push(number.to_string());
            }
        }
    }
    out
}

/// The highest of `o`'s risk assessments (`PENDING` counts as medium: not
/// yet judged is not low).
pub fn risk_of(o: &Value) -> RiskLevel {
    let levels: Vec<&str> = o
        .pointer("/risk/assessments")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.get("riskLevel").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    if levels.contains(&"HIGH") {
        RiskLevel::High
    } else if levels.iter().any(|l| matches!(*l, "MEDIUM" | "PENDING")) {
        RiskLevel::Medium
    } else {
        RiskLevel::Low
    }
}

/// Decodes one page of the mirror's read.
pub fn decode_orders_page(status: u16, body: &Value) -> Result<OrdersPage, ShopError> {
    if let Some(e) = classify_errors(status, body) {
        return Err(e);
    }
    let bad = ShopError::Malformed;
    let conn = body.pointer("/data/orders").ok_or_else(|| bad("no data.orders".into()))?;
    let nodes = conn.get("nodes").and_then(Value::as_array).ok_or_else(|| bad("orders.nodes".into()))?;
    let (mut orders, mut rejected) = (Vec::with_capacity(nodes.len()), Vec::new());
    for (i, o) in nodes.iter().enumerate() {
        let id = o.get("id").and_then(Value::as_str).unwrap_or_default();
        if id.is_empty() {
            return Err(bad(format!("orders.nodes.{i}.id: missing")));
        }
        match order_of(id, o) {
            Ok(order) => orders.push(order),
            Err(why) => rejected.push(RejectedOrder {
                id: id.to_string(),
                updated_at: instant_of(o.get("updatedAt").and_then(Value::as_str).unwrap_or_default()).ok(),
                why,
            }),
        }
    }
    let more = conn.pointer("/pageInfo/hasNextPage").and_then(Value::as_bool).unwrap_or(false);
    let next = conn.pointer("/pageInfo/endCursor").and_then(Value::as_str).filter(|_| more).map(str::to_string);
    if more && next.is_none() {
        return Err(bad("orders.pageInfo: a next page without a cursor".into()));
    }
    Ok(OrdersPage { orders, rejected, next })
}

/// One order node, or why it cannot be read (naming the order and the field).
fn order_of(id: &str, o: &Value) -> Result<MirroredOrder, String> {
    let text = |f: &str| o.get(f).and_then(Value::as_str).unwrap_or_default();
    let instant = |f: &str| instant_of(text(f)).map_err(|e| format!("order {id}: {f}: {e}"));
    let set = |f: &str| -> Result<Money, String> {
        let v = o
            .get(f)
            .and_then(|s| s.get("shopMoney"))
            .filter(|m| !m.is_null())
            .ok_or_else(|| format!("order {id}: {f}: missing"))?;
        money_of(v).map_err(|e| format!("order {id}: {f}.shopMoney.{e}"))
    };
    let (total, refunded) = (set("totalPriceSet")?, set("totalRefundedSet")?);
    if refunded.currency != total.currency || refunded.minor < 0 || refunded.minor > total.minor {
        return Err(format!("order {id}: {refunded} refunded of a total of {total}"));
    }
    Ok(MirroredOrder {
        id: id.to_string(),
        created_at: instant("createdAt")?,
        updated_at: instant("updatedAt")?,
        total,
        refunded,
        customer: Customer {
            email: text("email").to_string(),
            phone: text("phone").to_string(),
            address: address_line(o.get("shippingAddress").filter(|a| !a.is_null())),
            card: card_of(o),
        },
        tracking_numbers: tracking_numbers_of(o),
        risk: risk_of(o),
    })
}

/// A page as Shopify sends it (the sandbox's side): `orders` with the
/// cursor of the next page, if any. Cards are written as the desk writes
/// them (`BIN-last4-MM/YY`); an order without one has no payment details.
pub fn encode_orders_page_reply(orders: &[MirroredOrder], next: Option<&str>) -> (u16, Value) {
    let set = |m: &Money| json!({ "shopMoney": { "amount": m.to_decimal(), "currencyCode": m.currency.as_str() } });
    let nodes: Vec<Value> = orders
        .iter()
        .map(|o| {
            let level = match o.risk {
                RiskLevel::Low => "LOW",
                RiskLevel::Medium => "MEDIUM",
                RiskLevel::High => "HIGH",
            };
            let card = o.customer.card.split(['-', '/']).collect::<Vec<_>>();
            let details = match card.as_slice() {
                [bin, last4, month, year] => json!({ "bin": bin, "number": format!("•••• •••• •••• {last4}"),
                    "expirationMonth": month.parse::<u64>().unwrap_or(0),
                    "expirationYear": 2000 + year.parse::<u64>().unwrap_or(0) }),
                _ => Value::Null,
            };
            json!({
                "id": o.id,
                "createdAt": iso_of(o.created_at),
                "updatedAt": iso_of(o.updated_at),
                "email": o.customer.email,
                "phone": o.customer.phone,
                "totalPriceSet": set(&o.total),
                "totalRefundedSet": set(&o.refunded),
                "shippingAddress": { "address1": o.customer.address },
                "fulfillments": o.tracking_numbers.iter().map(|n| json!({ "trackingInfo": [{ "number": n }] }))
                    .collect::<Vec<_>>(),
                "risk": { "assessments": [{ "riskLevel": level }] },
                "transactions": [{ "kind": "SALE", "status": "SUCCESS", "paymentDetails": details }],
            })
        })
        .collect();
    let page_info = json!({ "hasNextPage": next.is_some(), "endCursor": next });
    (200, json!({ "data": { "orders": { "nodes": nodes, "pageInfo": page_info } } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn order(n: u64) -> MirroredOrder {
        MirroredOrder {
            id: format!("gid://shopify/Order/{n}"),
            created_at: Timestamp(1_767_225_600_000 + n),
            updated_at: Timestamp(1_767_312_000_000 + n),
            total: Money::new(8_000, Currency::EUR),
            refunded: Money::new(1_250, Currency::EUR),
            customer: Customer {
                email: format!("c{n}@example.com"),
                phone: "+49 151 0000000".into(),
                address: "Hauptstraße 5, 10115 Berlin".into(),
                card: "424242-4242-12/29".into(),
            },
            tracking_numbers: vec![format!("DL{n:09}DE")],
            risk: RiskLevel::Medium,
        }
    }

    #[test]
    fn the_query_asks_for_at_most_250_orders_changed_since_an_instant() {
        let body = encode_orders_page(Timestamp(1_767_225_600_000), Some("c1"), 1_000);
        assert_eq!(body["variables"]["first"], ORDERS_PAGE_FIRST, "no more than one query may cost");
        assert!(orders_page_cost(ORDERS_PAGE_FIRST) <= MAX_QUERY_COST && ORDERS_PAGE_FIRST <= ORDERS_PAGE_MAX);
        assert!(orders_page_cost(ORDERS_PAGE_FIRST + 1) > MAX_QUERY_COST);
        assert_eq!(body["variables"]["after"], "c1");
        assert_eq!(body["variables"]["q"], "updated_at:>='2026-01-01T00:00:00Z'");
        assert_eq!(encode_orders_page(Timestamp(0), None, 0)["variables"]["first"], 1);
        let within = encode_orders_page(Timestamp(1_767_225_600_999), None, 250);
        assert_eq!(within["variables"]["q"], "updated_at:>='2026-01-01T00:00:00Z'", "to the second below");
        assert!(ORDERS_PAGE.contains("sortKey: UPDATED_AT") && ORDERS_PAGE.contains("pageInfo"));
    }

    #[test]
    fn a_page_reads_back_as_sent_with_its_cursor() {
        let orders = vec![order(1), order(2)];
        let (status, body) = encode_orders_page_reply(&orders, Some("cursor-2"));
        let page = decode_orders_page(status, &body).unwrap();
        assert_eq!(page, OrdersPage { orders: orders.clone(), rejected: vec![], next: Some("cursor-2".into()) });
        let (status, body) = encode_orders_page_reply(&orders[..1], None);
        assert_eq!(decode_orders_page(status, &body).unwrap().next, None, "the last page");
    }

    #[test]
    fn a_bad_order_is_rejected_by_itself_naming_the_field_and_the_page_goes_on() {
        let (_, body) = encode_orders_page_reply(&[order(6), order(7), order(8)], Some("c8"));
        let rejected = |path: &str, v: Value| {
            let mut b = body.clone();
            *b.pointer_mut(path).unwrap() = v;
            let page = decode_orders_page(200, &b).unwrap_or_else(|e| panic!("{path}: the page was refused: {e:?}"));
            assert_eq!(page.orders, vec![order(6), order(8)], "{path}: the others stand");
            assert_eq!(page.next.as_deref(), Some("c8"), "{path}: the page moves on");
            assert_eq!(page.rejected.len(), 1, "{path}");
            assert_eq!(page.rejected[0].id, "gid://shopify/Order/7");
            page.rejected[0].clone()
        };
        let r = rejected("/data/orders/nodes/1/totalPriceSet/shopMoney/amount", json!("80.001"));
        assert!(r.why.contains("gid://shopify/Order/7") && r.why.contains("totalPriceSet"), "{r:?}");
        assert_eq!(r.updated_at, Some(order(7).updated_at), "its change instant still counts");
        let r = rejected("/data/orders/nodes/1/totalRefundedSet/shopMoney/amount", json!("80.01"));
        assert!(r.why.contains("refunded of a total"), "more refunded than paid: {r:?}");
        let r = rejected("/data/orders/nodes/1/totalRefundedSet/shopMoney/currencyCode", json!("USD"));
        assert!(r.why.contains("refunded of a total"), "another currency: {r:?}");
        let r = rejected("/data/orders/nodes/1/totalPriceSet/shopMoney", json!(null));
        assert!(r.why.contains("totalPriceSet: missing"), "{r:?}");
        let r = rejected("/data/orders/nodes/1/updatedAt", json!("yesterday"));
        assert!(r.why.contains("updatedAt"), "{r:?}");
        assert_eq!(r.updated_at, None);
        let r = rejected("/data/orders/nodes/1/createdAt", json!(17));
        assert!(r.why.contains("createdAt"), "{r:?}");

        let malformed = |path: &str, v: Value| {
            let mut b = body.clone();
            *b.pointer_mut(path).unwrap() = v;
            match decode_orders_page(200, &b) {
                Err(ShopError::Malformed(m)) => m,
                other => panic!("{path}: {other:?}"),
            }
        };
        let m = malformed("/data/orders/nodes/1/id", json!(""));
        assert!(m.contains("nodes.1.id"), "a node without an id is not Shopify's shape: {m}");
        let m = malformed("/data/orders/pageInfo/endCursor", json!(null));
        assert!(m.contains("without a cursor"), "{m}");
        let m = malformed("/data/orders/nodes", json!({}));
        assert!(m.contains("orders.nodes"), "{m}");
    }

    #[test]
    fn throttling_is_an_error_not_an_empty_page() {
        let throttled = json!({ "errors": [{ "message": "Throttled", "extensions": { "code": "THROTTLED" } }],
            "extensions": { "cost": { "requestedQueryCost": 502, "throttleStatus": {
                "maximumAvailable": 2000.0, "currentlyAvailable": 10.0, "restoreRate": 100.0 } } } });
        assert!(matches!(decode_orders_page(200, &throttled), Err(ShopError::Throttled { .. })));
    }

    #[test]
    fn the_card_is_the_successful_payments_as_the_desk_writes_it() {
        let o = json!({ "transactions": [
            { "kind": "SALE", "status": "FAILURE", "paymentDetails": { "bin": "555555", "number": "•••• 1111",
              "expirationMonth": 1, "expirationYear": 2030 } },
            { "kind": "SALE", "status": "SUCCESS", "paymentDetails": { "bin": "424242", "number": "•••• •••• •••• 4242",
              "expirationMonth": 7, "expirationYear": 2029 } }] });
        assert_eq!(card_of(&o), "424242-4242-07/29");
        assert_eq!(
            card_of(&json!({ "transactions": [{ "kind": "SALE", "status": "SUCCESS", "paymentDetails": {} }] })),
            ""
        );
        assert_eq!(card_of(&json!({})), "", "no payment, no card");
        let odd = json!({ "transactions": [{ "kind": "SALE", "status": "SUCCESS", "paymentDetails": {
            "bin": "aééééé", "number": "4242", "expirationMonth": 7, "expirationYear": 2029 } }] });
        assert_eq!(card_of(&odd), "", "a BIN that is not digits is no card (and no panic)");
    }
}
