//! The history catalog on disk: `<root>/<kind>/<entity>/<start>_<end>.parquet`,
//! where start and end are the first and last value of the kind's time
//! column in milliseconds since the epoch (inclusive).
//!
//! Files of one kind and entity may not overlap in time: the loader refuses
//! such a catalog and the writer refuses to create one. Writes are staged:
//! every file is written and synced under `<root>/.staging/` first and moved
//! into place only when all of them succeeded, so a failed import or
//! generation leaves nothing half-written in the catalog.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::table::{self, Column, Schema, Table, TableError};

/// One file of the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub entity: String,
    pub start: i64,
    pub end: i64,
    pub path: PathBuf,
}

pub fn valid_entity(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_name(path: &Path) -> Option<(i64, i64)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".parquet")?;
    let (a, b) = stem.split_once('_')?;
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b).then_some((a, b))
}

/// Every file of `schema.kind` under `root`, by (entity, start). Refuses
/// badly named files and overlaps.
pub fn entries(root: &Path, schema: &Schema) -> Result<Vec<Entry>, TableError> {
    let dir = root.join(schema.kind);
    if !dir.is_dir() {
        return Err(TableError::file(&dir, format!("no `{}` history here (expected {})", schema.kind, layout(schema))));
    }
    let mut out = Vec::new();
    let read = |p: &Path| fs::read_dir(p).map_err(|e| TableError::file(p, format!("cannot list: {e}")));
    for entity_dir in read(&dir)? {
        let entity_dir = entity_dir.map_err(|e| TableError::file(&dir, e.to_string()))?.path();
        let Some(entity) = entity_dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        if entity.starts_with('.') {
            continue;
        }
        if !entity_dir.is_dir() || !valid_entity(&entity) {
            return Err(TableError::file(&entity_dir, format!("not an entity directory ({})", layout(schema))));
        }
        for file in read(&entity_dir)? {
            let path = file.map_err(|e| TableError::file(&entity_dir, e.to_string()))?.path();
            let Some((start, end)) = parse_name(&path) else {
                return Err(TableError::file(
                    &path,
                    format!("not named <start_ms>_<end_ms>.parquet ({})", layout(schema)),
                ));
            };
            out.push(Entry { entity: entity.clone(), start, end, path });
        }
    }
    out.sort_by(|a, b| (&a.entity, a.start, &a.path).cmp(&(&b.entity, b.start, &b.path)));
    for pair in out.windows(2) {
        if pair[0].entity == pair[1].entity && pair[1].start <= pair[0].end {
            return Err(TableError::file(
                &pair[1].path,
                format!("overlaps {} in time: files of one entity must not overlap", pair[0].path.display()),
            ));
        }
    }
    if out.is_empty() {
        return Err(TableError::file(&dir, format!("no files ({})", layout(schema))));
    }
    Ok(out)
}

fn layout(schema: &Schema) -> String {
    format!("{}/<entity>/<start_ms>_<end_ms>.parquet", schema.kind)
}

/// Like [`entries`], but an existing kind directory with no files is empty, not an error.
fn entries_or_none(root: &Path, schema: &Schema) -> Result<Vec<Entry>, TableError> {
    match entries(root, schema) {
        Err(TableError::File { what, .. }) if what.starts_with("no files") => Ok(Vec::new()),
        other => other,
    }
}

/// Reads every file of the kind, checking each against its name's range and
/// the time order of its rows. Returns (entity, table) in catalog order.
pub fn load(root: &Path, schema: &Schema) -> Result<Vec<(String, Table)>, TableError> {
    let mut out = Vec::new();
    for e in entries(root, schema)? {
        let t = table::read(&e.path, schema)?;
        let ts = t.ints(schema.time_col);
        for (row, w) in ts.windows(2).enumerate() {
            if w[1] < w[0] {
                return Err(TableError::row(
                    &e.path,
                    row + 1,
                    format!("timestamps out of order: `{}` goes back from {} to {}", schema.time_col, w[0], w[1]),
                ));
            }
        }
        if let Some(row) = ts.iter().position(|t| *t < e.start || *t > e.end) {
            return Err(TableError::row(
                &e.path,
                row,
                format!("`{}` {} is outside the file's range {}..={}", schema.time_col, ts[row], e.start, e.end),
            ));
        }
        out.push((e.entity, t));
    }
    Ok(out)
}

/// A file waiting to be written.
pub struct Pending {
    pub schema: &'static Schema,
    pub entity: String,
    pub columns: Vec<Column>,
    pub metadata: BTreeMap<String, String>,
}

/// Writes all `files` or none: checks every name and overlap first, writes
/// into `<root>/.staging/`, then moves each into place.
pub fn write_all(root: &Path, files: Vec<Pending>) -> Result<Vec<PathBuf>, TableError> {
    let mut planned: Vec<(Entry, Pending)> = Vec::new();
    for p in files {
        if !valid_entity(&p.entity) {
            return Err(TableError::file(root, format!("entity name `{}` is not [A-Za-z0-9._-]+", p.entity)));
        }
        let i = p.schema.cols.iter().position(|c| c.0 == p.schema.time_col).expect("time column in schema");
        let Column::I(ts) = &p.columns[i] else { panic!("time column is an integer column") };
        let (Some(start), Some(end)) = (ts.iter().min().copied(), ts.iter().max().copied()) else {
            continue; // nothing to write
        };
        let path = root.join(p.schema.kind).join(&p.entity).join(format!("{start}_{end}.parquet"));
        planned.push((Entry { entity: p.entity.clone(), start, end, path }, p));
    }
    // Overlaps with what is on disk, and among the new files.
    let mut by_kind: BTreeMap<&str, Vec<Entry>> = BTreeMap::new();
    for (e, p) in &planned {
        if !by_kind.contains_key(p.schema.kind) {
            // A catalog that is already broken (overlaps, bad names) is refused, not extended.
            let on_disk = if root.join(p.schema.kind).is_dir() { entries_or_none(root, p.schema)? } else { Vec::new() };
            by_kind.insert(p.schema.kind, on_disk);
        }
        let existing = by_kind.get_mut(p.schema.kind).expect("inserted above");
        if let Some(clash) = existing.iter().find(|x| x.entity == e.entity && x.start <= e.end && e.start <= x.end) {
            return Err(TableError::file(
                &e.path,
                format!("would overlap {} in time; nothing was written", clash.path.display()),
            ));
        }
        existing.push(e.clone());
    }
    let staging = root.join(".staging");
    let _ = fs::remove_dir_all(&staging);
    let io = |p: &Path, e: std::io::Error| TableError::file(p, e.to_string());
    fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
    let mut staged = Vec::new();
    for (n, (e, p)) in planned.iter().enumerate() {
        let tmp = staging.join(format!("{n}.parquet"));
        let written = table::write(&tmp, p.schema, p.columns.clone(), &p.metadata);
        if let Err(err) = written {
            let _ = fs::remove_dir_all(&staging);
            return Err(err);
        }
        staged.push((tmp, e.path.clone()));
    }
    for (tmp, dest) in &staged {
        let parent = dest.parent().expect("catalog paths have parents");
        fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        fs::rename(tmp, dest).map_err(|e| io(dest, e))?;
    }
    let _ = fs::remove_dir_all(&staging);
    Ok(staged.into_iter().map(|(_, d)| d).collect())
}
