//! The model vendor port (LLMs). Models only *propose* (a label, a summary);
//! what they say never moves money without the envelope.
//!
//! Paid calls are booked before they are made: the cost row is written with
//! the call's id, and the id is sent with the call, so the vendor's bill and
//! the cost ledger can be matched one to one even across crashes.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::sense::ads::LibraryAd;
use crate::time::Millis;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// What the model proposes: `aggressive`, `steady`, `quiet`.
    pub label: String,
    pub input_tokens: u32,
    pub output_tokens: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ModelError {
    #[error("model vendor timed out")]
    Timeout,
    #[error("model vendor rate limited; retry after {retry_after:?}")]
    RateLimited { retry_after: Millis },
    #[error("model vendor refused: {0}")]
    Refused(String),
    /// The vendor is overloaded (Anthropic 529, Gemini 503): retry later
    /// or fail over; counts toward the breaker's failure rate.
    #[error("model vendor overloaded")]
    Overloaded,
    /// The account's spend limit or credits are exhausted: never retried;
    /// the breaker trips for hours.
    #[error("model vendor spend limit reached: {0}")]
    SpendLimit(String),
    /// The key is refused: the breaker trips at once.
    #[error("model vendor refused the credentials: {0}")]
    Auth(String),
}

impl ModelError {
    /// Whether the same call may be tried again (at this vendor or another).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ModelError::Timeout | ModelError::RateLimited { .. } | ModelError::Overloaded)
    }
}

pub trait Models: Send + Sync {
    /// Summarizes a store's new library ads. `call_id` is the booked cost
    /// row's id, sent along so the bill can be matched to it.
    fn summarize(
        &self,
        call_id: &str,
        page: &str,
        ads: &[LibraryAd],
    ) -> impl Future<Output = Result<Summary, ModelError>> + Send;
}

impl<T: Models> Models for &T {
    fn summarize(
        &self,
        call_id: &str,
        page: &str,
        ads: &[LibraryAd],
    ) -> impl Future<Output = Result<Summary, ModelError>> + Send {
        (**self).summarize(call_id, page, ads)
    }
}

impl<T: Models> Models for std::sync::Arc<T> {
    fn summarize(
        &self,
        call_id: &str,
        page: &str,
        ads: &[LibraryAd],
    ) -> impl Future<Output = Result<Summary, ModelError>> + Send {
        (**self).summarize(call_id, page, ads)
    }
}

/// A prompt as the support loop sends it: the instructions, the trusted
/// facts (computed by code from the order, the profile and the policy) and
/// the customer's words, kept apart and marked as untrusted (spotlighting:
/// a heuristic, never the boundary; the gate is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub system: String,
    /// JSON: what code decided the model may choose among.
    pub facts: String,
    /// The customer's message, sanitised, between markers.
    pub customer: String,
    /// The JSON schema of the one tool the model must call.
    pub schema: String,
    /// The validator's complaints about earlier answers (the repair loop).
    pub repairs: Vec<String>,
}

/// What a text model answered: the forced tool's input as raw JSON (never
/// trusted: parsed and validated by the caller) and what it cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub raw: String,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// The deployment (`vendor/model`) that answered, when a router chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A text model vendor (Anthropic, Gemini; the sim's vendor).
pub trait TextModel: Send + Sync {
    /// One call with a forced tool. `call_id` is the booked cost row's id.
    fn complete(&self, call_id: &str, prompt: &Prompt) -> impl Future<Output = Result<Completion, ModelError>> + Send;
}

/// Text models addressed by deployment (vendor and model id): the port the
/// support job reaches Anthropic and Gemini through (the sim's vendors,
/// the sandbox's). The provided method is a brand without one: every call
/// is refused as bad credentials (the breaker opens, nothing is billed).
pub trait TextVendors: Send + Sync {
    fn complete_at(
        &self,
        vendor: &str,
        _model: &str,
        _call_id: &str,
        _prompt: &Prompt,
    ) -> impl Future<Output = Result<Completion, ModelError>> + Send {
        std::future::ready(Err(ModelError::Auth(format!("no {vendor} text model configured for this brand"))))
    }
}

impl<T: TextVendors> TextVendors for &T {
    fn complete_at(
        &self,
        vendor: &str,
        model: &str,
        call_id: &str,
        prompt: &Prompt,
    ) -> impl Future<Output = Result<Completion, ModelError>> + Send {
        (**self).complete_at(vendor, model, call_id, prompt)
    }
}

impl TextVendors for crate::sense::bank::NoBank {}

impl<T: TextModel> TextModel for &T {
    fn complete(&self, call_id: &str, prompt: &Prompt) -> impl Future<Output = Result<Completion, ModelError>> + Send {
        (**self).complete(call_id, prompt)
    }
}
