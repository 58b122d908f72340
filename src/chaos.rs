//! `dlft sandbox chaos`: an HTTP proxy that makes the network between
//! `dlft run` and its vendors unreliable, for soaks (benches/soak.sh) and
//! for trying the runner by hand: point a config's base URLs at it instead
//! of at the sandbox (or any plain-HTTP upstream).
//!
//! Each request draws one fate from a seeded stream, in order of arrival:
//! - `pass`: forwarded after a latency drawn from `--latency-ms`;
//! - `slow`: forwarded after 1–3 s more;
//! - `unavailable`: answered 503 without being forwarded (no effect);
//! - `lost_reply`: forwarded (the effect happens), answered 502;
//! - `reset`: the connection is closed without an answer, not forwarded;
//! - `reset_after`: forwarded (the effect happens), then the connection is
//!   closed without an answer: the reply is lost;
//! - `stall`: held 30 s without an answer, then closed, not forwarded (the
//!   client's own timeout fires first).
//!
//! The proxy answers two paths itself: `GET /_chaos` (requests and fates so
//! far, per vendor: `meta`, `revolut`, `shopify`) and `POST /_chaos/calm`
//! (stop injecting; `POST /_chaos/storm` starts again).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// How often each fault happens, per mille of requests, and the latency.
#[derive(Clone, Debug, clap::Args)]
pub struct ChaosArgs {
    /// The upstream every request is forwarded to (host:port, plain HTTP).
    #[arg(long)]
    pub upstream: String,
    /// Where the proxy listens; prints `listening on ADDR` once bound.
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub addr: SocketAddr,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Latency added to every forwarded request, drawn uniformly, in ms.
    #[arg(long, num_args = 2, default_values_t = [0, 150], value_names = ["MIN", "MAX"])]
    pub latency_ms: Vec<u64>,
    /// Requests delayed 1–3 s more.
    #[arg(long, default_value_t = 20)]
    pub slow_permille: u32,
    /// Answered 503 without being forwarded.
    #[arg(long, default_value_t = 30)]
    pub unavailable_permille: u32,
    /// Forwarded, then answered 502 (the effect happened, the reply is lost).
    #[arg(long, default_value_t = 20)]
    pub lost_reply_permille: u32,
    /// Connection closed without an answer, not forwarded.
    #[arg(long, default_value_t = 10)]
    pub reset_permille: u32,
    /// Forwarded, then the connection closed without an answer.
    #[arg(long, default_value_t = 10)]
    pub reset_after_permille: u32,
    /// Held 30 s without an answer, then closed; not forwarded.
    #[arg(long, default_value_t = 5)]
    pub stall_permille: u32,
}

/// One request's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    Pass,
    Slow,
    Unavailable,
    LostReply,
    Reset,
    ResetAfter,
    Stall,
}

impl Fate {
    fn as_str(self) -> &'static str {
        match self {
            Fate::Pass => "pass",
            Fate::Slow => "slow",
            Fate::Unavailable => "unavailable",
            Fate::LostReply => "lost_reply",
            Fate::Reset => "reset",
            Fate::ResetAfter => "reset_after",
            Fate::Stall => "stall",
        }
    }
}

/// A connection closed on purpose, without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by chaos")
    }
}

impl std::error::Error for Dropped {}

struct Chaos {
    args: ChaosArgs,
    rng: Mutex<ChaCha8Rng>,
    calm: AtomicBool,
    /// (vendor, fate) → count.
    tally: Mutex<BTreeMap<(&'static str, Fate), u64>>,
    client: reqwest::Client,
}

/// The vendor a path belongs to, by its first segment (the sandbox's
/// layout: `/revolut/…`, `/shopify/…`, everything else is Meta's).
fn vendor(path: &str) -> &'static str {
    match path.trim_start_matches('/').split('/').next() {
        Some("revolut") => "revolut",
        Some("shopify") => "shopify",
        _ => "meta",
    }
}

type Reply = Response<Full<Bytes>>;

