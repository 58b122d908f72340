//! Gemini's shapes for the support call (`POST /v1beta/models/{model}:
//! generateContent`, header `x-goog-api-key`): structured output through
//! `generationConfig.responseMimeType = "application/json"` and a
//! `responseSchema` (an OpenAPI subset: fields it does not support, such as
//! `additionalProperties`, are ignored by the vendor, so the proposal
//! parser stays the judge); the answer's text parts carry the JSON;
//! `usageMetadata` bills thinking tokens as output. Errors are
//! `{"error": {"code", "status", "message", "details"}}`: 429
//! RESOURCE_EXHAUSTED (a `RetryInfo.retryDelay` when given), 503
//! UNAVAILABLE, 500 INTERNAL, 504 DEADLINE_EXCEEDED, 401/403, 400.

use crate::sense::models::{Completion, ModelError, Prompt};
use crate::time::Millis;

/// A `generateContent` request for one support proposal.
pub fn proposal_request(prompt: &Prompt, max_output_tokens: u32) -> serde_json::Value {
    let mut schema: serde_json::Value = serde_json::from_str(&prompt.schema).unwrap_or(serde_json::Value::Null);
    if let Some(o) = schema.as_object_mut() {
        o.remove("additionalProperties");
    }
    let mut user = format!("Facts (trusted):\n{}\n\n{}", prompt.facts, prompt.customer);
    for (i, e) in prompt.repairs.iter().enumerate() {
        user.push_str(&format!("\n\nYour answer {} was invalid: {e}. Answer again with valid JSON.", i + 1));
    }
    serde_json::json!({
        "systemInstruction": {"parts": [{"text": prompt.system}]},
        "contents": [{"role": "user", "parts": [{"text": user}]}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": schema,
            "maxOutputTokens": max_output_tokens,
            "candidateCount": 1
        }
    })
}

fn tokens(body: &serde_json::Value, field: &str) -> u32 {
    body.pointer(&format!("/usageMetadata/{field}"))
        .and_then(serde_json::Value::as_u64)
        .map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX))
}

/// Decodes a `generateContent` answer into the proposal's raw JSON (to be
/// validated by the caller) and its usage. A blocked prompt or a candidate
/// stopped for safety is `Refused`.
pub fn decode_completion(body: &serde_json::Value) -> Result<Completion, ModelError> {
    if let Some(reason) = body.pointer("/promptFeedback/blockReason").and_then(|v| v.as_str()) {
        return Err(ModelError::Refused(format!("prompt blocked: {reason}")));
    }
    let candidate =
        body.pointer("/candidates/0").ok_or_else(|| ModelError::Refused("an answer without candidates".into()))?;
    let finish = candidate.get("finishReason").and_then(|v| v.as_str()).unwrap_or("");
    if matches!(finish, "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII") {
        return Err(ModelError::Refused(format!("candidate stopped: {finish}")));
    }
    let text: String = candidate
        .pointer("/content/parts")
        .and_then(|p| p.as_array())
        .map(|parts| parts.iter().filter_map(|p| p.get("text").and_then(|t| t.as_str())).collect())
        .unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ModelError::Refused(format!("an answer without text (finishReason {finish:?})")));
    }
    Ok(Completion {
        raw: text,
        input_tokens: tokens(body, "promptTokenCount"),
        output_tokens: tokens(body, "candidatesTokenCount").saturating_add(tokens(body, "thoughtsTokenCount")),
        model: None,
    })
}

/// `"12s"` or `"1.5s"` → milliseconds.
fn delay_of(text: &str) -> Option<Millis> {
    let secs = text.strip_suffix('s')?;
    let (whole, frac) = secs.split_once('.').unwrap_or((secs, ""));
    let whole: u64 = whole.parse().ok()?;
    let frac_ms: u64 = if frac.is_empty() { 0 } else { format!("{frac:0<3}").get(..3)?.parse().ok()? };
    Some(Millis(whole.min(3_600) * 1_000 + frac_ms))
}

