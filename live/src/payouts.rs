//! A brand's payouts in production: its Revolut account ([`RevolutBank`])
//! and its payables source, a watched folder ([`FolderPayables`]), as the
//! one port the worker gives its jobs ([`LiveBank`]).
//!
//! The folder: the operator (or an export from the accounting system)
//! drops `*.csv` and `*.json` files of payables into it. A file is read
//! whole every run until the payables job settles it: accepted files move
//! to `done/`, refused ones to `rejected/` with `<name>.error.txt` beside
//! them naming the row and field; a file some of whose rows wait for room
//! in the budgets is rewritten in place (a temporary file renamed over it)
//! with only those rows. Hidden files (`.name`) and other extensions are
//! ignored: write a file under a temporary name and rename it in, or let
//! the parser see it half-written (read again later).

use std::path::{Path, PathBuf};

use dlft_core::sense::bank::{Bank, BankError, BankTransaction, NoBank, Payment, PaymentReply};
use dlft_core::sense::payables::{
    PayablesError, PayablesFile, PayablesSource, Settled, SourceError, encode_csv, encode_json, parse_csv, parse_json,
};
use dlft_core::time::Timestamp;

use crate::revolut::RevolutBank;

/// Files read per run at most: a folder of thousands waits its turn.
pub const MAX_FILES: usize = 256;
/// A payables file larger than this is refused (not read into memory).
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// A watched folder of payables files.
#[derive(Clone, Debug)]
pub struct FolderPayables {
    pub dir: PathBuf,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> SourceError {
    SourceError(format!("{what} {}: {e}", path.display()))
}

impl FolderPayables {
    pub fn new(dir: impl Into<PathBuf>) -> FolderPayables {
        FolderPayables { dir: dir.into() }
    }

    fn is_payables(name: &str) -> bool {
        !name.starts_with('.') && (name.ends_with(".csv") || name.ends_with(".json"))
    }

    async fn read(&self, name: &str) -> Result<PayablesFile, SourceError> {
        let path = self.dir.join(name);
        let meta = tokio::fs::metadata(&path).await.map_err(|e| io("reading", &path, e))?;
        let payables = if meta.len() > MAX_FILE_BYTES {
            Err(PayablesError::Bad {
                row: 0,
                field: "-".into(),
                message: format!("{} bytes: over the {MAX_FILE_BYTES}-byte limit", meta.len()),
            })
        } else {
            let bytes = tokio::fs::read(&path).await.map_err(|e| io("reading", &path, e))?;
            match String::from_utf8(bytes) {
                Ok(text) if name.ends_with(".json") => parse_json(&text),
                Ok(text) => parse_csv(&text),
                Err(e) => Err(PayablesError::Bad { row: 0, field: "-".into(), message: format!("not UTF-8: {e}") }),
            }
        };
        Ok(PayablesFile { name: name.to_string(), payables })
    }

    async fn move_to(&self, name: &str, sub: &str) -> Result<PathBuf, SourceError> {
        let dir = self.dir.join(sub);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| io("creating", &dir, e))?;
        let (from, to) = (self.dir.join(name), dir.join(name));
        match tokio::fs::rename(&from, &to).await {
            Ok(()) => Ok(to),
            // Settled before (a settle repeated after a crash): nothing to move.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tokio::fs::metadata(&to).await.is_ok() => Ok(to),
            Err(e) => Err(io("moving", &from, e)),
        }
    }
}