fn plain(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

impl Chaos {
    /// Draws the next fate and its latency, in arrival order.
    async fn draw(&self) -> (Fate, Duration) {
        let a = &self.args;
        let mut rng = self.rng.lock().await;
        let (lo, hi) = (a.latency_ms[0], a.latency_ms[1].max(a.latency_ms[0]));
        let mut latency = Duration::from_millis(rng.random_range(lo..=hi));
        let roll = rng.random_range(0..1000u32);
        if self.calm.load(Ordering::SeqCst) {
            return (Fate::Pass, latency);
        }
        let table = [
            (a.slow_permille, Fate::Slow),
            (a.unavailable_permille, Fate::Unavailable),
            (a.lost_reply_permille, Fate::LostReply),
            (a.reset_permille, Fate::Reset),
            (a.reset_after_permille, Fate::ResetAfter),
            (a.stall_permille, Fate::Stall),
        ];
        let mut below = 0;
        for (permille, fate) in table {
            below += permille;
            if roll < below {
                if fate == Fate::Slow {
                    latency += Duration::from_millis(rng.random_range(1000..=3000));
                }
                return (fate, latency);
            }
        }
        (Fate::Pass, latency)
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Reply, Dropped> {
        let path = req.uri().path().to_string();
        if path == "/_chaos" {
            let tally = self.tally.lock().await;
            let mut out = serde_json::Map::new();
            for ((vendor, fate), n) in tally.iter() {
                let v = out.entry(vendor.to_string()).or_insert_with(|| serde_json::json!({}));
                v[fate.as_str()] = (*n).into();
            }
            let body = serde_json::json!({ "calm": self.calm.load(Ordering::SeqCst), "vendors": out });
            return Ok(plain(StatusCode::OK, body.to_string()));
        }
        if path == "/_chaos/calm" || path == "/_chaos/storm" {
            self.calm.store(path == "/_chaos/calm", Ordering::SeqCst);
            return Ok(plain(StatusCode::OK, "ok\n"));
        }
        let (fate, latency) = self.draw().await;
        *self.tally.lock().await.entry((vendor(&path), fate)).or_default() += 1;
        tokio::time::sleep(latency).await;
        match fate {
            Fate::Unavailable => return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "chaos: service unavailable\n")),
            Fate::Reset => return Err(Dropped),
            Fate::Stall => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return Err(Dropped);
            }
            Fate::Pass | Fate::Slow | Fate::LostReply | Fate::ResetAfter => {}
        }
        let reply = self.forward(req).await;
        match fate {
            Fate::LostReply => Ok(plain(StatusCode::BAD_GATEWAY, "chaos: bad gateway\n")),
            Fate::ResetAfter => Err(Dropped),
            _ => Ok(reply),
        }
    }

    /// Sends the request upstream as it came and returns the answer; an
    /// upstream that cannot be reached is a 502.
    async fn forward(&self, req: Request<Incoming>) -> Reply {
        let (parts, body) = req.into_parts();
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            return plain(StatusCode::BAD_REQUEST, "chaos: the request body could not be read\n");
        };
        let target = format!("http://{}{}", self.args.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
        let mut out = self.client.request(parts.method, target).body(body);
        for (k, v) in &parts.headers {
            if !matches!(k.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
                out = out.header(k, v);
            }
        }
        let resp = match out.send().await {
            Ok(r) => r,
            Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("chaos: upstream: {e}\n")),
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default();
        let mut reply = plain(status, body);
        for (k, v) in &headers {
            if !matches!(k.as_str(), "content-length" | "connection" | "transfer-encoding") {
                reply.headers_mut().append(k, v.clone());
            }
        }
        reply
    }
}

/// Serves until stopped.
pub async fn serve(args: ChaosArgs) -> Result<()> {
    anyhow::ensure!(args.latency_ms.len() == 2, "--latency-ms takes MIN MAX");
    let listener = TcpListener::bind(args.addr).await.with_context(|| format!("binding {}", args.addr))?;
    println!("listening on {}", listener.local_addr()?);
    let rng = Mutex::new(ChaCha8Rng::seed_from_u64(args.seed));
    let chaos = Arc::new(Chaos {
        args,
        rng,
        calm: AtomicBool::new(false),
        tally: Mutex::default(),
        client: reqwest::Client::new(),
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let chaos = chaos.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| chaos.clone().handle(req));
            // An error here is a dropped connection (on purpose or by the client).
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
