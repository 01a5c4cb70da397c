//! A derived table written as changes: each new state commits only the rows
//! that differ, and the table read back (at every version) is exactly the
//! state written.

use std::sync::Arc;

use deltalake::arrow::array::{Int32Array, ListBuilder, StringArray, StringBuilder};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use fdp_store::keyed::{self, ChangeSummary, Layout, ROWS_PER_FILE};
use fdp_store::{tables, Lineage, RecordBatch};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ward_stay_id", DataType::Utf8, false),
        Field::new("ward", DataType::Utf8, true),
        Field::new("beds", DataType::Int32, true),
        Field::new(
            "flags",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            true,
        ),
    ]))
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    id: String,
    ward: Option<String>,
    beds: Option<i32>,
    flags: Vec<String>,
}

fn row(i: usize, ward: &str) -> Row {
    Row {
        id: format!("WS{i:06}"),
        ward: Some(ward.to_string()),
        beds: Some((i % 30) as i32),
        flags: if i.is_multiple_of(7) {
            vec!["nhs-missing".into()]
        } else {
            Vec::new()
        },
    }
}

fn batch(rows: &[Row]) -> RecordBatch {
    let mut flags = ListBuilder::new(StringBuilder::new());
    for r in rows {
        for f in &r.flags {
            flags.values().append_value(f);
        }
        flags.append(true);
    }
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.id))),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.ward.as_deref()),
            )),
            Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.beds))),
            Arc::new(flags.finish()),
        ],
    )
    .unwrap()
}

