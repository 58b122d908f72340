//! `dlft run`'s config file (`dlft.toml`). Strict: an unknown key is an
//! error naming it; a secret is never in the file, only the name of the
//! environment variable that holds it.

#![allow(clippy::disallowed_methods, reason = "live is where the environment is read (secrets, test settings)")]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use dlft_core::config::{LoopSettings, PlatformShape};
use dlft_core::money::Currency;
use dlft_core::time::Millis;
use serde::Deserialize;

use crate::meta::{MetaConfig, Secret};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default)]
    pub store: StoreSection,
    pub runner: RunnerSection,
    pub meta: MetaSection,
    #[serde(rename = "loop")]
    pub control: LoopSettings,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite://PATH` (the default: `sqlite://dlft.db`) or `postgres://…`.
    /// `${VAR}` in it is replaced by the environment variable (for passwords).
    #[serde(default = "default_url")]
    pub url: String,
    #[serde(default = "default_connections")]
    pub max_connections: u32,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection { url: default_url(), max_connections: default_connections() }
    }
}

fn default_url() -> String {
    "sqlite://dlft.db".into()
}

fn default_connections() -> u32 {
    8
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerSection {
    /// This process's name; its workers are `{name}-1` … `{name}-{workers}`,
    /// stable across restarts (a restart releases what its last life held).
    pub name: String,
    #[serde(default = "one")]
    pub workers: u32,
    /// Health and Prometheus metrics; must be a loopback address.
    #[serde(default = "default_http")]
    pub http: SocketAddr,
    /// How long SIGTERM waits for in-flight work to hand its claims back.
    #[serde(default = "default_grace")]
    pub shutdown_grace_ms: u64,
}

fn one() -> u32 {
    1
}

fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

fn default_grace() -> u64 {
    10_000
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaSection {
    pub base_url: String,
    pub account_id: String,
    /// The environment variable holding the access token.
    pub token_env: String,
    /// The environment variable holding the app secret that signs webhooks;
    /// set it to serve `POST /webhooks/meta` (absent: no webhook endpoint).
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    pub currency: String,
    /// The insights bucket: 3600 on Meta (hourly breakdown); shorter in the sandbox.
    #[serde(default = "hour")]
    pub bucket_s: u64,
    #[serde(default = "default_page_limit")]
    pub page_limit: u32,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub account_utc_offset_min: i32,
    /// How far back the estimator reads the ledger.
    #[serde(default = "week")]
    pub estimate_window_s: u64,
}

fn hour() -> u64 {
    3600
}
fn default_page_limit() -> u32 {
    100
}
fn default_timeout() -> u64 {
    10_000
}
fn week() -> u64 {
    7 * 24 * 3600
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{file}: the secret {var} is not set (meta.token_env names it; secrets never go in the file)")]
    MissingSecret { file: String, var: String },
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<RunConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        RunConfig::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<RunConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { file: file.to_string(), message };
        let de = toml::Deserializer::parse(text).map_err(|e| invalid(e.to_string()))?;
        let cfg: RunConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| invalid(format!("field `{}`: {}", e.path(), e.inner().message())))?;
        if !cfg.runner.http.ip().is_loopback() {
            return Err(invalid(format!("field `runner.http`: {} is not a loopback address", cfg.runner.http)));
        }
        if cfg.runner.workers == 0 || cfg.runner.workers > 64 {
            return Err(invalid("field `runner.workers`: must be 1..=64".into()));
        }
        Currency::parse(&cfg.meta.currency).map_err(|e| invalid(format!("field `meta.currency`: {e}")))?;
        if cfg.meta.bucket_s == 0 {
            return Err(invalid("field `meta.bucket_s`: must be positive".into()));
        }
        let (w, l) = (cfg.worker_config(0), cfg.loop_config());
        dlft_core::config::validate(&w, &l).map_err(|m| invalid(format!("[loop]: {m}")))?;
        Ok(cfg)
    }

    pub fn loop_config(&self) -> dlft_core::config::LoopConfig {
        let platform = PlatformShape {
            currency: Currency::parse(&self.meta.currency).expect("validated"),
            bucket: Millis::from_secs(self.meta.bucket_s),
            page_limit: self.meta.page_limit,
        };
        self.control.loop_config(&platform, Millis::from_secs(self.meta.estimate_window_s), None)
    }

    /// Worker `i` (0-based) of this process.
    pub fn worker_config(&self, i: u32) -> dlft_core::config::WorkerConfig {
        let id = dlft_core::ids::WorkerId::new(format!("{}-{}", self.runner.name, i + 1));
        self.control.worker_config(id, dlft_core::config::Sabotage::None)
    }

    /// The store URL with `${VAR}` references filled from the environment.
    pub fn store_url(&self, file: &str) -> Result<String, ConfigError> {
        let mut url = self.store.url.clone();
        while let Some(start) = url.find("${") {
            let Some(len) = url[start..].find('}') else { break };
            let var = url[start + 2..start + len].to_string();
            let value = std::env::var(&var)
                .map_err(|_| ConfigError::MissingSecret { file: file.to_string(), var: var.clone() })?;
            url.replace_range(start..start + len + 1, &value);
        }
        Ok(url)
    }

    /// The webhook signing secret, if webhooks are configured.
    pub fn webhook_secret(&self, file: &str) -> Result<Option<Secret>, ConfigError> {
        let Some(var) = &self.meta.webhook_secret_env else { return Ok(None) };
        let secret = std::env::var(var)
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ConfigError::MissingSecret { file: file.to_string(), var: var.clone() })?;
        Ok(Some(Secret::new(secret)))
    }

    /// The Meta adapter's settings, with the token read from the environment.
    pub fn meta_config(&self, file: &str) -> Result<MetaConfig, ConfigError> {
        let var = &self.meta.token_env;
        let token = std::env::var(var)
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ConfigError::MissingSecret { file: file.to_string(), var: var.clone() })?;
        Ok(MetaConfig {
            base_url: self.meta.base_url.clone(),
            account_id: self.meta.account_id.clone(),
            token: Secret::new(token),
            timeout: Duration::from_millis(self.meta.timeout_ms),
            account_utc_offset_min: self.meta.account_utc_offset_min,
        })
    }
}
