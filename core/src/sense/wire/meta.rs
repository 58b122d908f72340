//! Meta Marketing API (Graph) shapes: insights pages, pause replies,
//! effective_status read-back, and Graph errors with their rate-limit codes.
//!
//! Metrics arrive as strings; purchases appear under several action types at
//! once (`purchase`, `omni_purchase`, `offsite_conversion.fb_pixel_purchase`)
//! and exactly one of them is counted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::AdId;
use crate::money::{Currency, Money};
use crate::sense::ads::{AdStatus, AdsError, InsightRow, InsightsPage, StatusHint};
use crate::time::{Millis, Timestamp};

/// Action types that report purchases, in order of preference. Meta reports
/// the same purchases under several of them; summing would double count.
pub const PURCHASE_ACTION_TYPES: [&str; 3] = ["omni_purchase", "purchase", "offsite_conversion.fb_pixel_purchase"];

/// Graph error codes that mean "slow down".
pub fn is_rate_limit_code(code: i64) -> bool {
    matches!(code, 4 | 17 | 32 | 613) || (80000..=80014).contains(&code)
}

/// Default wait after a rate limit when the reply carries no estimate.
pub const RATE_LIMIT_DEFAULT_WAIT: Millis = Millis(5_000);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionValue {
    pub action_type: String,
    pub value: String,
}

/// One insights record at `level=ad`. `bucket_start_ms` stands in for
/// Meta's `date_start` + hourly breakdown, so that the sim can use buckets
/// shorter than an hour; the live adapter maps the real fields onto it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsightRecord {
    pub ad_id: String,
    pub bucket_start_ms: String,
    pub account_currency: String,
    pub spend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<ActionValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_values: Option<Vec<ActionValue>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursors {
    pub before: String,
    pub after: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursors: Option<Cursors>,
    /// Present only when more pages exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsightsResponse {
    pub data: Vec<InsightRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

/// `{"success": true}`; Meta has been seen to send the string `"true"` too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccessReply {
    pub success: serde_json::Value,
}