/// The table's rows at `version` (newest when `None`), sorted, read through
/// DataFusion as any Delta reader would.
async fn read(path: &std::path::Path, version: Option<u64>) -> Vec<Row> {
    use deltalake::arrow::array::{Array, AsArray};
    let table = tables::open(&at(path), version).await.unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    let batches = ctx
        .sql("SELECT ward_stay_id, ward, beds, flags FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut out = Vec::new();
    for b in batches {
        // Readers may hand strings back as views; compare as plain strings.
        let b = RecordBatch::try_new(
            schema(),
            b.columns()
                .iter()
                .zip(schema().fields())
                .map(|(c, f)| deltalake::arrow::compute::cast(c, f.data_type()).unwrap())
                .collect(),
        )
        .unwrap();
        let ids = b.column(0).as_string::<i32>();
        let wards = b.column(1).as_string::<i32>();
        let beds = b
            .column(2)
            .as_primitive::<deltalake::arrow::datatypes::Int32Type>();
        let flags = b.column(3).as_list::<i32>();
        for i in 0..b.num_rows() {
            let f = flags.value(i);
            let f = f.as_string::<i32>();
            out.push(Row {
                id: ids.value(i).to_string(),
                ward: (!wards.is_null(i)).then(|| wards.value(i).to_string()),
                beds: (!beds.is_null(i)).then(|| beds.value(i)),
                flags: (0..f.len()).map(|j| f.value(j).to_string()).collect(),
            });
        }
    }
    out.sort();
    out
}

fn at(path: &std::path::Path) -> tables::TableLocation {
    tables::TableLocation::local(path).unwrap()
}

fn lineage(seq: u64) -> Lineage {
    Lineage {
        transform: "test".into(),
        through_seq: seq,
        ..Default::default()
    }
}

async fn write(
    path: &std::path::Path,
    layout: &mut Option<Layout>,
    rows: &[Row],
    seq: u64,
) -> ChangeSummary {
    let table = tables::open_or_create(&at(path), schema()).await.unwrap();
    keyed::write_state(table, layout, batch(rows), "ward_stay_id", &lineage(seq))
        .await
        .unwrap()
}

fn files(path: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_state_commits_only_the_rows_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward_stay");
    let n = ROWS_PER_FILE * 5 + 100;
    let mut rows: Vec<Row> = (0..n).map(|i| row(i, "AMU")).collect();
    let mut layout = None;

    // The first write after a start is whole, in files of ROWS_PER_FILE.
    let first = write(&path, &mut layout, &rows, 10).await;
    assert!(first.whole, "{first:?}");
    assert_eq!(first.rows_written, n);
    assert_eq!(first.files_added, 6);
    assert_eq!(read(&path, None).await, rows);

    // The same state again commits nothing.
    let same = write(&path, &mut layout, &rows, 11).await;
    assert_eq!(same.version, None, "{same:?}");

    // One patient moves ward, one stay ends (its row goes), one begins.
    rows[5].ward = Some("CCU".into());
    rows[5].flags = vec!["nhs-unverified".into()];
    let gone = rows.remove(ROWS_PER_FILE + 3);
    rows.push(row(n, "ED"));
    let before = files(&path);
    let change = write(&path, &mut layout, &rows, 12).await;
    assert!(!change.whole, "{change:?}");
    assert_eq!(
        (change.inserted, change.updated, change.deleted),
        (1, 1, 1),
        "{change:?}"
    );
    // Two files touched (the moved row's and the ended stay's), each
    // rewritten without its changed row; the changed and new rows together.
    assert_eq!(change.files_removed, 2, "{change:?}");
    assert_eq!(change.rows_written, 2 * ROWS_PER_FILE, "{change:?}");
    assert_eq!(change.files_added, 3, "{change:?}");
    let added: Vec<String> = files(&path)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    assert_eq!(added.len(), 3);
    let now = read(&path, None).await;
    let mut expected = rows.clone();
    expected.sort();
    assert_eq!(now, expected);
    assert!(!now.iter().any(|r| r.id == gone.id));

    // The row changes again: only the small file of changed rows is
    // rewritten, not the files of ROWS_PER_FILE.
    rows[5].beds = Some(99);
    let again = write(&path, &mut layout, &rows, 13).await;
    assert_eq!((again.updated, again.files_removed), (1, 1), "{again:?}");
    assert!(again.rows_written <= 2, "{again:?}");
    let mut expected = rows.clone();
    expected.sort();
    assert_eq!(read(&path, None).await, expected);

    // Every version is the state written then: time travel still works.
    let at_first = read(&path, first.version).await;
    let mut original: Vec<Row> = (0..n).map(|i| row(i, "AMU")).collect();
    original.sort();
    assert_eq!(at_first, original);

    // The history says what each version did and what it came from.
    let table = tables::open(&at(&path), None).await.unwrap();
    let history = tables::history(&table, 10).await.unwrap();
    let newest = &history[0];
    assert_eq!(newest.version, again.version.unwrap());
    assert_eq!(newest.operation.as_deref(), Some("MERGE"));
    assert_eq!(newest.rows_written, Some(again.rows_written as i64));
    assert_eq!(newest.lineage.as_ref().unwrap()["through_seq"], 13);
    assert_eq!(history[2].operation.as_deref(), Some("WRITE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_are_gathered_and_a_restart_writes_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward_stay");
    let mut rows: Vec<Row> = (0..5000).map(|i| row(i, "AMU")).collect();
    let mut layout = None;
    write(&path, &mut layout, &rows, 1).await;
    // Many writes each admitting one patient: each makes a small file.
    for k in 0..40 {
        rows.push(row(10_000 + k, "ED"));
        let s = write(&path, &mut layout, &rows, 2 + k as u64).await;
        assert!(!s.whole && s.inserted == 1, "{s:?}");
    }
    let table = tables::open(&at(&path), None).await.unwrap();
    let active = table.snapshot().unwrap().log_data().num_files();
    assert!(
        active <= 1 + 17 + 1,
        "small files should have been gathered: {active} active"
    );
    let mut expected = rows.clone();
    expected.sort();
    assert_eq!(read(&path, None).await, expected);

    // A new process knows nothing of the files: its first write is whole,
    // and the table is still exactly the state.
    let mut fresh = None;
    rows[0].ward = Some("SAU".into());
    let s = write(&path, &mut fresh, &rows, 100).await;
    assert!(s.whole, "{s:?}");
    let mut expected = rows.clone();
    expected.sort();
    assert_eq!(read(&path, None).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writer_in_between_makes_the_next_write_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward_stay");
    let mut rows: Vec<Row> = (0..100).map(|i| row(i, "AMU")).collect();
    let mut layout = None;
    write(&path, &mut layout, &rows, 1).await;
    // Someone else writes the table (an operator's repair, say).
    let table = tables::open(&at(&path), None).await.unwrap();
    tables::overwrite(table, vec![batch(&rows[..10])], &lineage(1))
        .await
        .unwrap();
    rows[3].beds = Some(7);
    let s = write(&path, &mut layout, &rows, 2).await;
    assert!(s.whole, "the layout no longer matches the table: {s:?}");
    let mut expected = rows.clone();
    expected.sort();
    assert_eq!(read(&path, None).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_keys_are_deleted_without_exhausting_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let opened = fdp_store::Store::open(fdp_store::StoreConfig::new(dir.path()))
        .await
        .unwrap();
    let store = opened.store;
    let rows: Vec<Row> = (0..12_000).map(|i| row(i, "AMU")).collect();
    let path = tables::table_location(dir.path(), tables::Layer::Canonical, "ward_stay@archive")
        .unwrap()
        .local_path()
        .unwrap();
    let table = tables::open_or_create(&at(&path), schema()).await.unwrap();
    tables::append(
        table,
        vec![batch(&rows)],
        tables::commit_properties(&lineage(1), "test", 1),
    )
    .await
    .unwrap();
    // A year's readmissions, revived at once after a full replay.
    let gone: Vec<String> = rows.iter().step_by(2).map(|r| r.id.clone()).collect();
    store
        .delete_canonical_keys("ward_stay@archive", "ward_stay_id", &gone, &lineage(2))
        .await
        .unwrap();
    let left = read(&path, None).await;
    assert_eq!(left.len(), 6_000);
    assert!(left.iter().all(|r| !gone.contains(&r.id)));
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_by_key_rewrites_only_the_files_holding_those_keys() {
    let dir = tempfile::tempdir().unwrap();
    let opened = fdp_store::Store::open(fdp_store::StoreConfig::new(dir.path()))
        .await
        .unwrap();
    let store = opened.store;
    let name = "ward_stay@archive";
    let path = tables::table_location(dir.path(), tables::Layer::Canonical, name)
        .unwrap()
        .local_path()
        .unwrap();
    // Four days of retirements: four appends, four files.
    let rows: Vec<Row> = (0..400).map(|i| row(i, "AMU")).collect();
    for (day, chunk) in rows.chunks(100).enumerate() {
        let table = tables::open_or_create(&at(&path), schema()).await.unwrap();
        tables::append(
            table,
            vec![batch(chunk)],
            tables::commit_properties(&lineage(1), "test", day as i64),
        )
        .await
        .unwrap();
    }
    // Two patients of the second day come back (one key asked twice, one
    // not in the table at all).
    let back = vec![
        rows[150].id.clone(),
        rows[160].id.clone(),
        rows[150].id.clone(),
        "WS999999".to_string(),
    ];
    let s = store
        .delete_canonical_keys(name, "ward_stay_id", &back, &lineage(2))
        .await
        .unwrap();
    assert_eq!(
        (
            s.deleted,
            s.files_removed,
            s.files_added,
            s.rows_written,
            s.files_read
        ),
        (2, 1, 1, 98, 4),
        "{s:?}"
    );
    let mut expected: Vec<Row> = rows
        .iter()
        .filter(|r| r.id != rows[150].id && r.id != rows[160].id)
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(read(&path, None).await, expected);
    let table = tables::open(&at(&path), None).await.unwrap();
    let history = tables::history(&table, 1).await.unwrap();
    assert_eq!(history[0].operation.as_deref(), Some("DELETE"));
    assert_eq!(history[0].lineage.as_ref().unwrap()["through_seq"], 2);

    // The next delete knows every file's keys, the rewritten one included.
    let s = store
        .delete_canonical_keys(name, "ward_stay_id", &[rows[399].id.clone()], &lineage(3))
        .await
        .unwrap();
    assert_eq!(
        (s.deleted, s.files_removed, s.files_read),
        (1, 1, 0),
        "{s:?}"
    );
    // A key that is nowhere commits nothing.
    let before = tables::open(&at(&path), None).await.unwrap().version();
    let s = store
        .delete_canonical_keys(name, "ward_stay_id", &["WS999998".into()], &lineage(4))
        .await
        .unwrap();
    assert_eq!(s.version, None);
    assert_eq!(
        tables::open(&at(&path), None).await.unwrap().version(),
        before
    );
    expected.retain(|r| r.id != rows[399].id);
    assert_eq!(read(&path, None).await, expected);
    store.shutdown().await;
}
