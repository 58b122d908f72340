//! `dlft run --config dlft.toml`: the production runner. Wiring only: the
//! worker is core's (the same one the sim runs), the store and the Meta
//! adapter are live's.
//!
//! - The store is chosen by URL (`sqlite://…` by default, `postgres://…`);
//!   migrations run at start-up, a newer schema is refused.
//! - `runner.workers` workers per process, ids `{name}-{i}`; several
//!   processes on one PostgreSQL share the queue safely (SKIP LOCKED claims,
//!   fenced writes).
//! - SIGTERM or Ctrl-C: stop claiming, hand every claim back, exit 0.
//! - Every state transition the store records is logged through `tracing`.
//! - `GET /health` and `GET /metrics` (Prometheus text) on a loopback address.
//! - Fault injection for the real crash test: `DLFT_HOLD_AT=<probe site>`
//!   (e.g. `kill_after_pause`) stops the first worker that reaches that site
//!   there, after logging `held at probe site`, so a test can SIGKILL the
//!   process between two phases of a kill. Unset in production: the probe
//!   then does nothing.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tracing::{error, info, warn};

use dlft_core::probe::{Probe, Site};
use dlft_core::store::Store;
use dlft_core::worker::{Ports, Worker};
use dlft_live::SystemClock;
use dlft_live::config::RunConfig;
use dlft_live::meta::{MetaAds, Secret};
use dlft_live::store::{Engine, PoolOptions, Stats, open_pg, open_sqlite, redact};

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Loads the config, opens the store, runs until SIGTERM.
pub async fn run(config: &Path) -> Result<()> {
    let file = config.display().to_string();
    let cfg = RunConfig::load(config)?;
    let url = cfg.store_url(&file)?;
    let meta = cfg.meta_config(&file)?;
    let webhook_secret = cfg.webhook_secret(&file)?;
    let probe = HoldProbe::from_env()?; // refuse a bad value before touching the store
    let opts = PoolOptions { max_connections: cfg.store.max_connections, ..PoolOptions::default() };
    info!(store = %redact(&url), workers = cfg.runner.workers, name = %cfg.runner.name, "starting");
    let ads = Arc::new(MetaAds::new(meta).context("building the HTTP client")?);
    match Engine::of(&url)? {
        Engine::Postgres => serve(open_pg(&url, &opts).await?, &cfg, ads, probe, webhook_secret).await,
        Engine::Sqlite => serve(open_sqlite(&url, &opts).await?, &cfg, ads, probe, webhook_secret).await,
    }
}

/// `dlft migrate --store URL`: applies the embedded migrations and exits.
pub async fn migrate(url: &str) -> Result<()> {
    let opts = PoolOptions { max_connections: 1, ..PoolOptions::default() };
    match Engine::of(url)? {
        Engine::Postgres => drop(open_pg(url, &opts).await?),
        Engine::Sqlite => drop(open_sqlite(url, &opts).await?),
    }
    println!("{}: schema at version {}", redact(url), dlft_live::store::SCHEMA_VERSION);
    Ok(())
}

/// The variable that names a probe site to hold at (fault injection).
pub const HOLD_AT_VAR: &str = "DLFT_HOLD_AT";

/// The production probe, which can be told to hold at one site (see the
/// module docs). The first worker to reach the site stays there forever.
#[derive(Clone)]
struct HoldProbe {
    site: Option<Site>,
    taken: Arc<AtomicBool>,
}

impl HoldProbe {
    #[allow(clippy::disallowed_methods, reason = "fault injection is configured from the environment")]
    fn from_env() -> Result<HoldProbe> {
        let site = match std::env::var(HOLD_AT_VAR) {
            Ok(v) if !v.is_empty() => {
                let site: Site = serde_json::from_value(serde_json::Value::String(v.clone())).map_err(|_| {
                    let names: Vec<String> = Site::ALL
                        .iter()
                        .map(|s| serde_json::to_value(s).unwrap().as_str().unwrap().to_string())
                        .collect();
                    anyhow::anyhow!("{HOLD_AT_VAR}={v:?} is not a probe site; one of: {}", names.join(", "))
                })?;
                warn!(?site, "fault injection: the first worker to reach this probe site will hold there");
                Some(site)
            }
            _ => None,
        };
        Ok(HoldProbe { site, taken: Arc::new(AtomicBool::new(false)) })
    }
}