impl SuccessReply {
    pub fn is_success(&self) -> bool {
        matches!(&self.success, serde_json::Value::Bool(true))
            || matches!(&self.success, serde_json::Value::String(s) if s == "true")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    pub id: String,
    pub status: String,
    pub effective_status: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphError {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_transient: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: GraphError,
}

impl ErrorEnvelope {
    /// The rate-limit error as Meta sends it for code 17.
    pub fn user_request_limit(trace: &str) -> ErrorEnvelope {
        ErrorEnvelope {
            error: GraphError {
                message: "(#17) User request limit reached".into(),
                kind: "OAuthException".into(),
                code: 17,
                error_subcode: Some(2446079),
                is_transient: Some(true),
                fbtrace_id: Some(trace.into()),
            },
        }
    }
}

/// Counts purchases in an `actions` list: the first present type of
/// [`PURCHASE_ACTION_TYPES`], never a sum over types.
pub fn purchase_value(actions: &[ActionValue]) -> Option<&str> {
    PURCHASE_ACTION_TYPES.iter().find_map(|t| actions.iter().find(|a| a.action_type == *t).map(|a| a.value.as_str()))
}

fn malformed(what: impl Into<String>) -> AdsError {
    AdsError::Malformed(what.into())
}

/// Decodes one insights record into a domain row.
pub fn decode_record(r: &InsightRecord) -> Result<InsightRow, AdsError> {
    let currency = Currency::parse(&r.account_currency).map_err(|e| malformed(format!("ad {}: {e}", r.ad_id)))?;
    let spend =
        Money::parse_decimal(&r.spend, currency).map_err(|e| malformed(format!("ad {} spend: {e}", r.ad_id)))?;
    let bucket_ms: u64 =
        r.bucket_start_ms.parse().map_err(|_| malformed(format!("ad {} bucket {:?}", r.ad_id, r.bucket_start_ms)))?;
    let actions = r.actions.as_deref().unwrap_or_default();
    let purchases: u32 = match purchase_value(actions) {
        Some(v) => v.parse().map_err(|_| malformed(format!("ad {} purchases {v:?}", r.ad_id)))?,
        None => 0,
    };
    let values = r.action_values.as_deref().unwrap_or_default();
    let revenue = match purchase_value(values) {
        Some(v) => Money::parse_decimal(v, currency).map_err(|e| malformed(format!("ad {} revenue: {e}", r.ad_id)))?,
        None => Money::zero(currency),
    };
    if spend.minor < 0 || revenue.minor < 0 {
        return Err(malformed(format!("ad {}: negative money", r.ad_id)));
    }
    Ok(InsightRow { ad: AdId::new(r.ad_id.clone()), bucket_start: Timestamp(bucket_ms), spend, purchases, revenue })
}

/// Encodes a row the way Meta reports it (all three purchase types present).
pub fn encode_record(row: &InsightRow) -> InsightRecord {
    let currency = row.spend.currency.to_string();
    let count = row.purchases.to_string();
    let value = row.revenue.to_decimal();
    let list = |v: &str| {
        PURCHASE_ACTION_TYPES
            .iter()
            .map(|t| ActionValue { action_type: (*t).into(), value: v.into() })
            .collect::<Vec<_>>()
    };
    let has_purchases = row.purchases > 0;
    InsightRecord {
        ad_id: row.ad.to_string(),
        bucket_start_ms: row.bucket_start.0.to_string(),
        account_currency: currency,
        spend: row.spend.to_decimal(),
        actions: has_purchases.then(|| list(&count)),
        action_values: has_purchases.then(|| list(&value)),
    }
}

/// Decodes an insights page body.
pub fn decode_insights(body: &serde_json::Value) -> Result<InsightsPage, AdsError> {
    let resp: InsightsResponse =
        serde_json::from_value(body.clone()).map_err(|e| malformed(format!("insights: {e}")))?;
    let rows = resp.data.iter().map(decode_record).collect::<Result<Vec<_>, _>>()?;
    let next = resp.paging.and_then(|p| p.next.is_some().then_some(p.cursors.map(|c| c.after))).flatten();
    Ok(InsightsPage { rows, next })
}

/// One `/ads_archive` record (the fields the scan uses). The start time is
/// epoch milliseconds in a string, like `bucket_start_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRecord {
    pub id: String,
    pub page_id: String,
    pub ad_delivery_start_time_ms: String,
}

/// Decodes an `/ads_archive` page (`{data, paging}`; empty `data` ends paging).
pub fn decode_archive(body: &serde_json::Value) -> Result<Vec<crate::sense::ads::LibraryAd>, AdsError> {
    #[derive(Deserialize)]
    struct Page {
        data: Vec<ArchiveRecord>,
    }
    let page: Page = serde_json::from_value(body.clone()).map_err(|e| malformed(format!("ads_archive: {e}")))?;
    page.data
        .into_iter()
        .map(|r| {
            let ms = r.ad_delivery_start_time_ms.parse().map_err(|_| malformed(format!("ad {} start time", r.id)))?;
            Ok(crate::sense::ads::LibraryAd { id: r.id, started_at: Timestamp(ms) })
        })
        .collect()
}

/// Decodes a status read-back (`fields=status,effective_status`) of an ad,
/// an ad set or a campaign: `Paused` when the object is paused itself (its
/// own `status`), else what its `effective_status` says (an ad in a paused
/// ad set is `ADSET_PAUSED`: not spending, but not stopped itself).
pub fn decode_status(body: &serde_json::Value) -> Result<AdStatus, AdsError> {
    let reply: StatusReply = serde_json::from_value(body.clone()).map_err(|e| malformed(format!("status: {e}")))?;
    if reply.status == "PAUSED" {
        return Ok(AdStatus::Paused);
    }
    Ok(match reply.effective_status.as_str() {
        "ACTIVE" => AdStatus::Active,
        "PAUSED" => AdStatus::Paused,
        other => AdStatus::Other(other.to_string()),
    })
}

/// An ad's parents (`GET /{ad-id}?fields=adset_id,campaign_id`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentsReply {
    pub id: String,
    pub adset_id: String,
    pub campaign_id: String,
}