/// Classifies an error answer.
pub fn classify_error(status: u16, body: &serde_json::Value) -> ModelError {
    let code = body.pointer("/error/status").and_then(|v| v.as_str()).unwrap_or("");
    let message = body.pointer("/error/message").and_then(|v| v.as_str()).unwrap_or("").to_string();
    let retry = body
        .pointer("/error/details")
        .and_then(|d| d.as_array())
        .and_then(|d| d.iter().find_map(|x| x.get("retryDelay").and_then(|r| r.as_str()).and_then(delay_of)));
    let lower = message.to_ascii_lowercase();
    match (status, code) {
        (429, _) | (_, "RESOURCE_EXHAUSTED") if lower.contains("billing") || lower.contains("credit") => {
            ModelError::SpendLimit(message)
        }
        (429, _) | (_, "RESOURCE_EXHAUSTED") => ModelError::RateLimited { retry_after: retry.unwrap_or(Millis(5_000)) },
        (503, _) | (_, "UNAVAILABLE") => ModelError::Overloaded,
        (401, _) | (403, _) | (_, "UNAUTHENTICATED") | (_, "PERMISSION_DENIED") => ModelError::Auth(message),
        (500..=599, _) | (_, "INTERNAL") | (_, "DEADLINE_EXCEEDED") => ModelError::Timeout,
        _ => ModelError::Refused(format!("HTTP {status} {code}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prompt() -> Prompt {
        Prompt {
            system: "You answer customers.".into(),
            facts: r#"{"order_id":"1"}"#.into(),
            customer: "<<<untrusted>>>\nhello\n<<<end>>>".into(),
            schema: json!({"type": "object", "additionalProperties": false,
                           "properties": {"action": {"type": "string", "enum": ["reply"]}}})
            .to_string(),
            repairs: vec!["reply is empty".into()],
        }
    }

    #[test]
    fn a_request_asks_for_json_in_the_schema_and_an_answer_decodes() {
        let req = proposal_request(&prompt(), 1024);
        assert_eq!(req["generationConfig"]["responseMimeType"], "application/json");
        assert!(req["generationConfig"]["responseSchema"].get("additionalProperties").is_none());
        assert!(req["contents"][0]["parts"][0]["text"].as_str().unwrap().contains("answer 1 was invalid"));
        let ok = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "{\"action\":"}, {"text": "\"reply\",\"reply\":\"Hi\"}"}]},
                         "finishReason": "STOP"}],
                        "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 20, "thoughtsTokenCount": 40, "totalTokenCount": 360}});
        let c = decode_completion(&ok).unwrap();
        assert_eq!(c.raw, r#"{"action":"reply","reply":"Hi"}"#);
        assert_eq!((c.input_tokens, c.output_tokens), (300, 60), "thinking bills as output");
        assert!(matches!(
            decode_completion(&json!({"promptFeedback": {"blockReason": "SAFETY"}})),
            Err(ModelError::Refused(_))
        ));
        let stopped = json!({"candidates": [{"content": {"parts": []}, "finishReason": "SAFETY"}]});
        assert!(matches!(decode_completion(&stopped), Err(ModelError::Refused(m)) if m.contains("SAFETY")));
    }

    #[test]
    fn errors_are_classified_as_the_vendor_documents_them() {
        let limited = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"}]}});
        assert_eq!(classify_error(429, &limited), ModelError::RateLimited { retry_after: Millis(12_500) });
        let unavailable =
            json!({"error": {"code": 503, "status": "UNAVAILABLE", "message": "The model is overloaded."}});
        assert_eq!(classify_error(503, &unavailable), ModelError::Overloaded);
        let denied = json!({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "API key not valid"}});
        assert!(matches!(classify_error(403, &denied), ModelError::Auth(_)));
        let billing = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Your prepaid credits are depleted. Check billing."}});
        assert!(matches!(classify_error(429, &billing), ModelError::SpendLimit(_)));
        assert_eq!(classify_error(504, &json!({"error": {"status": "DEADLINE_EXCEEDED"}})), ModelError::Timeout);
        assert!(matches!(
            classify_error(400, &json!({"error": {"status": "INVALID_ARGUMENT"}})),
            ModelError::Refused(_)
        ));
        assert_eq!(delay_of("7s"), Some(Millis(7_000)));
        assert_eq!(delay_of("soon"), None);
    }
}
