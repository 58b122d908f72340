//! One customer message answered: sanitise, detect the language, look for
//! manipulation, compute the ceilings from the trusted records, ask the
//! model for one action of the menu (repairing a malformed answer at most
//! `max_repairs` times, each a call of its own), and let the gate judge.
//! `dlft support judge` runs exactly this offline; the inbox job will run
//! it with the reply actuator behind the gate.

use serde::{Deserialize, Serialize};

use crate::config::Sabotage;
use crate::envelope::gate::{GateVerdict, gate};
use crate::envelope::scan::manipulation;
use crate::propose::router::{Breaker, BreakerRules, CallClass, Deployment, route};
use crate::propose::support::{SupportFacts, SupportOrder, SupportPolicy, build_prompt, ceilings, parse_proposal};
use crate::sense::inbox::{Detected, InboundMessage, detect_language, sanitize};
use crate::sense::models::{Completion, ModelError, Prompt, TextModel};
use crate::time::Clock;

/// One model call of an answer (each is booked as a cost row where a store
/// is at hand).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCall {
    pub call_id: String,
    /// The deployment that answered (`vendor/model`), when a router chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// Why the call gave no usable proposal (malformed, timed out, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub message: String,
    pub detected: Detected,
    pub facts: SupportFacts,
    pub calls: Vec<ModelCall>,
    pub verdict: GateVerdict,
}

/// Answers `msg` about `order`.
pub async fn answer<M: TextModel>(
    model: &M,
    order: &SupportOrder,
    policy: &SupportPolicy,
    msg: &InboundMessage,
    sabotage: Sabotage,
) -> Answer {
    let (text, mut notes) = sanitize(&msg.text);
    let detected = detect_language(&text);
    if let Some(other) = &detected.unsupported {
        notes.push(format!("message in an unsupported language ({other}): answered in English"));
    }
    let signals = if sabotage == Sabotage::NoDetection { Vec::new() } else { manipulation(&text) };
    let (refund_ceiling, credit_ceiling) = ceilings(order, policy);
    let facts = SupportFacts {
        order_id: order.id.clone(),
        order_total: order.total,
        shipment: order.shipment,
        language: detected.language,
        refund_ceiling,
        credit_ceiling,
    };
    let mut calls = Vec::new();
    let mut proposal = None;
    if text.trim().is_empty() {
        notes.push("empty message: no model call".into());
    } else {
        let mut prompt = build_prompt(&facts, &text);
        for attempt in 0..=policy.max_repairs {
            let call_id = format!("{}/{attempt}", msg.id);
            match model.complete(&call_id, &prompt).await {
                Ok(c) => {
                    let parsed = parse_proposal(&c.raw);
                    calls.push(ModelCall {
                        call_id,
                        model: c.model.clone(),
                        input_tokens: c.input_tokens,
                        output_tokens: c.output_tokens,
                        error: parsed.as_ref().err().cloned(),
                    });
                    match parsed {
                        Ok(p) => {
                            proposal = Some(p);
                            break;
                        }
                        Err(e) => prompt.repairs.push(e),
                    }
                }
                Err(e) => {
                    calls.push(ModelCall {
                        call_id,
                        model: None,
                        input_tokens: 0,
                        output_tokens: 0,
                        error: Some(e.to_string()),
                    });
                    break;
                }
            }
        }
        if proposal.is_none()
            && let Some(why) = calls.last().and_then(|c| c.error.clone())
        {
            notes.push(format!("model gave no usable proposal after {} call(s): {why}", calls.len()));
        }
    }
    let mut verdict = gate(&facts, policy, proposal.as_ref(), &signals, sabotage == Sabotage::OpenGate);
    notes.append(&mut verdict.reasons);
    verdict.reasons = notes;
    Answer { message: msg.id.clone(), detected, facts, calls, verdict }
}

/// Text models behind the router's rules: deployments in failover order,
/// one breaker per deployment. A retryable error, bad credentials or an
/// exhausted spend limit moves on to the next deployment; a refusal ends
/// the call. The breakers live in this value (one process); keeping them
/// in the store, so that every worker agrees, is not built yet.
pub struct Routed<M, C> {
    pub deployments: Vec<(Deployment, M)>,
    pub breakers: std::sync::Mutex<std::collections::BTreeMap<(String, String), Breaker>>,
    /// Calls made and failed, per deployment (keyed as the breakers are).
    pub tally: std::sync::Mutex<std::collections::BTreeMap<(String, String), (u32, u32)>>,
    pub rules: BreakerRules,
    pub clock: C,
}

impl<M, C> Routed<M, C> {
    pub fn new(deployments: Vec<(Deployment, M)>, rules: BreakerRules, clock: C) -> Routed<M, C> {
        Routed { deployments, breakers: std::sync::Mutex::default(), tally: std::sync::Mutex::default(), rules, clock }
    }

    /// Each deployment's breaker as it stands (for reports).
    pub fn breakers(&self) -> std::collections::BTreeMap<(String, String), Breaker> {
        self.breakers.lock().expect("breakers lock").clone()
    }
}

impl<M: TextModel, C: Clock> TextModel for Routed<M, C> {
    async fn complete(&self, call_id: &str, prompt: &Prompt) -> Result<Completion, ModelError> {
        let now = self.clock.now();
        let order: Vec<Deployment> = self.deployments.iter().map(|(d, _)| d.clone()).collect();
        let chosen: Vec<Deployment> = {
            let breakers = self.breakers.lock().expect("breakers lock");
            route(&order, |d| breakers.get(&d.key()), now).into_iter().cloned().collect()
        };
        let mut last = ModelError::SpendLimit("no deployment may be called (spend limits or credentials)".into());
        for d in chosen {
            let Some((_, model)) = self.deployments.iter().find(|(x, _)| *x == d) else { continue };
            {
                let mut breakers = self.breakers.lock().expect("breakers lock");
                let b = breakers.get(&d.key()).cloned().unwrap_or_else(|| Breaker::closed(now));
                if b.admits(now) == Some(true) {
                    breakers.insert(d.key(), b.probe_sent(now));
                }
            }
            let result = model.complete(&format!("{call_id}@{}", d.vendor), prompt).await;
            let class = CallClass::of(&result.as_ref().map(|_| ()).map_err(Clone::clone));
            {
                let mut breakers = self.breakers.lock().expect("breakers lock");
                let b = breakers.get(&d.key()).cloned().unwrap_or_else(|| Breaker::closed(now));
                breakers.insert(d.key(), b.after(&class, now, &self.rules));
                let mut tally = self.tally.lock().expect("tally lock");
                let t = tally.entry(d.key()).or_default();
                t.0 += 1;
                t.1 += u32::from(result.is_err());
            }
            match result {
                Ok(mut c) => {
                    c.model = Some(format!("{}/{}", d.vendor, d.model));
                    return Ok(c);
                }
                Err(e @ ModelError::Refused(_)) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
