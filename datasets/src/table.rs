//! Typed columns to and from Parquet, with validation that names the file,
//! the column and the row. Every schema here uses four column types, so one
//! generic reader and writer serve every kind of history.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Ty {
    /// Milliseconds since the Unix epoch, UTC.
    TimestampMs,
    Utf8,
    Int64,
    Float64,
}

impl Ty {
    fn arrow(self) -> DataType {
        match self {
            Ty::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Ty::Utf8 => DataType::Utf8,
            Ty::Int64 => DataType::Int64,
            Ty::Float64 => DataType::Float64,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Ty::TimestampMs => "timestamp_ms",
            Ty::Utf8 => "utf8",
            Ty::Int64 => "int64",
            Ty::Float64 => "float64",
        }
    }
}

/// A column: name, type, meaning.
pub type Col = (&'static str, Ty, &'static str);

/// A kind of history: its directory name, columns, and the time column that
/// orders its rows and names its files.
#[derive(Debug)]
pub struct Schema {
    pub kind: &'static str,
    pub cols: &'static [Col],
    pub time_col: &'static str,
}

/// A column's values.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    I(Vec<i64>),
    F(Vec<f64>),
    S(Vec<String>),
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: {what}")]
    File { path: PathBuf, what: String },
    #[error("{path}: row {row}: {what}")]
    Row { path: PathBuf, row: usize, what: String },
}

impl TableError {
    pub fn file(path: &Path, what: impl Into<String>) -> TableError {
        TableError::File { path: path.to_path_buf(), what: what.into() }
    }
    pub fn row(path: &Path, row: usize, what: impl Into<String>) -> TableError {
        TableError::Row { path: path.to_path_buf(), row, what: what.into() }
    }
}

/// A whole file's columns, by name, and its key-value metadata.
#[derive(Debug)]
pub struct Table {
    pub path: PathBuf,
    pub len: usize,
    pub columns: BTreeMap<&'static str, Column>,
    pub metadata: BTreeMap<String, String>,
}

impl Table {
    pub fn ints(&self, name: &str) -> &[i64] {
        match &self.columns[name] {
            Column::I(v) => v,
            other => panic!("{name} is not an integer column: {other:?}"),
        }
    }
    pub fn floats(&self, name: &str) -> &[f64] {
        match &self.columns[name] {
            Column::F(v) => v,
            other => panic!("{name} is not a float column: {other:?}"),
        }
    }
    pub fn strs(&self, name: &str) -> &[String] {
        match &self.columns[name] {
            Column::S(v) => v,
            other => panic!("{name} is not a string column: {other:?}"),
        }
    }
}

/// Writes `columns` (in schema order) to `path` as one row group set.
pub fn write(
    path: &Path,
    schema: &Schema,
    columns: Vec<Column>,
    metadata: &BTreeMap<String, String>,
) -> Result<(), TableError> {
    assert_eq!(columns.len(), schema.cols.len(), "{}: one column per schema column", schema.kind);
    let fields: Vec<Field> = schema.cols.iter().map(|(n, t, _)| Field::new(*n, t.arrow(), false)).collect();
    let arrow_schema = Arc::new(ArrowSchema::new(fields));
    let arrays: Vec<ArrayRef> = columns
        .into_iter()
        .zip(schema.cols)
        .map(|(c, (name, ty, _))| -> ArrayRef {
            match (c, ty) {
                (Column::I(v), Ty::TimestampMs) => Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC")),
                (Column::I(v), Ty::Int64) => Arc::new(Int64Array::from(v)),
                (Column::F(v), Ty::Float64) => Arc::new(Float64Array::from(v)),
                (Column::S(v), Ty::Utf8) => Arc::new(StringArray::from(v)),
                (c, ty) => panic!("{name}: {ty:?} column built as {c:?}"),
            }
        })
        .collect();
    let batch =
        RecordBatch::try_new(arrow_schema.clone(), arrays).map_err(|e| TableError::file(path, e.to_string()))?;
    let kv: Vec<KeyValue> = metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(kv))
        .set_created_by("dlft".into())
        .build();
    let file = File::create(path).map_err(|e| TableError::file(path, format!("cannot create: {e}")))?;
    let mut writer =
        ArrowWriter::try_new(file, arrow_schema, Some(props)).map_err(|e| TableError::file(path, e.to_string()))?;
    writer.write(&batch).map_err(|e| TableError::file(path, e.to_string()))?;
    let file = writer.into_inner().map_err(|e| TableError::file(path, e.to_string()))?;
    file.sync_all().map_err(|e| TableError::file(path, e.to_string()))?;
    Ok(())
}

