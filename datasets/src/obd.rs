//! The Open Bandit Dataset importer: `{campaign}.csv` + `item_context.csv`
//! (ZOZOTOWN's layout) to the bandit-log schema.
//!
//! Items become arms 0..n (n = rows of `item_context.csv`), positions 1..3
//! become 0..2, `click` the reward and `propensity_score` the propensity.
//! The user features and user-item affinities go into the context JSON. The
//! logging policy's name is the campaign directory's parent (`bts`,
//! `random`), and the entity is `{policy}-{campaign}`. Rows are stably
//! sorted by time. Every row is parsed and checked before anything is
//! written; a bad one is named by file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::BANDIT;
use crate::catalog::{self, Pending};
use crate::table::{Column, TableError};

#[derive(Debug)]
pub struct Imported {
    pub entity: String,
    pub rows: usize,
    pub n_arms: usize,
    pub files: Vec<PathBuf>,
}

fn open(path: &Path) -> Result<csv::Reader<std::fs::File>, TableError> {
    csv::Reader::from_path(path).map_err(|e| TableError::file(path, format!("cannot read: {e}")))
}

/// Parses OBD's `2019-11-24 00:01:03.979311+00:00` to epoch milliseconds.
pub fn parse_ts(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z").ok().map(|t| t.timestamp_millis())
}

pub fn import(campaign_dir: &Path, out: &Path) -> Result<Imported, TableError> {
    let campaign = campaign_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| TableError::file(campaign_dir, "not a campaign directory"))?
        .to_string();
    let policy = campaign_dir
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    let items_path = campaign_dir.join("item_context.csv");
    let mut items = open(&items_path)?;
    let mut n_arms = 0usize;
    for (i, rec) in items.records().enumerate() {
        rec.map_err(|e| TableError::row(&items_path, i + 2, format!("line {}: {e}", i + 2)))?;
        n_arms += 1;
    }
    if n_arms == 0 {
        return Err(TableError::file(&items_path, "no items"));
    }

    let log_path = campaign_dir.join(format!("{campaign}.csv"));
    let mut reader = open(&log_path)?;
    let headers = reader.headers().map_err(|e| TableError::file(&log_path, e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| TableError::file(&log_path, format!("missing column `{name}`")))
    };
    let (c_ts, c_item, c_pos, c_click, c_p) =
        (col("timestamp")?, col("item_id")?, col("position")?, col("click")?, col("propensity_score")?);
    let user: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.starts_with("user_feature_"))
        .map(|(i, h)| (i, h.into()))
        .collect();
    let affinity: Vec<usize> =
        headers.iter().enumerate().filter(|(_, h)| h.starts_with("user-item_affinity_")).map(|(i, _)| i).collect();

    let mut rows: Vec<(i64, String, i64, i64, f64, f64)> = Vec::new();
    let mut n_positions = 0i64;
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let bad = |what: String| TableError::row(&log_path, line, format!("line {line}: {what}"));
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let field = |c: usize| rec.get(c).unwrap_or("");
        let ts = parse_ts(field(c_ts)).ok_or_else(|| bad(format!("bad timestamp {:?}", field(c_ts))))?;
        let item: i64 = field(c_item).parse().map_err(|_| bad(format!("bad item_id {:?}", field(c_item))))?;
        if item < 0 || item as usize >= n_arms {
            return Err(bad(format!("item_id {item} is not among the {n_arms} items of item_context.csv")));
        }
        let position: i64 = field(c_pos).parse().map_err(|_| bad(format!("bad position {:?}", field(c_pos))))?;
        if position < 1 {
            return Err(bad(format!("position {position} is not 1-based")));
        }
        n_positions = n_positions.max(position);
        let click: f64 = field(c_click).parse().map_err(|_| bad(format!("bad click {:?}", field(c_click))))?;
        if click != 0.0 && click != 1.0 {
            return Err(bad(format!("click {click} is not 0 or 1")));
        }
        let p: f64 = field(c_p).parse().map_err(|_| bad(format!("bad propensity_score {:?}", field(c_p))))?;
        if !(p > 0.0 && p <= 1.0) {
            return Err(bad(format!("propensity {p} is not in (0, 1]")));
        }
        let mut ctx = Map::new();
        for (c, name) in &user {
            ctx.insert(name.clone(), Value::String(field(*c).to_string()));
        }
        let aff: Result<Vec<f64>, _> = affinity.iter().map(|c| field(*c).parse::<f64>()).collect();
        let aff = aff.map_err(|_| bad("bad user-item affinity".into()))?;
        ctx.insert("affinity".into(), Value::from(aff));
        rows.push((ts, Value::Object(ctx).to_string(), item, position - 1, click, p));
    }
    if rows.is_empty() {
        return Err(TableError::file(&log_path, "no rows"));
    }
    rows.sort_by_key(|r| r.0); // stable: ties keep file order
    let entity = format!("{policy}-{campaign}");
    let n = rows.len();
    let mut metadata = BTreeMap::new();
    metadata.insert("dlft.n_arms".to_string(), n_arms.to_string());
    metadata.insert("dlft.n_positions".to_string(), n_positions.to_string());
    metadata.insert("dlft.source".to_string(), format!("Open Bandit Dataset {policy}/{campaign}"));
    let columns = vec![
        Column::I(rows.iter().map(|r| r.0).collect()),
        Column::S(rows.iter().map(|r| r.1.clone()).collect()),
        Column::I(rows.iter().map(|r| r.2).collect()),
        Column::I(rows.iter().map(|r| r.3).collect()),
        Column::F(rows.iter().map(|r| r.4).collect()),
        Column::F(rows.iter().map(|r| r.5).collect()),
        Column::S(vec![policy.clone(); n]),
    ];
    let files = catalog::write_all(out, vec![Pending { schema: &BANDIT, entity: entity.clone(), columns, metadata }])?;
    Ok(Imported { entity, rows: n, n_arms, files })
}