/// Decodes an ad's parents; an empty id is malformed.
pub fn decode_parents(body: &serde_json::Value) -> Result<crate::sense::ads::AdParents, AdsError> {
    let reply: ParentsReply = serde_json::from_value(body.clone()).map_err(|e| malformed(format!("parents: {e}")))?;
    if reply.adset_id.is_empty() || reply.campaign_id.is_empty() {
        return Err(malformed(format!("parents of {}: an empty id", reply.id)));
    }
    Ok(crate::sense::ads::AdParents { adset: reply.adset_id, campaign: reply.campaign_id })
}

/// Decodes a pause reply.
pub fn decode_pause(body: &serde_json::Value) -> Result<(), AdsError> {
    let reply: SuccessReply = serde_json::from_value(body.clone()).map_err(|e| malformed(format!("pause: {e}")))?;
    if reply.is_success() { Ok(()) } else { Err(malformed(format!("pause reply without success: {body}"))) }
}

/// One request of a Graph batch (`POST /` with `batch=[…]`). `name` carries
/// our idempotency key (names must be unique within a batch; ours are).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRequest {
    pub method: String,
    pub relative_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One reply of a Graph batch: the sub-request's HTTP code and its body as a
/// JSON string. A sub-request that did not complete in time is `null` in the
/// reply array instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReply {
    pub code: u16,
    #[serde(default)]
    pub headers: Vec<serde_json::Value>,
    pub body: String,
}

/// The `batch` form field pausing `items`.
pub fn encode_pause_batch(items: &[(AdId, crate::ids::IdempotencyKey)]) -> Vec<BatchRequest> {
    items
        .iter()
        .map(|(ad, key)| BatchRequest {
            method: "POST".into(),
            relative_url: ad.as_str().to_string(),
            body: Some("status=PAUSED".into()),
            name: Some(key.as_str().to_string()),
        })
        .collect()
}

/// The ads a `batch` form field pauses, with their keys; refuses anything
/// else (the sandbox's parser, and the inverse of [`encode_pause_batch`]).
pub fn parse_pause_batch(batch: &str) -> Result<Vec<(AdId, crate::ids::IdempotencyKey)>, String> {
    let reqs: Vec<BatchRequest> =
        serde_json::from_str(batch).map_err(|e| format!("batch is not a request list: {e}"))?;
    if reqs.is_empty() || reqs.len() > crate::sense::ads::PAUSE_BATCH_MAX {
        return Err(format!("a batch holds 1..={} requests, not {}", crate::sense::ads::PAUSE_BATCH_MAX, reqs.len()));
    }
    reqs.into_iter()
        .map(|r| {
            if r.method != "POST" || r.body.as_deref() != Some("status=PAUSED") || r.relative_url.contains('/') {
                return Err(format!(
                    "only POST <ad-id> status=PAUSED is supported, not {} {}",
                    r.method, r.relative_url
                ));
            }
            let key = r.name.unwrap_or_else(|| "none".into());
            Ok((AdId::new(r.relative_url), crate::ids::IdempotencyKey::new(key)))
        })
        .collect()
}

/// Decodes a batch pause reply of `n` items: per item, the pause's result.
/// `null` (did not complete) and an unreadable item are outcome-unknown
/// errors; a non-200 item is classified like any Graph error.
pub fn decode_pause_batch(body: &serde_json::Value, n: usize) -> crate::sense::ads::BatchPause {
    let items = body.as_array().ok_or_else(|| malformed(format!("batch reply is not a list: {body}")))?;
    if items.len() != n {
        return Err(malformed(format!("batch reply has {} items for {n} requests", items.len())));
    }
    Ok(items
        .iter()
        .map(|item| {
            if item.is_null() {
                return Err(AdsError::Timeout);
            }
            let reply: BatchReply =
                serde_json::from_value(item.clone()).map_err(|e| malformed(format!("batch item: {e}")))?;
            let inner: serde_json::Value = serde_json::from_str(&reply.body)
                .map_err(|e| malformed(format!("batch item body is not JSON ({e}): {}", reply.body)))?;
            if reply.code == 200 { decode_pause(&inner) } else { Err(classify_error(reply.code, &inner, None)) }
        })
        .collect())
}

/// The field of a status change in a webhook's `changes` (the shape of
/// Meta's ad-account webhooks; the field name is ours: unconfirmed).
pub const STATUS_WEBHOOK_FIELD: &str = "ad_status";

