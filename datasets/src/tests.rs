use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::catalog::{Pending, write_all};
use crate::table::Column;

fn bandit_file(ts: Vec<i64>, propensity: Vec<f64>) -> Pending {
    let n = ts.len();
    let mut metadata = BTreeMap::new();
    metadata.insert("dlft.n_arms".to_string(), "3".to_string());
    metadata.insert("dlft.n_positions".to_string(), "1".to_string());
    Pending {
        schema: &BANDIT,
        entity: "shop".into(),
        columns: vec![
            Column::I(ts),
            Column::S(vec!["{}".into(); n]),
            Column::I((0..n as i64).map(|i| i % 3).collect()),
            Column::I(vec![0; n]),
            Column::F(vec![1.0; n]),
            Column::F(propensity),
            Column::S(vec!["uniform".into(); n]),
        ],
        metadata,
    }
}

fn only_file(root: &Path, kind: &str) -> PathBuf {
    let dir = root.join(kind).join("shop");
    let mut files: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    files.pop().unwrap()
}

#[test]
fn bandit_round_trip_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_all(dir.path(), vec![bandit_file(vec![1000, 2000, 3000], vec![0.5, 1.0, 0.25])]).unwrap();
    assert_eq!(files, vec![dir.path().join("bandit/shop/1000_3000.parquet")]);
    let logs = load_bandit(dir.path()).unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!((logs[0].n_arms, logs[0].n_positions), (3, 1));
    assert_eq!(logs[0].rounds.iter().map(|r| r.pscore).collect::<Vec<_>>(), vec![0.5, 1.0, 0.25]);
    assert!(!dir.path().join(".staging").exists(), "staging is cleaned up");
}

#[test]
fn bad_propensities_are_named_by_file_and_row() {
    for bad in [0.0, 1.5, f64::NAN] {
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), vec![bandit_file(vec![1, 2, 3], vec![0.5, bad, 0.5])]).unwrap();
        let err = load_bandit(dir.path()).unwrap_err().to_string();
        assert!(err.contains("1_3.parquet") && err.contains("row 1") && err.contains("propensity"), "{err}");
    }
}

#[test]
fn out_of_order_timestamps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), vec![bandit_file(vec![5, 9, 7], vec![0.5; 3])]).unwrap();
    let err = load_bandit(dir.path()).unwrap_err().to_string();
    assert!(err.contains("row 2") && err.contains("out of order"), "{err}");
}

#[test]
fn overlapping_files_are_refused_by_writer_and_loader() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), vec![bandit_file(vec![10, 20], vec![0.5; 2])]).unwrap();
    let err = write_all(dir.path(), vec![bandit_file(vec![15, 30], vec![0.5; 2])]).unwrap_err().to_string();
    assert!(err.contains("overlap") && err.contains("nothing was written"), "{err}");
    assert_eq!(fs::read_dir(dir.path().join("bandit/shop")).unwrap().count(), 1);
    // A file copied in by hand that overlaps is refused at load.
    fs::copy(only_file(dir.path(), "bandit"), dir.path().join("bandit/shop/20_25.parquet")).unwrap();
    let err = load_bandit(dir.path()).unwrap_err().to_string();
    assert!(err.contains("overlaps"), "{err}");
}

#[test]
fn a_failed_batch_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Second file of the batch overlaps the first: the whole batch is refused.
    let err = write_all(dir.path(), vec![bandit_file(vec![1, 5], vec![0.5; 2]), bandit_file(vec![4, 8], vec![0.5; 2])]);
    assert!(err.is_err());
    assert!(!dir.path().join("bandit").exists(), "nothing half-written");
}

#[test]
fn missing_columns_wrong_types_and_corrupt_files_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), vec![bandit_file(vec![1, 2], vec![0.5; 2])]).unwrap();
    let path = only_file(dir.path(), "bandit");
    // Read it as insights: the columns are missing.
    fs::create_dir_all(dir.path().join("insights/shop")).unwrap();
    fs::copy(&path, dir.path().join("insights/shop/1_2.parquet")).unwrap();
    let err = load_insights(dir.path()).unwrap_err().to_string();
    assert!(err.contains("insights/shop/1_2.parquet") && err.contains("missing column `ts_event`"), "{err}");

    // A schema whose `reward` is an integer: wrong type.
    static WRONG: table::Schema = table::Schema {
        kind: "bandit",
        time_col: "ts",
        cols: &[("ts", Ty::TimestampMs, ""), ("reward", Ty::Int64, "")],
    };
    let err = table::read(&path, &WRONG).unwrap_err().to_string();
    assert!(err.contains("column `reward` has type Float64, expected int64"), "{err}");

    // Garbage bytes.
    fs::write(&path, b"PAR1 this is not parquet").unwrap();
    let err = load_bandit(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not a readable Parquet file"), "{err}");
}

