//! # dlft-datasets
//!
//! History for backtests and off-policy evaluation. For now: the column
//! schemas the Parquet files will carry. Loaders, the generator, the Open
//! Bandit importer and the backtester (arrow/parquet/polars, kept out of
//! `core` and `sim` for build time) land here next.

/// A column: name, logical type, and what it means.
pub type Column = (&'static str, &'static str, &'static str);

/// Ad insights history, one row per ad per bucket. A row may be read only
/// once the backtest clock reaches `ts_available` (no look-ahead).
pub const AD_INSIGHTS: &[Column] = &[
    ("ts_event", "timestamp_ms", "start of the bucket the row describes"),
    ("ts_available", "timestamp_ms", "when this version of the row became known"),
    ("ad_id", "utf8", "the ad"),
    ("spend_cents", "int64", "spend in minor units"),
    ("impressions", "int64", "impressions"),
    ("clicks", "int64", "clicks"),
    ("purchases", "int64", "purchases attributed so far"),
    ("revenue_cents", "int64", "revenue of those purchases in minor units"),
    ("currency", "utf8", "ISO 4217 code of the money columns"),
];

/// Bandit decision logs with the propensity of each decision, so that later
/// policies can be evaluated off-policy.
pub const BANDIT_LOG: &[Column] = &[
    ("ts", "timestamp_ms", "decision time"),
    ("context", "utf8", "context features (JSON)"),
    ("arm", "int64", "the chosen arm"),
    ("position", "int64", "slot the arm was shown in"),
    ("reward", "float64", "observed reward (click = 1)"),
    ("propensity", "float64", "probability the logging policy chose this arm, in (0, 1]"),
    ("policy", "utf8", "the logging policy's name"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn column_names_are_unique_and_money_is_integer() {
        for schema in [AD_INSIGHTS, BANDIT_LOG] {
            let names: BTreeSet<_> = schema.iter().map(|c| c.0).collect();
            assert_eq!(names.len(), schema.len());
            for (name, ty, _) in schema {
                if name.ends_with("_cents") {
                    assert_eq!(*ty, "int64", "{name}: money is integer minor units");
                }
            }
        }
    }
}