/// A status webhook body: `{"object":"ad_account","entry":[{"id","time",
/// "changes":[{"field":"ad_status","value":{"ad_id","effective_status"}}]}]}`.
pub fn encode_status_webhook(account: &str, time_s: u64, hints: &[StatusHint]) -> serde_json::Value {
    let changes: Vec<_> = hints
        .iter()
        .map(|h| {
            serde_json::json!({"field": STATUS_WEBHOOK_FIELD,
                               "value": {"ad_id": h.ad.as_str(), "effective_status": h.status}})
        })
        .collect();
    serde_json::json!({"object": "ad_account", "entry": [{"id": account, "time": time_s, "changes": changes}]})
}

/// The status hints in a webhook body. Refuses a body that is not a webhook
/// (wrong shape, wrong object, a change without an ad id or status); changes
/// of other fields are skipped. At most `MAX_WEBHOOK_HINTS` hints.
pub fn decode_status_webhook(body: &serde_json::Value) -> Result<Vec<StatusHint>, String> {
    #[derive(Deserialize)]
    struct Body {
        object: String,
        entry: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        changes: Vec<Change>,
    }
    #[derive(Deserialize)]
    struct Change {
        field: String,
        #[serde(default)]
        value: serde_json::Value,
    }
    #[derive(Deserialize)]
    struct Value {
        ad_id: String,
        effective_status: String,
    }
    let body: Body = serde_json::from_value(body.clone()).map_err(|e| format!("not a webhook body: {e}"))?;
    if body.object != "ad_account" {
        return Err(format!("webhook object {:?}: only ad_account is handled", body.object));
    }
    let mut hints = Vec::new();
    for change in body.entry.into_iter().flat_map(|e| e.changes) {
        if change.field != STATUS_WEBHOOK_FIELD {
            continue;
        }
        let v: Value =
            serde_json::from_value(change.value).map_err(|e| format!("{STATUS_WEBHOOK_FIELD} change: {e}"))?;
        let well_formed = |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic());
        if !well_formed(&v.ad_id) || !well_formed(&v.effective_status) {
            return Err(format!("{STATUS_WEBHOOK_FIELD} change: ad id or status is not a short printable token"));
        }
        hints.push(StatusHint { ad: AdId::new(v.ad_id), status: v.effective_status });
        if hints.len() > MAX_WEBHOOK_HINTS {
            return Err(format!("more than {MAX_WEBHOOK_HINTS} changes in one webhook"));
        }
    }
    Ok(hints)
}

/// Changes one webhook may carry; more is refused, not truncated.
pub const MAX_WEBHOOK_HINTS: usize = 1_000;

/// Reads `estimated_time_to_regain_access` (minutes) from the
/// `X-Business-Use-Case-Usage` header, the longest over accounts.
pub fn regain_access_wait(usage_header: &str) -> Option<Millis> {
    let parsed: BTreeMap<String, Vec<serde_json::Value>> = serde_json::from_str(usage_header).ok()?;
    parsed
        .values()
        .flatten()
        .filter_map(|u| u.get("estimated_time_to_regain_access")?.as_u64())
        .max()
        .map(|minutes| Millis(minutes * 60_000))
}