#[test]
fn negative_money_and_bad_currency_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let rows = |spend: i64, cur: &str| Pending {
        schema: &INSIGHTS,
        entity: "shop".into(),
        columns: vec![
            Column::I(vec![0, 0]),
            Column::I(vec![10, 20]),
            Column::S(vec!["a".into(), "b".into()]),
            Column::I(vec![5, spend]),
            Column::I(vec![1, 1]),
            Column::I(vec![0, 0]),
            Column::I(vec![0, 0]),
            Column::I(vec![0, 0]),
            Column::S(vec!["EUR".into(), cur.into()]),
        ],
        metadata: BTreeMap::new(),
    };
    write_all(dir.path(), vec![rows(-3, "EUR")]).unwrap();
    let err = load_insights(dir.path()).unwrap_err().to_string();
    assert!(err.contains("row 1") && err.contains("negative money: `spend_cents` = -3"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), vec![rows(3, "euro")]).unwrap();
    let err = load_insights(dir.path()).unwrap_err().to_string();
    assert!(err.contains("row 1") && err.contains("currency"), "{err}");
}

#[test]
fn generate_is_deterministic_and_loads_back() {
    let spec = generate::Spec { seed: 42, days: 2, brands: 2, bandit_per_hour: 20 };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sa = generate::generate(&spec, a.path()).unwrap();
    generate::generate(&spec, b.path()).unwrap();
    for kind in ALL {
        // Chargebacks come a day to two weeks after a claim: two days of
        // history may hold none (`refund_backtest_*` reads three weeks).
        if sa.rows[kind.kind] == 0 && kind.kind == "disputes" {
            continue;
        }
        assert!(sa.rows[kind.kind] > 0, "{} rows generated", kind.kind);
        let (la, lb) = (load(a.path(), kind).unwrap(), load(b.path(), kind).unwrap());
        assert_eq!(la.len(), lb.len());
        for ((ea, ta), (eb, tb)) in la.iter().zip(&lb) {
            assert_eq!((ea, &ta.columns), (eb, &tb.columns), "{} differs between runs of one seed", kind.kind);
        }
    }
    let insights = load_insights(a.path()).unwrap();
    assert_eq!(insights.keys().collect::<Vec<_>>(), ["brand-1", "brand-2"]);
    // Late conversions: some bucket has more than one version.
    let rows = &insights["brand-1"];
    let mut versions: BTreeMap<(&str, u64), u32> = BTreeMap::new();
    for r in rows {
        *versions.entry((r.ad.as_str(), r.ts_event.0)).or_default() += 1;
    }
    assert!(versions.values().any(|v| *v > 1), "no bucket was restated");
    let logs = load_bandit(a.path()).unwrap();
    assert_eq!(logs[0].rounds.len(), 2 * 24 * 20);
    assert!(logs[0].rounds.iter().all(|r| r.pscore >= 0.1 / 6.0 - 1e-12), "the floor keeps propensities up");

    let c = tempfile::tempdir().unwrap();
    generate::generate(&generate::Spec { seed: 43, ..spec.clone() }, c.path()).unwrap();
    assert_ne!(load(a.path(), &INSIGHTS).unwrap()[0].1.columns, load(c.path(), &INSIGHTS).unwrap()[0].1.columns);
    // Generating into a catalog that already holds that history is refused.
    assert!(generate::generate(&spec, a.path()).unwrap_err().to_string().contains("overlap"));
}

fn obd(policy: &str, campaign: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/open-bandit-sample").join(policy).join(campaign)
}

#[test]
fn imports_the_open_bandit_sample() {
    let dir = tempfile::tempdir().unwrap();
    let imported = obd::import(&obd("bts", "men"), dir.path()).unwrap();
    assert_eq!((imported.entity.as_str(), imported.rows, imported.n_arms), ("bts-men", 10_000, 34));
    let logs = load_bandit(dir.path()).unwrap();
    let l = &logs[0];
    assert_eq!(l.n_positions, 3);
    assert_eq!(l.rounds.iter().filter(|r| r.reward == 1.0).count(), 69, "click rate 0.0069 on 10,000 rows");
    assert!(l.policies.iter().all(|p| p == "bts"));
    // 2019-11-24 00:01:03.979311+00:00
    assert_eq!(l.rounds[0].ts.0, 1_574_553_663_979);
}

#[test]
fn obd_bad_rows_are_named_and_nothing_is_written() {
    let src = tempfile::tempdir().unwrap();
    let camp = src.path().join("random").join("men");
    fs::create_dir_all(&camp).unwrap();
    fs::copy(obd("random", "men").join("item_context.csv"), camp.join("item_context.csv")).unwrap();
    let text = fs::read_to_string(obd("random", "men").join("men.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().take(20).map(str::to_string).collect();
    lines[5] = lines[5].replacen(",0.029411764705882353,", ",0.0,", 1);
    fs::write(camp.join("men.csv"), lines.join("\n")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = obd::import(&camp, out.path()).unwrap_err().to_string();
    assert!(err.contains("men.csv") && err.contains("line 6") && err.contains("propensity 0"), "{err}");
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0, "nothing written");

    fs::write(camp.join("men.csv"), "timestamp,item_id\n").unwrap();
    let err = obd::import(&camp, out.path()).unwrap_err().to_string();
    assert!(err.contains("missing column `position`"), "{err}");
}
