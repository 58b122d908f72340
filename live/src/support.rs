//! The support loop's live adapters (reqwest): the AgentMail inbox
//! (threads, a thread's messages, a reply) and the text model vendors
//! (Anthropic's Messages API with a forced tool, Gemini's
//! `generateContent` with a response schema). Wire shapes and error classes
//! live in core (`dlft_core::sense::wire::{agentmail, anthropic, gemini}`);
//! this file moves bytes and maps transport failures: for a send, a timeout
//! or a reply cut off is an unknown outcome (the actuator reads the thread
//! for its marker before sending again); for a model call, a timeout.
//!
//! Every model call carries its booked cost row's id in `x-dlft-call-id`
//! (the vendors ignore it; the sandbox bills under it), so a bill and its
//! row can be matched.

use std::time::Duration;

use dlft_core::sense::inbox::{Inbox, InboxError, MailMessage, SentReply, ThreadPage};
use dlft_core::sense::models::{Completion, ModelError, Prompt, TextVendors};
use dlft_core::sense::wire::{agentmail, anthropic, gemini};
use serde_json::Value;

use crate::meta::Secret;

/// Anthropic's API version header.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

#[derive(Clone, Debug)]
pub struct AgentMailConfig {
    /// `https://api.agentmail.to`, or a sandbox's `…/agentmail`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …`.
    pub key: Secret,
    pub timeout: Duration,
}

/// The AgentMail inbox.
#[derive(Clone, Debug)]
pub struct AgentMail {
    http: reqwest::Client,
    cfg: AgentMailConfig,
    /// Whose inbox this is (the vendor counters' `brand` label).
    brand: dlft_core::ids::BrandId,
}

fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}

impl AgentMail {
    pub fn new(cfg: AgentMailConfig) -> Result<AgentMail, reqwest::Error> {
        Ok(AgentMail { http: reqwest::Client::builder().timeout(cfg.timeout).build()?, cfg, brand: Default::default() })
    }

    /// Names the brand whose inbox this is (the vendor counters' label).
    #[must_use]
    pub fn for_brand(mut self, brand: dlft_core::ids::BrandId) -> AgentMail {
        self.brand = brand;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v0/{path}", self.cfg.base_url.trim_end_matches('/'))
    }

    /// One exchange: the status, the body as JSON (an error body that is
    /// not JSON becomes a string), and the `Retry-After` header.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, Value, Option<u64>), InboxError> {
        let sent = req.bearer_auth(self.cfg.key.expose()).send().await;
        crate::calls::observe("agentmail", &self.brand, &sent);
        let resp = sent.map_err(inbox_transport)?;
        let status = resp.status().as_u16();
        let wait = retry_after(&resp);
        let text = resp.text().await.map_err(inbox_transport)?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text.chars().take(200).collect()));
        Ok((status, body, wait))
    }
}

/// A transport failure: the outcome is unknown to the caller (for a send,
/// the actuator reads the thread for its marker before sending again; a
/// connection that never opened says so in the message).
fn inbox_transport(e: reqwest::Error) -> InboxError {
    if e.is_connect() {
        InboxError::Unknown(format!("unreachable: {e}"))
    } else {
        InboxError::Unknown(format!("no answer: {e}"))
    }
}