/// Classifies a non-2xx reply. `usage_header` is `X-Business-Use-Case-Usage`, if sent.
pub fn classify_error(http_status: u16, body: &serde_json::Value, usage_header: Option<&str>) -> AdsError {
    let Ok(env) = serde_json::from_value::<ErrorEnvelope>(body.clone()) else {
        return if http_status >= 500 {
            AdsError::Transient { code: i64::from(http_status), message: body.to_string() }
        } else {
            malformed(format!("HTTP {http_status} without a Graph error: {body}"))
        };
    };
    let e = env.error;
    if is_rate_limit_code(e.code) {
        let wait = usage_header.and_then(regain_access_wait).filter(|w| w.0 > 0).unwrap_or(RATE_LIMIT_DEFAULT_WAIT);
        return AdsError::RateLimited { code: e.code, retry_after: wait };
    }
    if e.is_transient == Some(true) || http_status >= 500 {
        return AdsError::Transient { code: e.code, message: e.message };
    }
    AdsError::Permanent { code: e.code, message: e.message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_webhooks_round_trip_and_garbage_is_refused() {
        let hints = vec![
            StatusHint { ad: AdId::new("ad-1"), status: "PAUSED".into() },
            StatusHint { ad: AdId::new("ad-2"), status: "ACTIVE".into() },
        ];
        assert_eq!(decode_status_webhook(&encode_status_webhook("act_1", 5, &hints)).unwrap(), hints);
        let other_field = json!({"object": "ad_account", "entry": [{"id": "1", "time": 1,
            "changes": [{"field": "in_process_ad_objects", "value": {"id": "9"}}]}]});
        assert_eq!(decode_status_webhook(&other_field).unwrap(), vec![], "other fields are skipped");
        for (garbage, why) in [
            (json!("hello"), "not a webhook body"),
            (json!({"object": "page", "entry": []}), "only ad_account"),
            (
                json!({"object": "ad_account", "entry": [{"changes": [{"field": "ad_status", "value": {"ad_id": 5}}]}]}),
                "ad_status change",
            ),
            (
                json!({"object": "ad_account", "entry": [{"changes": [{"field": "ad_status",
                "value": {"ad_id": "a b", "effective_status": "PAUSED"}}]}]}),
                "printable token",
            ),
        ] {
            let e = decode_status_webhook(&garbage).unwrap_err();
            assert!(e.contains(why), "{garbage}: {e}");
        }
    }

    #[test]
    fn status_reads_its_own_status_first_and_parents_need_both_ids() {
        let read = |status: &str, effective: &str| {
            decode_status(&json!({"id": "1", "status": status, "effective_status": effective})).unwrap()
        };
        assert_eq!(read("PAUSED", "CAMPAIGN_PAUSED"), AdStatus::Paused, "paused itself, under a paused campaign");
        let above = read("ACTIVE", "ADSET_PAUSED");
        assert_eq!(above, AdStatus::Other("ADSET_PAUSED".into()));
        assert!(above.is_stopped() && !above.is_stopped_itself());
        assert!(read("ARCHIVED", "ARCHIVED").is_stopped_itself());
        assert_eq!(read("ACTIVE", "ACTIVE"), AdStatus::Active);
        let p = decode_parents(&json!({"id": "1", "adset_id": "as", "campaign_id": "c"})).unwrap();
        assert_eq!((p.adset.as_str(), p.campaign.as_str()), ("as", "c"));
        assert!(decode_parents(&json!({"id": "1", "adset_id": "", "campaign_id": "c"})).is_err());
        assert!(decode_parents(&json!({"id": "1", "adset_id": "as"})).is_err());
    }

    #[test]
    fn a_batch_reply_is_judged_item_by_item() {
        let ok = json!({"code": 200, "headers": [], "body": "{\"success\":true}"});
        let throttled = json!({"code": 400, "body": "{\"error\":{\"message\":\"(#17) User request limit reached\",\"type\":\"OAuthException\",\"code\":17}}"});
        let transient = json!({"code": 500, "body": "{\"error\":{\"message\":\"Service unavailable\",\"type\":\"OAuthException\",\"code\":2,\"is_transient\":true}}"});
        let got =
            decode_pause_batch(&json!([ok, null, throttled, transient, {"code": 200, "body": "<html>"}]), 5).unwrap();
        assert_eq!(got[0], Ok(()));
        assert_eq!(got[1], Err(AdsError::Timeout), "null: did not complete, outcome unknown");
        assert!(matches!(got[2], Err(AdsError::RateLimited { code: 17, .. })));
        assert!(matches!(got[3], Err(AdsError::Transient { code: 2, .. })));
        assert!(matches!(got[4], Err(AdsError::Malformed(_))), "unreadable item: outcome unknown");
        assert!(decode_pause_batch(&json!([ok]), 2).is_err(), "a reply must answer every request");
        assert!(decode_pause_batch(&json!({"success": true}), 1).is_err());
    }

    #[test]
    fn a_pause_batch_round_trips_and_the_parser_refuses_other_requests() {
        let items = vec![
            (AdId::new("1"), crate::ids::IdempotencyKey::new("kill/1")),
            (AdId::new("2"), crate::ids::IdempotencyKey::new("kill/2")),
        ];
        let text = serde_json::to_string(&encode_pause_batch(&items)).unwrap();
        assert_eq!(parse_pause_batch(&text).unwrap(), items);
        assert!(parse_pause_batch("[]").is_err());
        assert!(parse_pause_batch("not json").is_err());
        let other = r#"[{"method":"DELETE","relative_url":"1"}]"#;
        assert!(parse_pause_batch(other).unwrap_err().contains("only POST"));
    }

    #[test]
    fn purchases_are_counted_once_not_summed() {
        let row = InsightRow {
            ad: AdId::new("123"),
            bucket_start: Timestamp(60_000),
            spend: Money::new(1234, Currency::EUR),
            purchases: 3,
            revenue: Money::new(15_000, Currency::EUR),
        };
        let rec = encode_record(&row);
        assert_eq!(rec.actions.as_ref().unwrap().len(), 3, "Meta lists three purchase types");
        assert_eq!(decode_record(&rec).unwrap(), row);
    }

    #[test]
    fn decodes_a_real_shaped_page_with_paging() {
        let body = json!({
            "data": [{"ad_id": "7", "bucket_start_ms": "0", "account_currency": "EUR",
                      "spend": "1.50",
                      "actions": [{"action_type": "link_click", "value": "9"},
                                  {"action_type": "purchase", "value": "2"}],
                      "action_values": [{"action_type": "purchase", "value": "80.00"}]}],
            "paging": {"cursors": {"before": "a", "after": "b"}, "next": "https://…"}
        });
        let page = decode_insights(&body).unwrap();
        assert_eq!(page.rows[0].purchases, 2);
        assert_eq!(page.rows[0].spend.minor, 150);
        assert_eq!(page.rows[0].revenue.minor, 8000);
        assert_eq!(page.next.as_deref(), Some("b"));
        let last = json!({"data": [], "paging": {"cursors": {"before": "a", "after": "b"}}});
        assert_eq!(decode_insights(&last).unwrap().next, None, "no `next` means last page");
    }

    #[test]
    fn error_classification_table() {
        let env = |code: i64, transient: bool| {
            json!({"error": {"message": "m", "type": "OAuthException", "code": code,
                             "is_transient": transient, "fbtrace_id": "x"}})
        };
        let usage = r#"{"act_1":[{"call_count":100,"estimated_time_to_regain_access":3}]}"#;
        let cases: Vec<(u16, serde_json::Value, Option<&str>, AdsError)> = vec![
            (400, env(17, true), None, AdsError::RateLimited { code: 17, retry_after: RATE_LIMIT_DEFAULT_WAIT }),
            (400, env(80004, true), Some(usage), AdsError::RateLimited { code: 80004, retry_after: Millis(180_000) }),
            (400, env(613, false), None, AdsError::RateLimited { code: 613, retry_after: RATE_LIMIT_DEFAULT_WAIT }),
            (400, env(2, true), None, AdsError::Transient { code: 2, message: "m".into() }),
            (400, env(190, false), None, AdsError::Permanent { code: 190, message: "m".into() }),
            (503, json!("upstream"), None, AdsError::Transient { code: 503, message: "\"upstream\"".into() }),
        ];
        for (status, body, header, want) in cases {
            assert_eq!(classify_error(status, &body, header), want, "{body}");
        }
        assert!(matches!(classify_error(400, &json!({"nope": 1}), None), AdsError::Malformed(_)));
    }

    #[test]
    fn pause_success_as_bool_or_string() {
        assert!(decode_pause(&json!({"success": true})).is_ok());
        assert!(decode_pause(&json!({"success": "true"})).is_ok());
        assert!(decode_pause(&json!({"success": false})).is_err());
    }

    #[test]
    fn bad_records_are_refused() {
        let mut rec = encode_record(&InsightRow {
            ad: AdId::new("1"),
            bucket_start: Timestamp(0),
            spend: Money::new(5, Currency::EUR),
            purchases: 0,
            revenue: Money::zero(Currency::EUR),
        });
        rec.spend = "-1.00".into();
        assert!(decode_record(&rec).is_err());
        rec.spend = "1.00".into();
        rec.account_currency = "euro".into();
        assert!(decode_record(&rec).is_err());
    }
}