/// Reads `path`, refusing missing columns, wrong types and nulls. Extra
/// columns are ignored (a newer writer may add some).
///
/// The file's embedded Arrow schema is not read (the columns are checked
/// against `schema` from Parquet's own types): the Arrow reader panics on
/// some damaged ones (found by `tests/fuzz.rs`). Any other panic of the
/// Parquet reader on a damaged file is caught and named as such.
pub fn read(path: &Path, schema: &Schema) -> Result<Table, TableError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_unchecked(path, schema))).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Err(TableError::file(path, format!("damaged Parquet file (the reader failed: {why})")))
    })
}

fn read_unchecked(path: &Path, schema: &Schema) -> Result<Table, TableError> {
    let file = File::open(path).map_err(|e| TableError::file(path, format!("cannot open: {e}")))?;
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|e| TableError::file(path, format!("not a readable Parquet file: {e}")))?;
    let metadata: BTreeMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| kv.iter().map(|k| (k.key.clone(), k.value.clone().unwrap_or_default())).collect())
        .unwrap_or_default();
    let file_schema = builder.schema().clone();
    let mut index = Vec::new();
    for (name, ty, _) in schema.cols {
        let Some((i, field)) = file_schema.column_with_name(name) else {
            return Err(TableError::file(path, format!("missing column `{name}` ({})", ty.name())));
        };
        let ok = match ty {
            Ty::TimestampMs => matches!(field.data_type(), DataType::Timestamp(TimeUnit::Millisecond, _)),
            other => field.data_type() == &other.arrow(),
        };
        if !ok {
            return Err(TableError::file(
                path,
                format!("column `{name}` has type {}, expected {}", field.data_type(), ty.name()),
            ));
        }
        index.push(i);
    }
    let mut columns: Vec<Column> = schema
        .cols
        .iter()
        .map(|(_, ty, _)| match ty {
            Ty::TimestampMs | Ty::Int64 => Column::I(Vec::new()),
            Ty::Float64 => Column::F(Vec::new()),
            Ty::Utf8 => Column::S(Vec::new()),
        })
        .collect();
    let reader = builder.build().map_err(|e| TableError::file(path, e.to_string()))?;
    let mut len = 0;
    for batch in reader {
        let batch = batch.map_err(|e| TableError::file(path, format!("corrupt data: {e}")))?;
        for ((col, &i), (name, _, _)) in columns.iter_mut().zip(&index).zip(schema.cols) {
            let array = batch.column(i);
            if array.null_count() > 0 {
                let row = (0..array.len()).find(|r| array.is_null(*r)).unwrap_or(0);
                return Err(TableError::row(path, len + row, format!("`{name}` is null")));
            }
            let any = array.as_any();
            match col {
                Column::I(v) => {
                    if let Some(a) = any.downcast_ref::<TimestampMillisecondArray>() {
                        v.extend(a.values().iter());
                    } else if let Some(a) = any.downcast_ref::<Int64Array>() {
                        v.extend(a.values().iter());
                    }
                }
                Column::F(v) => v.extend(any.downcast_ref::<Float64Array>().expect("type checked").values().iter()),
                Column::S(v) => v.extend(
                    any.downcast_ref::<StringArray>()
                        .expect("type checked")
                        .iter()
                        .map(|s| s.unwrap_or("").to_string()),
                ),
            }
        }
        len += batch.num_rows();
    }
    let columns = schema.cols.iter().map(|(n, _, _)| *n).zip(columns).collect();
    Ok(Table { path: path.to_path_buf(), len, columns, metadata })
}