fn segment(s: &str) -> String {
    // Message ids are `<…@…>`: percent-encode what a path may not carry.
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'@' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Inbox for AgentMail {
    async fn send_reply(&self, inbox: &str, message_id: &str, text: &str) -> Result<SentReply, InboxError> {
        let url = self.url(&format!("inboxes/{}/messages/{}/reply", segment(inbox), segment(message_id)));
        let (status, body, wait) = self.send(self.http.post(url).json(&serde_json::json!({ "text": text }))).await?;
        if status == 429 {
            return Err(agentmail::classify_error(status, &body, wait));
        }
        agentmail::decode_sent(status, &body)
    }

    async fn thread(&self, inbox: &str, thread_id: &str) -> Result<Vec<MailMessage>, InboxError> {
        let url = self.url(&format!("inboxes/{}/threads/{}", segment(inbox), segment(thread_id)));
        let (status, body, wait) = self.send(self.http.get(url)).await?;
        if status == 429 {
            return Err(agentmail::classify_error(status, &body, wait));
        }
        agentmail::decode_thread(status, &body)
    }

    async fn threads(&self, inbox: &str, page_token: Option<&str>) -> Result<ThreadPage, InboxError> {
        let mut req = self.http.get(self.url(&format!("inboxes/{}/threads", segment(inbox)))).query(&[("limit", "50")]);
        if let Some(t) = page_token {
            req = req.query(&[("page_token", t)]);
        }
        let (status, body, wait) = self.send(req).await?;
        if status == 429 {
            return Err(agentmail::classify_error(status, &body, wait));
        }
        agentmail::decode_threads(status, &body)
    }
}

/// One text model vendor's endpoint and key.
#[derive(Clone, Debug)]
pub struct VendorEndpoint {
    /// `https://api.anthropic.com` / `https://generativelanguage.googleapis.com`,
    /// or a sandbox's `…/anthropic` / `…/gemini`.
    pub base_url: String,
    pub key: Secret,
}

#[derive(Clone, Debug)]
pub struct ModelsConfig {
    pub anthropic: Option<VendorEndpoint>,
    pub gemini: Option<VendorEndpoint>,
    /// The most a call may answer (`max_tokens`, `maxOutputTokens`).
    pub max_output_tokens: u32,
    pub timeout: Duration,
}

/// The text model vendors a brand may call.
#[derive(Clone, Debug)]
pub struct LiveModels {
    http: reqwest::Client,
    cfg: ModelsConfig,
    /// Whose calls these are (the vendor counters' `brand` label).
    brand: dlft_core::ids::BrandId,
}

impl LiveModels {
    pub fn new(cfg: ModelsConfig) -> Result<LiveModels, reqwest::Error> {
        Ok(LiveModels {
            http: reqwest::Client::builder().timeout(cfg.timeout).build()?,
            cfg,
            brand: Default::default(),
        })
    }

    /// Names the brand whose calls these are (the vendor counters' label).
    #[must_use]
    pub fn for_brand(mut self, brand: dlft_core::ids::BrandId) -> LiveModels {
        self.brand = brand;
        self
    }
}

/// A model call that got no answer: a timeout for the router (retryable,
/// counted by the breaker); one that never connected is the same to it.
fn model_transport(_e: reqwest::Error) -> ModelError {
    ModelError::Timeout
}

impl TextVendors for LiveModels {
    async fn complete_at(
        &self,
        vendor: &str,
        model: &str,
        call_id: &str,
        prompt: &Prompt,
    ) -> Result<Completion, ModelError> {
        let req = match vendor {
            "anthropic" => {
                let Some(e) = &self.cfg.anthropic else {
                    return Err(ModelError::Auth("no anthropic endpoint configured".into()));
                };
                let url = format!("{}/v1/messages", e.base_url.trim_end_matches('/'));
                let body = anthropic::proposal_request(model, self.cfg.max_output_tokens, prompt);
                self.http
                    .post(url)
                    .header("x-api-key", e.key.expose())
                    .header("anthropic-version", ANTHROPIC_VERSION)
                    .json(&body)
            }
            "gemini" => {
                let Some(e) = &self.cfg.gemini else {
                    return Err(ModelError::Auth("no gemini endpoint configured".into()));
                };
                let url =
                    format!("{}/v1beta/models/{}:generateContent", e.base_url.trim_end_matches('/'), segment(model));
                let body = gemini::proposal_request(prompt, self.cfg.max_output_tokens);
                self.http.post(url).header("x-goog-api-key", e.key.expose()).json(&body)
            }
            other => return Err(ModelError::Auth(format!("no text model vendor {other:?}"))),
        };
        let sent = req.header("x-dlft-call-id", call_id).send().await;
        crate::calls::observe(vendor, &self.brand, &sent);
        let resp = sent.map_err(model_transport)?;
        let status = resp.status().as_u16();
        let wait = retry_after(&resp);
        let text = resp.text().await.map_err(model_transport)?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.chars().take(200).collect()));
        match (vendor, status) {
            ("anthropic", 200) => anthropic::decode_completion(&body),
            ("anthropic", _) => Err(anthropic::classify_error_with(status, &body, wait)),
            (_, 200) => gemini::decode_completion(&body),
            _ => Err(gemini::classify_error(status, &body)),
        }
    }
}