impl Probe for HoldProbe {
    fn reached(&self, site: Site, entity: &str) -> impl std::future::Future<Output = ()> + Send {
        let hold = self.site == Some(site) && !self.taken.swap(true, Ordering::SeqCst);
        if hold {
            warn!(?site, entity, "held at probe site ({HOLD_AT_VAR})");
        }
        async move {
            if hold {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Worker RNGs (retry jitter) are seeded from the worker id: reproducible,
/// and different per worker.
fn seed_of(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

async fn serve<S>(
    store: S,
    cfg: &RunConfig,
    ads: Arc<MetaAds>,
    probe: HoldProbe,
    webhook_secret: Option<Secret>,
) -> Result<()>
where
    S: Store + Stats + Clone + Send + Sync + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(cfg.runner.http)
        .await
        .with_context(|| format!("binding the health/metrics address {}", cfg.runner.http))?;
    info!(addr = %listener.local_addr()?, "health and metrics");
    let mut app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics::<S>))
        .with_state(store.clone());
    if let Some(secret) = webhook_secret {
        info!("webhooks: POST /webhooks/meta (signed with the app secret)");
        let hooks = Router::new()
            .route("/webhooks/meta", post(webhook::<S>))
            .layer(axum::extract::DefaultBodyLimit::max(WEBHOOK_BODY_MAX))
            .with_state(Hooks { store: store.clone(), secret: Arc::new(secret) });
        app = app.merge(hooks);
    }
    let http = tokio::spawn(async move { axum::serve(listener, app).await });
    let log = tokio::spawn(log_events(store.clone(), stop.clone()));

    let mut workers = Vec::new();
    for i in 0..cfg.runner.workers {
        let wcfg = cfg.worker_config(i);
        let id = wcfg.worker.to_string();
        let mut worker = Worker {
            ports: Ports { store: store.clone(), ads: ads.clone(), clock: SystemClock, probe: probe.clone() },
            cfg: wcfg,
            loop_cfg: cfg.loop_config(),
            rng: ChaCha8Rng::seed_from_u64(seed_of(&id)),
            stop: stop.clone(),
        };
        info!(worker = %id, "worker starting");
        workers.push(tokio::spawn(async move {
            let out = worker.run(None).await;
            (id, out)
        }));
    }

    wait_for_signal().await;
    info!("stopping: no new claims; handing claims back");
    stop.store(true, Ordering::SeqCst);
    let grace = Duration::from_millis(cfg.runner.shutdown_grace_ms);
    for w in workers {
        match tokio::time::timeout(grace, w).await {
            Ok(Ok((id, Ok(())))) => info!(worker = %id, "worker stopped"),
            Ok(Ok((id, Err(e)))) => error!(worker = %id, error = %e, "worker stopped with an error"),
            Ok(Err(e)) => error!(error = %e, "worker task failed"),
            Err(_) => warn!("a worker did not stop within the grace period; its leases will expire"),
        }
    }
    http.abort();
    let _ = log.await;
    Ok(())
}

/// Webhook bodies larger than this are refused (413) unread.
const WEBHOOK_BODY_MAX: usize = 256 * 1024;

#[derive(Clone)]
struct Hooks<S> {
    store: S,
    secret: Arc<Secret>,
}

/// `POST /webhooks/meta`: a webhook is a hint. Checked (signature, shape),
/// then each status claim becomes a reconcile job that reads the ad back;
/// nothing else changes. 401 unsigned or wrongly signed, 400 not a webhook
/// (nothing enqueued), 503 the store did not answer (Meta retries).
async fn webhook<S: Store + Clone>(
    State(h): State<Hooks<S>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let signature = headers.get(dlft_live::webhook::SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if let Err(why) = dlft_live::webhook::verify(&h.secret, &body, signature) {
        warn!(why, "webhook refused");
        return (StatusCode::UNAUTHORIZED, format!("{why}\n"));
    }
    let hints = serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(|v| dlft_core::wire::meta::decode_status_webhook(&v));
    let hints = match hints {
        Ok(h) => h,
        Err(why) => {
            warn!(why = %why, "webhook refused");
            return (StatusCode::BAD_REQUEST, format!("{why}\n"));
        }
    };
    for hint in &hints {
        let now = dlft_core::time::Clock::now(&SystemClock);
        if let Err(e) = dlft_core::webhook::accept(&h.store, hint, now).await {
            error!(error = %e, "webhook: the store did not take the reconcile job");
            return (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n"));
        }
    }
    info!(hints = hints.len(), "webhook accepted: reconcile jobs enqueued");
    (StatusCode::OK, format!("{} reconcile jobs\n", hints.len()))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        tokio::select! {
            _ = term.recv() => info!("SIGTERM"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Logs every event row as a structured line, from the newest on start-up.
async fn log_events<S: Store>(store: S, stop: Arc<AtomicBool>) {
    let mut after = match store.events(0).await {
        Ok(all) => all.last().map_or(0, |e| e.seq),
        Err(_) => 0,
    };
    while !stop.load(Ordering::SeqCst) {
        match store.events(after).await {
            Ok(events) => {
                for e in events {
                    info!(seq = e.seq, block = ?e.block, kind = ?e.kind, entity = %e.entity,
                          before = %e.before, after = %e.after, cause = %e.cause, "event");
                    after = e.seq;
                }
            }
            Err(e) => warn!(error = %e, "store unavailable; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn metrics<S: Stats>(State(store): State<S>) -> impl IntoResponse {
    match store.stats().await {
        Ok(s) => {
            let mut out = String::new();
            out.push_str("# HELP dlft_queue_depth Live jobs by kind and state.\n# TYPE dlft_queue_depth gauge\n");
            for (kind, state, n) in &s.depth {
                let _ = writeln!(out, "dlft_queue_depth{{kind=\"{kind}\",state=\"{state}\"}} {n}");
            }
            out.push_str("# HELP dlft_claims_total Claims made.\n# TYPE dlft_claims_total counter\n");
            let _ = writeln!(out, "dlft_claims_total {}", s.claims_total);
            out.push_str("# HELP dlft_intents Kill intents by phase (abandoned ones need an operator).\n");
            out.push_str("# TYPE dlft_intents gauge\n");
            for (phase, n) in &s.intents {
                let _ = writeln!(out, "dlft_intents{{phase=\"{phase}\"}} {n}");
            }
            out.push_str("# HELP dlft_breaker_open 1 if the schedule is disabled (breaker or operator).\n");
            out.push_str("# TYPE dlft_breaker_open gauge\n");
            for r in &s.schedules {
                let _ = writeln!(out, "dlft_breaker_open{{schedule=\"{}\"}} {}", r.name, u8::from(!r.enabled));
            }
            out.push_str(
                "# HELP dlft_spend_after_kill_minor Leak: spend booked in buckets after an ad's kill committed.\n\
                 # TYPE dlft_spend_after_kill_minor gauge\n",
            );
            if s.spend_after_kill.is_empty() {
                out.push_str("dlft_spend_after_kill_minor 0\n");
            }
            for (currency, n) in &s.spend_after_kill {
                let _ = writeln!(out, "dlft_spend_after_kill_minor{{currency=\"{currency}\"}} {n}");
            }
            (axum::http::StatusCode::OK, out)
        }
        Err(e) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("# store unavailable: {e}\n")),
    }
}
