//! Anthropic Messages shapes for structured output: one tool, forced; the
//! reply's `tool_use` block carries the object, `usage` the tokens.

use serde::Deserialize;

use crate::sense::models::{ModelError, Summary};

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    input: serde_json::Value,
}

#[derive(Deserialize)]
struct Usage {
    input_tokens: u32,
    output_tokens: u32,
}

#[derive(Deserialize)]
struct Reply {
    content: Vec<Block>,
    usage: Usage,
}

/// Decodes a Messages reply whose tool input is `{"label": "…"}`.
pub fn decode_summary(body: &serde_json::Value) -> Result<Summary, ModelError> {
    let reply: Reply = serde_json::from_value(body.clone()).map_err(|e| ModelError::Refused(format!("reply: {e}")))?;
    let label = reply
        .content
        .iter()
        .find(|b| b.kind == "tool_use")
        .and_then(|b| b.input.get("label")?.as_str().map(str::to_string))
        .ok_or_else(|| ModelError::Refused("no tool_use block with a label".into()))?;
    Ok(Summary { label, input_tokens: reply.usage.input_tokens, output_tokens: reply.usage.output_tokens })
}

/// Classifies an error reply (`{"type":"error","error":{"type":…}}`).
pub fn classify_error(status: u16, body: &serde_json::Value) -> ModelError {
    let kind = body.pointer("/error/type").and_then(|v| v.as_str()).unwrap_or("");
    match (status, kind) {
        (429, _) | (_, "rate_limit_error") => ModelError::RateLimited { retry_after: crate::time::Millis(5_000) },
        (529, _) | (500, _) | (_, "overloaded_error") | (_, "api_error") => ModelError::Timeout,
        _ => ModelError::Refused(format!("HTTP {status}: {body}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_tool_use_and_classifies_errors() {
        let ok = json!({"content": [{"type": "text", "text": "…"}, {"type": "tool_use", "name": "summarize",
                         "input": {"label": "steady"}}], "usage": {"input_tokens": 10, "output_tokens": 3},
                         "stop_reason": "tool_use"});
        assert_eq!(decode_summary(&ok).unwrap().label, "steady");
        assert!(decode_summary(&json!({"content": [], "usage": {"input_tokens": 1, "output_tokens": 0}})).is_err());
        let overloaded = json!({"type": "error", "error": {"type": "overloaded_error", "message": "m"}});
        assert_eq!(classify_error(529, &overloaded), ModelError::Timeout);
        assert!(matches!(classify_error(429, &json!({})), ModelError::RateLimited { .. }));
    }
}