impl PayablesSource for FolderPayables {
    async fn pending(&self) -> Result<Vec<PayablesFile>, SourceError> {
        let mut names = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir).await.map_err(|e| io("listing", &self.dir, e))?;
        while let Some(entry) = entries.next_entry().await.map_err(|e| io("listing", &self.dir, e))? {
            let is_file = entry.file_type().await.map_err(|e| io("listing", &self.dir, e))?.is_file();
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_file && Self::is_payables(&name) {
                names.push(name);
            }
        }
        names.sort();
        names.truncate(MAX_FILES);
        let mut out = Vec::new();
        for name in names {
            match self.read(&name).await {
                Ok(file) => out.push(file),
                // Moved away between the listing and the read: not pending.
                Err(_) if tokio::fs::metadata(self.dir.join(&name)).await.is_err() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn settle(&self, name: &str, how: &Settled) -> Result<(), SourceError> {
        if !Self::is_payables(name) || name.contains(['/', '\\']) {
            return Err(SourceError(format!("{name:?} is not a payables file of this folder")));
        }
        match how {
            Settled::Accepted => self.move_to(name, "done").await.map(drop),
            Settled::Rejected(why) => {
                let to = self.move_to(name, "rejected").await?;
                let note = to.with_file_name(format!("{name}.error.txt"));
                tokio::fs::write(&note, format!("{why}\n")).await.map_err(|e| io("writing", &note, e))
            }
            Settled::Keep(rows) => {
                let path = self.dir.join(name);
                let tmp = self.dir.join(format!(".{name}.keep"));
                let text = if name.ends_with(".json") { encode_json(rows) } else { encode_csv(rows) };
                tokio::fs::write(&tmp, text).await.map_err(|e| io("writing", &tmp, e))?;
                tokio::fs::rename(&tmp, &path).await.map_err(|e| io("replacing", &path, e))
            }
        }
    }
}

/// A brand's bank and payables source; either may be absent (a brand
/// without payouts behaves as [`NoBank`]).
#[derive(Clone, Debug, Default)]
pub struct LiveBank {
    pub bank: Option<RevolutBank>,
    pub payables: Option<FolderPayables>,
    /// The brand's Shopify store and claims folder, where it refunds.
    pub shop: Option<crate::shopify::ShopifyShop>,
    pub claims: Option<crate::claims::FolderClaims>,
    /// The brand's parcel tracker (17TRACK), where it has one.
    pub tracker: Option<crate::track17::Track17>,
    /// The store's name in claims and keys.
    pub store: String,
    /// The brand's support inbox and the text model vendors it may call.
    pub inbox: Option<crate::support::AgentMail>,
    pub models: Option<crate::support::LiveModels>,
}

impl Bank for LiveBank {
    async fn pay(&self, payment: &Payment) -> Result<PaymentReply, BankError> {
        match &self.bank {
            Some(b) => b.pay(payment).await,
            None => NoBank.pay(payment).await,
        }
    }
    async fn transaction_by_request_id(
        &self,
        request_id: &str,
        from: Timestamp,
    ) -> Result<Option<BankTransaction>, BankError> {
        match &self.bank {
            Some(b) => b.transaction_by_request_id(request_id, from).await,
            None => Ok(None),
        }
    }
    async fn transactions(&self, from: Timestamp, to: Timestamp) -> Result<Vec<BankTransaction>, BankError> {
        match &self.bank {
            Some(b) => b.transactions(from, to).await,
            None => Ok(Vec::new()),
        }
    }
}

/// The brand's support inbox (a brand without one refuses every reply and
/// reads no thread).
impl dlft_core::sense::inbox::Inbox for LiveBank {
    async fn send_reply(
        &self,
        inbox: &str,
        message_id: &str,
        text: &str,
    ) -> Result<dlft_core::sense::inbox::SentReply, dlft_core::sense::inbox::InboxError> {
        match &self.inbox {
            Some(i) => i.send_reply(inbox, message_id, text).await,
            None => NoBank.send_reply(inbox, message_id, text).await,
        }
    }
    async fn thread(
        &self,
        inbox: &str,
        thread_id: &str,
    ) -> Result<Vec<dlft_core::sense::inbox::MailMessage>, dlft_core::sense::inbox::InboxError> {
        match &self.inbox {
            Some(i) => i.thread(inbox, thread_id).await,
            None => Ok(Vec::new()),
        }
    }
    async fn threads(
        &self,
        inbox: &str,
        page_token: Option<&str>,
    ) -> Result<dlft_core::sense::inbox::ThreadPage, dlft_core::sense::inbox::InboxError> {
        match &self.inbox {
            Some(i) => i.threads(inbox, page_token).await,
            None => NoBank.threads(inbox, page_token).await,
        }
    }
}

/// The brand's text model vendors (a brand without them is refused every
/// call as bad credentials: the router's breakers open, nothing is billed).
impl dlft_core::sense::models::TextVendors for LiveBank {
    async fn complete_at(
        &self,
        vendor: &str,
        model: &str,
        call_id: &str,
        prompt: &dlft_core::sense::models::Prompt,
    ) -> Result<dlft_core::sense::models::Completion, dlft_core::sense::models::ModelError> {
        match &self.models {
            Some(m) => m.complete_at(vendor, model, call_id, prompt).await,
            None => NoBank.complete_at(vendor, model, call_id, prompt).await,
        }
    }
}

impl dlft_core::sense::shop::Shop for LiveBank {
    async fn refund(
        &self,
        req: &dlft_core::sense::shop::RefundRequest,
        key: &str,
    ) -> Result<dlft_core::sense::shop::ShopRefund, dlft_core::sense::shop::ShopError> {
        match &self.shop {
            Some(s) => s.refund(req, key).await,
            None => NoBank.refund(req, key).await,
        }
    }
    async fn order_refunds(
        &self,
        order_id: &str,
    ) -> Result<Vec<dlft_core::sense::shop::ShopRefund>, dlft_core::sense::shop::ShopError> {
        match &self.shop {
            Some(s) => s.order_refunds(order_id).await,
            None => Ok(Vec::new()),
        }
    }
    async fn order(
        &self,
        order_id: &str,
    ) -> Result<dlft_core::sense::shop::ShopOrder, dlft_core::sense::shop::ShopError> {
        match &self.shop {
            Some(s) => s.order(order_id).await,
            None => NoBank.order(order_id).await,
        }
    }
    async fn customer_order(
        &self,
        email: &str,
    ) -> Result<Option<dlft_core::sense::shop::CustomerOrder>, dlft_core::sense::shop::ShopError> {
        match &self.shop {
            Some(s) => s.customer_order(email).await,
            None => Ok(None),
        }
    }
    /// The refunds' store, mirrored by the refund job.
    fn stores(&self) -> Vec<String> {
        match (&self.shop, &self.claims) {
            (Some(_), Some(_)) => vec![self.store.clone()],
            _ => Vec::new(),
        }
    }
    async fn orders_page(
        &self,
        _store: &str,
        since: dlft_core::time::Timestamp,
        after: Option<&str>,
        first: u32,
    ) -> Result<dlft_core::sense::shop::OrdersPage, dlft_core::sense::shop::ShopError> {
        match &self.shop {
            Some(s) => s.orders_page(&self.store, since, after, first).await,
            None => Ok(Default::default()),
        }
    }
}

/// The brand's claims folder (a brand without one has no claims) and its
/// store's chargebacks (Shopify Payments' disputes).
impl dlft_core::sense::claims::ClaimsSource for LiveBank {
    async fn claims(&self) -> Result<Vec<dlft_core::sense::claims::ClaimRecord>, SourceError> {
        match &self.claims {
            Some(c) => c.claims().await,
            None => Ok(Vec::new()),
        }
    }
    async fn settle_claim(&self, id: &str, how: &dlft_core::sense::claims::Settlement) -> Result<(), SourceError> {
        match &self.claims {
            Some(c) => c.settle_claim(id, how).await,
            None => Err(SourceError(format!("no claims folder to settle {id} in"))),
        }
    }
    async fn disputes(&self) -> Result<Vec<dlft_core::sense::claims::Dispute>, SourceError> {
        match &self.shop {
            Some(s) => s.disputes(&self.store).await.map_err(|e| SourceError(format!("shopify disputes: {e}"))),
            None => Ok(Vec::new()),
        }
    }
}

/// The brand's parcel tracker (a brand without one keeps the desk's word).
impl dlft_core::sense::shipments::Shipments for LiveBank {
    fn tracks(&self) -> bool {
        self.tracker.is_some()
    }
    async fn track(
        &self,
        numbers: &[String],
    ) -> Result<dlft_core::sense::shipments::Tracked, dlft_core::sense::shipments::Track17Error> {
        match &self.tracker {
            Some(t) => dlft_core::sense::shipments::Shipments::track(t, numbers).await,
            None => Ok((Vec::new(), Vec::new())),
        }
    }
    async fn stop(&self, numbers: &[String]) -> Result<(), dlft_core::sense::shipments::Track17Error> {
        match &self.tracker {
            Some(t) => dlft_core::sense::shipments::Shipments::stop(t, numbers).await,
            None => Ok(()),
        }
    }
}

impl PayablesSource for LiveBank {
    async fn pending(&self) -> Result<Vec<PayablesFile>, SourceError> {
        match &self.payables {
            Some(p) => p.pending().await,
            None => Ok(Vec::new()),
        }
    }
    async fn settle(&self, name: &str, how: &Settled) -> Result<(), SourceError> {
        match &self.payables {
            Some(p) => p.settle(name, how).await,
            None => NoBank.settle(name, how).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "invoice,counterparty_id,iban,amount,currency\n";

    fn row(invoice: &str) -> String {
        format!("{invoice},cp-1,DE89370400440532013000,12.50,EUR\n")
    }

    #[tokio::test]
    async fn files_are_read_until_settled_and_then_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let src = FolderPayables::new(dir.path());
        std::fs::write(dir.path().join("a.csv"), format!("{HEADER}{}{}", row("INV-1"), row("INV-2"))).unwrap();
        std::fs::write(dir.path().join("b.csv"), format!("{HEADER}INV-3,cp-1,DE89,1,2,EUR\n")).unwrap();
        std::fs::write(dir.path().join("c.json"), r#"[{"invoice":"INV-4","#).unwrap();
        std::fs::write(dir.path().join(".d.csv"), HEADER).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not payables").unwrap();
        let files = src.pending().await.unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.csv", "b.csv", "c.json"], "hidden files and other extensions are not payables");
        assert_eq!(files[0].payables.as_ref().unwrap().len(), 2);
        assert!(matches!(files[1].payables, Err(PayablesError::Bad { row: 2, .. })));
        assert!(matches!(files[2].payables, Err(PayablesError::Incomplete(_))), "half-written: read again later");
        assert_eq!(src.pending().await.unwrap().len(), 3, "reading settles nothing");

        // Keep one row of a.csv: rewritten in place, read back as that row.
        let kept = vec![files[0].payables.as_ref().unwrap()[1].clone()];
        src.settle("a.csv", &Settled::Keep(kept.clone())).await.unwrap();
        let again = src.pending().await.unwrap();
        assert_eq!(again[0].payables.as_ref().unwrap(), &kept);

        src.settle("a.csv", &Settled::Accepted).await.unwrap();
        src.settle("a.csv", &Settled::Accepted).await.unwrap();
        src.settle("b.csv", &Settled::Rejected("row 2, field `amount`: …".into())).await.unwrap();
        assert!(dir.path().join("done/a.csv").exists());
        assert!(dir.path().join("rejected/b.csv").exists());
        let note = std::fs::read_to_string(dir.path().join("rejected/b.csv.error.txt")).unwrap();
        assert!(note.starts_with("row 2, field `amount`"), "{note}");
        let names: Vec<String> = src.pending().await.unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["c.json"]);
        assert!(src.settle("../x.csv", &Settled::Accepted).await.is_err(), "only files of the folder");
    }

    #[tokio::test]
    async fn a_missing_folder_is_a_clear_error() {
        let src = FolderPayables::new("/nonexistent/dlft-payables");
        let e = src.pending().await.unwrap_err().to_string();
        assert!(e.contains("listing /nonexistent/dlft-payables"), "{e}");
    }
}
