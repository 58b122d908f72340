//! A brand's claims desk in production, as a watched folder
//! ([`FolderClaims`]): the returns app, the support team or an export from
//! the helpdesk drops one JSON file per claim into it; the refund job
//! judges each open claim once and settles it, which moves the file to
//! `done/` with the settlement written into it. `done/` is the desk's
//! history: the identity graph is rebuilt from it on every run, so keep it
//! (the files hold the customer's contact data as the desk gave it; the
//! loop itself stores only keyed hashes of them).
//!
//! A claim file:
//!
//! ```json
//! { "id": "ticket-4711", "store": "north-eu", "order_id": "gid://shopify/Order/1001",
//!   "claim": "wrong_item", "claimed": "12.50", "order_total": "80.00", "currency": "EUR",
//!   "tracking": "delivered", "days_since_shipped": 6, "opened_at": "2026-12-02T10:00:00Z",
//!   "customer": { "email": "jane@example.com", "phone": "+49 151 000000",
//!                 "address": "Hauptstraße 5, 10115 Berlin", "card": "424242-4242-12/29" } }
//! ```
//!
//! Amounts are decimal strings in the currency's minor units (exact);
//! `claim` is `damaged | wrong_item | did_not_arrive | return_received`,
//! `tracking` is `unknown | moving | delivered | lost`. A file that cannot be
//! used is moved to `rejected/` with `<name>.error.txt` naming the field:
//! nothing is refunded on a guess, and nothing is lost. Hidden files and
//! other extensions are ignored (write under a temporary name, rename in).

use std::path::{Path, PathBuf};

use dlft_core::money::{Currency, Money};
use dlft_core::sense::claims::{Claim, ClaimRecord, ClaimsSource, Customer, Settlement, SourceError, Tracking};
use serde::{Deserialize, Serialize};

/// Claim files read per run at most, open and settled together.
pub const MAX_FILES: usize = 10_000;
/// A claim file larger than this is refused.
pub const MAX_FILE_BYTES: u64 = 64 << 10;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimFile {
    id: String,
    store: String,
    order_id: String,
    claim: Claim,
    claimed: String,
    order_total: String,
    currency: String,
    tracking: Tracking,
    #[serde(default)]
    days_since_shipped: u32,
    opened_at: String,
    customer: Customer,
    /// Written by the refund job when it settles the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    settled: Option<Settlement>,
}

impl ClaimFile {
    fn record(&self) -> Result<ClaimRecord, String> {
        let currency = Currency::parse(&self.currency).map_err(|e| format!("field `currency`: {e}"))?;
        let money = |field: &str, text: &str| -> Result<Money, String> {
            let m = Money::parse_decimal(text, currency).map_err(|e| format!("field `{field}`: {text:?}: {e}"))?;
            if m.minor < 0 {
                return Err(format!("field `{field}`: {text:?} is negative"));
            }
            Ok(m)
        };
        let claimed = money("claimed", &self.claimed)?;
        let order_total = money("order_total", &self.order_total)?;
        if claimed.minor > order_total.minor {
            return Err(format!("field `claimed`: {claimed} is more than the order's {order_total}"));
        }
        for (field, v) in [("id", &self.id), ("store", &self.store), ("order_id", &self.order_id)] {
            if v.trim().is_empty() {
                return Err(format!("field `{field}`: empty"));
            }
        }
        let opened_at = dlft_core::sense::wire::revolut::instant_of(&self.opened_at)
            .map_err(|e| format!("field `opened_at`: {e}"))?;
        Ok(ClaimRecord {
            id: self.id.clone(),
            store: self.store.clone(),
            order_id: self.order_id.clone(),
            claim: self.claim,
            claimed,
            order_total,
            tracking: self.tracking,
            days_since_shipped: self.days_since_shipped,
            customer: self.customer.clone(),
            opened_at,
            settled: self.settled.clone(),
        })
    }
}

/// One claim file's bytes as a claim, or a clear error naming the field
/// (what `rejected/<name>.error.txt` says). Never panics.
pub fn decode_claim(bytes: &[u8]) -> Result<ClaimRecord, String> {
    serde_json::from_slice::<ClaimFile>(bytes).map_err(|e| format!("not a claim: {e}"))?.record()
}

/// A watched folder of claim files.
#[derive(Clone, Debug)]
pub struct FolderClaims {
    pub dir: PathBuf,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> SourceError {
    SourceError(format!("{what} {}: {e}", path.display()))
}

fn is_claim(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with(".json")
}

impl FolderClaims {
    pub fn new(dir: impl Into<PathBuf>) -> FolderClaims {
        FolderClaims { dir: dir.into() }
    }

