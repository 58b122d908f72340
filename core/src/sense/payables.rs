//! The payables sensor's parsing: supplier invoices and creator commissions
//! as an operator drops them, CSV or JSON, into a watched folder (the live
//! runner reads the files; this is pure).
//!
//! Strict: a file with any bad row is refused whole, naming the row and the
//! field, and nothing of it is used (a half-trusted file pays nobody). A
//! file still being written (CSV without its final newline, JSON that does
//! not parse to its end) is [`PayablesError::Incomplete`]: read it again
//! later. A file read twice, or two files naming one invoice, pay it once:
//! the payout's idempotency key is the invoice.
//!
//! CSV: a header `invoice,counterparty_id,iban,amount,currency` (any order),
//! then one payable per line; no quoting (none of the fields needs a comma).
//! JSON: an array of objects with the same fields, `amount` a decimal
//! string. Amounts are decimal strings in major units with at most two
//! decimals, positive.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};

/// What a payables source says is owed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payable {
    /// The invoice number: unique per brand.
    pub invoice: String,
    pub counterparty_id: String,
    /// The bank details the invoice asks to be paid to.
    pub iban: String,
    pub amount: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PayablesError {
    /// Still being written: try again later.
    #[error("incomplete ({0}): read again once it is written")]
    Incomplete(String),
    /// `row` is 1-based over the file's lines (the header is row 1) or the
    /// JSON array's elements.
    #[error("row {row}, field `{field}`: {message}")]
    Bad { row: usize, field: String, message: String },
}

const FIELDS: [&str; 5] = ["invoice", "counterparty_id", "iban", "amount", "currency"];

fn bad(row: usize, field: &str, message: impl Into<String>) -> PayablesError {
    PayablesError::Bad { row, field: field.into(), message: message.into() }
}

fn payable(row: usize, get: impl Fn(&str) -> Option<String>) -> Result<Payable, PayablesError> {
    let field = |name: &str| -> Result<String, PayablesError> {
        let v = get(name).map(|v| v.trim().to_string()).unwrap_or_default();
        if v.is_empty() { Err(bad(row, name, "missing")) } else { Ok(v) }
    };
    let invoice = field("invoice")?;
    if invoice.len() > 100 || !invoice.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
        return Err(bad(row, "invoice", format!("{invoice:?}: letters, digits and - _ . / only, at most 100")));
    }
    let currency = Currency::parse(&field("currency")?).map_err(|e| bad(row, "currency", e.to_string()))?;
    let text = field("amount")?;
    let amount = Money::parse_decimal(&text, currency)
        .map_err(|_| bad(row, "amount", format!("{text:?} is not a decimal with at most two decimals")))?;
    if amount.minor <= 0 {
        return Err(bad(row, "amount", format!("{text} is not positive")));
    }
    Ok(Payable { invoice, counterparty_id: field("counterparty_id")?, iban: field("iban")?, amount })
}

/// The payables of a CSV file's text.
pub fn parse_csv(text: &str) -> Result<Vec<Payable>, PayablesError> {
    if !text.ends_with('\n') {
        return Err(PayablesError::Incomplete("no final newline".into()));
    }
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').map(str::trim).collect();
    for f in FIELDS {
        if !header.contains(&f) {
            return Err(bad(1, f, format!("the header must name {}", FIELDS.join(","))));
        }
    }
    if let Some(extra) = header.iter().find(|h| !FIELDS.contains(h)) {
        return Err(bad(1, extra, "not a payables column"));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let row = i + 2;
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != header.len() {
            return Err(bad(row, "-", format!("{} cells, the header has {}", cells.len(), header.len())));
        }
        out.push(payable(row, |name| header.iter().position(|h| *h == name).map(|i| cells[i].to_string()))?);
    }
    Ok(out)
}

/// Payables as a CSV file's text (what [`parse_csv`] reads back): the form
/// a watched folder rewrites a file in when it keeps some of its rows.
pub fn encode_csv(rows: &[Payable]) -> String {
    let mut out = format!("{}\n", FIELDS.join(","));
    for p in rows {
        let amount = p.amount.to_decimal();
        out.push_str(&format!("{},{},{},{amount},{}\n", p.invoice, p.counterparty_id, p.iban, p.amount.currency));
    }
    out
}

/// Payables as a JSON file's text (what [`parse_json`] reads back).
pub fn encode_json(rows: &[Payable]) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|p| {
            serde_json::json!({
                "invoice": p.invoice,
                "counterparty_id": p.counterparty_id,
                "iban": p.iban,
                "amount": p.amount.to_decimal(),
                "currency": p.amount.currency.as_str(),
            })
        })
        .collect();
    serde_json::to_string_pretty(&rows).expect("serializes")
}

/// The payables of a JSON file's text.
pub fn parse_json(text: &str) -> Result<Vec<Payable>, PayablesError> {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) if e.is_eof() => return Err(PayablesError::Incomplete(e.to_string())),
        Err(e) => return Err(bad(e.line(), "-", format!("not JSON: {e}"))),
    };
    let rows = value.as_array().ok_or_else(|| bad(1, "-", "the file must hold an array of payables"))?;
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let row = i + 1;
            let obj = r.as_object().ok_or_else(|| bad(row, "-", "not an object"))?;
            if let Some(extra) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
                return Err(bad(row, extra, "not a payables field"));
            }
            if let Some((k, _)) = obj.iter().find(|(_, v)| !v.is_string()) {
                return Err(bad(row, k, "must be a string (amounts too: \"12.50\")"));
            }
            payable(row, |name| obj.get(name).and_then(|v| v.as_str()).map(str::to_string))
        })
        .collect()
}