    async fn names(dir: &Path) -> Result<Vec<String>, SourceError> {
        let mut names = Vec::new();
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(io("listing", dir, e)),
        };
        while let Some(entry) = entries.next_entry().await.map_err(|e| io("listing", dir, e))? {
            let is_file = entry.file_type().await.map_err(|e| io("listing", dir, e))?.is_file();
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_file && is_claim(&name) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    async fn read(path: &Path) -> Result<Result<ClaimFile, String>, SourceError> {
        let meta = tokio::fs::metadata(path).await.map_err(|e| io("reading", path, e))?;
        if meta.len() > MAX_FILE_BYTES {
            return Ok(Err(format!("{} bytes: over the {MAX_FILE_BYTES}-byte limit", meta.len())));
        }
        let bytes = tokio::fs::read(path).await.map_err(|e| io("reading", path, e))?;
        Ok(serde_json::from_slice::<ClaimFile>(&bytes).map_err(|e| format!("not a claim: {e}")))
    }

    /// Moves a file that cannot be used aside, with a note naming why.
    async fn reject(&self, name: &str, why: &str) -> Result<(), SourceError> {
        let dir = self.dir.join("rejected");
        tokio::fs::create_dir_all(&dir).await.map_err(|e| io("creating", &dir, e))?;
        let note = dir.join(format!("{name}.error.txt"));
        tokio::fs::write(&note, format!("{why}\n")).await.map_err(|e| io("writing", &note, e))?;
        let (from, to) = (self.dir.join(name), dir.join(name));
        tokio::fs::rename(&from, &to).await.map_err(|e| io("moving", &from, e))
    }

    /// The file of claim `id`, open (top folder) or settled (`done/`).
    async fn find(&self, id: &str) -> Result<Option<(PathBuf, ClaimFile, bool)>, SourceError> {
        for (dir, done) in [(self.dir.clone(), false), (self.dir.join("done"), true)] {
            for name in Self::names(&dir).await? {
                if let Ok(Ok(file)) = Self::read(&dir.join(&name)).await
                    && file.id == id
                {
                    return Ok(Some((dir.join(name), file, done)));
                }
            }
        }
        Ok(None)
    }
}

impl ClaimsSource for FolderClaims {
    async fn claims(&self) -> Result<Vec<ClaimRecord>, SourceError> {
        let mut out = Vec::new();
        let done = self.dir.join("done");
        for name in Self::names(&done).await?.into_iter().take(MAX_FILES) {
            // The history was checked when it was open: a file edited since
            // is skipped, not moved.
            if let Ok(Ok(file)) = Self::read(&done.join(&name)).await
                && let Ok(r) = file.record()
            {
                out.push(r);
            }
        }
        for name in Self::names(&self.dir).await?.into_iter().take(MAX_FILES) {
            let read = match Self::read(&self.dir.join(&name)).await {
                Ok(r) => r,
                // Moved away between the listing and the read.
                Err(_) if tokio::fs::metadata(self.dir.join(&name)).await.is_err() => continue,
                Err(e) => return Err(e),
            };
            match read.and_then(|f| f.record()) {
                Ok(r) if out.iter().any(|o: &ClaimRecord| o.id == r.id) => {
                    self.reject(&name, &format!("claim {} is in the folder twice", r.id)).await?;
                }
                Ok(r) => out.push(ClaimRecord { settled: None, ..r }),
                Err(why) => self.reject(&name, &why).await?,
            }
        }
        out.sort_by(|a, b| (a.opened_at, &a.id).cmp(&(b.opened_at, &b.id)));
        Ok(out)
    }

    async fn settle_claim(&self, id: &str, how: &Settlement) -> Result<(), SourceError> {
        let Some((path, mut file, done)) = self.find(id).await? else {
            return Err(SourceError(format!("no claim {id} in {}", self.dir.display())));
        };
        if done {
            // Settled before (a settle repeated after a crash): nothing changes.
            return Ok(());
        }
        file.settled = Some(how.clone());
        let dir = self.dir.join("done");
        tokio::fs::create_dir_all(&dir).await.map_err(|e| io("creating", &dir, e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp"));
        let text = serde_json::to_string_pretty(&file).map_err(|e| SourceError(e.to_string()))?;
        tokio::fs::write(&tmp, text).await.map_err(|e| io("writing", &tmp, e))?;
        let to = dir.join(&name);
        tokio::fs::rename(&tmp, &to).await.map_err(|e| io("moving", &tmp, e))?;
        tokio::fs::remove_file(&path).await.map_err(|e| io("removing", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(id: &str, claimed: &str) -> String {
        format!(
            r#"{{ "id": "{id}", "store": "north-eu", "order_id": "gid://shopify/Order/1001", "claim": "wrong_item",
                 "claimed": "{claimed}", "order_total": "80.00", "currency": "EUR", "tracking": "delivered",
                 "days_since_shipped": 6, "opened_at": "2026-12-02T10:00:00Z",
                 "customer": {{ "email": "jane@example.com" }} }}"#
        )
    }

    #[tokio::test]
    async fn claims_are_open_until_settled_and_then_kept_as_history() {
        let dir = tempfile::tempdir().unwrap();
        let src = FolderClaims::new(dir.path());
        std::fs::write(dir.path().join("a.json"), claim("t-1", "12.50")).unwrap();
        std::fs::write(dir.path().join("b.json"), claim("t-2", "12.505")).unwrap();
        std::fs::write(dir.path().join("c.json"), claim("t-3", "99.00")).unwrap();
        std::fs::write(dir.path().join(".d.json"), claim("t-4", "1.00")).unwrap();
        let open = src.claims().await.unwrap();
        assert_eq!(open.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["t-1"]);
        assert_eq!(open[0].claimed, Money::new(1_250, Currency::EUR));
        // The bad ones are moved aside with the field named; nothing is lost.
        let note = std::fs::read_to_string(dir.path().join("rejected/b.json.error.txt")).unwrap();
        assert!(note.contains("field `claimed`"), "{note}");
        let note = std::fs::read_to_string(dir.path().join("rejected/c.json.error.txt")).unwrap();
        assert!(note.contains("more than the order's"), "{note}");
        let how = Settlement::Refunded {
            key: "refund/x".into(),
            amount: Money::new(1_250, Currency::EUR),
            tier: "trusted".into(),
            tracked: Some(Tracking::Delivered),
        };
        src.settle_claim("t-1", &how).await.unwrap();
        src.settle_claim("t-1", &how).await.unwrap();
        let all = src.claims().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].settled, Some(how), "history keeps the settlement");
        assert!(!dir.path().join("a.json").exists() && dir.path().join("done/a.json").exists());
        assert!(
            src.settle_claim("t-9", &Settlement::NoRefund { why: "x".into(), tier: String::new(), tracked: None })
                .await
                .is_err()
        );
    }
}