/// One file (or, in the sim, one delivery) of payables as a source holds
/// it: its name, and what it says or why it cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayablesFile {
    /// Unique within the source while the file is pending.
    pub name: String,
    pub payables: Result<Vec<Payable>, PayablesError>,
}

/// What became of a file the payout job read: every row judged and
/// written (`Accepted`), the file refused whole (`Rejected`, with why), or
/// every row judged and written but these, which wait for room in the
/// budgets (`Keep`: the file stays pending with only them). The source
/// moves an accepted or rejected file out of its pending set (a watched
/// folder moves it to `done/` or `rejected/`); a file not settled is read
/// again whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Settled {
    Accepted,
    Rejected(String),
    Keep(Vec<Payable>),
}

/// Why a payables source could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("payables source: {0}")]
pub struct SourceError(pub String);

/// The payables sensor's port: the files waiting, and a way to settle one.
/// Reading is idempotent: a file is pending until it is settled, and a
/// crash between the payout job's write and the settle only makes it read
/// again (its invoices' keys are already opened: paid once).
pub trait PayablesSource: Send + Sync {
    fn pending(&self) -> impl Future<Output = Result<Vec<PayablesFile>, SourceError>> + Send;
    fn settle(&self, name: &str, how: &Settled) -> impl Future<Output = Result<(), SourceError>> + Send;
}

impl<T: PayablesSource> PayablesSource for &T {
    fn pending(&self) -> impl Future<Output = Result<Vec<PayablesFile>, SourceError>> + Send {
        (**self).pending()
    }
    fn settle(&self, name: &str, how: &Settled) -> impl Future<Output = Result<(), SourceError>> + Send {
        (**self).settle(name, how)
    }
}

/// A brand without payables: nothing is ever pending.
impl PayablesSource for crate::sense::bank::NoBank {
    fn pending(&self) -> impl Future<Output = Result<Vec<PayablesFile>, SourceError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
    fn settle(&self, name: &str, _: &Settled) -> impl Future<Output = Result<(), SourceError>> + Send {
        std::future::ready(Err(SourceError(format!("no payables source holds {name:?}"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "invoice,counterparty_id,iban,amount,currency\n\
                       INV-1,cp-1,DE89370400440532013000,1250.50,EUR\n\
                       INV-2,cp-2,GB82WEST12345698765432,7,GBP\n";

    #[test]
    fn csv_and_json_read_the_same_payables() {
        let csv = parse_csv(CSV).unwrap();
        assert_eq!(csv.len(), 2);
        assert_eq!(csv[0].amount, Money::new(125_050, Currency::EUR));
        assert_eq!(csv[1].amount, Money::new(700, Currency::parse("GBP").unwrap()));
        let json = r#"[{"invoice":"INV-1","counterparty_id":"cp-1","iban":"DE89370400440532013000","amount":"1250.50","currency":"EUR"},
                       {"invoice":"INV-2","counterparty_id":"cp-2","iban":"GB82WEST12345698765432","amount":"7","currency":"GBP"}]"#;
        assert_eq!(parse_json(json).unwrap(), csv);
    }

    #[test]
    fn a_kept_file_reads_back_as_it_was() {
        let rows = parse_csv(CSV).unwrap();
        assert_eq!(parse_csv(&encode_csv(&rows)).unwrap(), rows);
        assert_eq!(parse_json(&encode_json(&rows)).unwrap(), rows);
        assert_eq!(parse_csv(&encode_csv(&[])).unwrap(), vec![]);
    }

    #[test]
    fn a_half_written_file_is_incomplete_not_wrong() {
        let half = &CSV[..CSV.len() - 10];
        assert!(matches!(parse_csv(half), Err(PayablesError::Incomplete(_))));
        assert!(matches!(parse_json(r#"[{"invoice":"INV-1","#), Err(PayablesError::Incomplete(_))));
    }

    #[test]
    fn bad_rows_are_named_and_refuse_the_file() {
        let with =
            |line: &str| format!("invoice,counterparty_id,iban,amount,currency\nINV-1,cp-1,DE89,1.00,EUR\n{line}\n");
        for (line, want) in [
            ("INV-2,cp-2,DE89,-5.00,EUR", "row 3, field `amount`: -5.00 is not positive"),
            ("INV-2,cp-2,DE89,0.005,EUR", "row 3, field `amount`: \"0.005\" is not a decimal"),
            ("INV-2,cp-2,DE89,5,EURO", "row 3, field `currency`"),
            ("INV-2,,DE89,5,EUR", "row 3, field `counterparty_id`: missing"),
            ("INV 2,cp-2,DE89,5,EUR", "row 3, field `invoice`"),
            ("INV-2,cp-2,DE89,5", "row 3, field `-`: 4 cells"),
        ] {
            let e = parse_csv(&with(line)).unwrap_err().to_string();
            assert!(e.starts_with(want), "{want:?} vs {e:?}");
        }
        assert!(parse_csv("invoice,iban\nINV-1,x\n").unwrap_err().to_string().contains("the header must name"));
        let e = parse_json(r#"[{"invoice":"INV-1","counterparty_id":"cp","iban":"x","amount":12.5,"currency":"EUR"}]"#);
        assert!(e.unwrap_err().to_string().starts_with("row 1, field `amount`: must be a string"));
    }
}
