use std::time::Duration;

use fdp_store::{Committed, RecordStatus, Store, StoreConfig, Submission};

fn sub(control: &str, status: RecordStatus) -> Submission {
    Submission {
        received_at_us: 1_763_700_000_000_000,
        status,
        stream: "hl7v2_message".into(),
        source: "test".into(),
        message_type: "ADT^A01".into(),
        control_id: control.into(),
        dedup_key: (status != RecordStatus::Quarantined).then(|| format!("PAS|RXX|{control}")),
        reason: String::new(),
        location: String::new(),
        payload: format!("MSH|^~\\&|PAS|RXX|||||ADT^A01|{control}|P|2.4").into_bytes(),
    }
}

fn config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.raw_flush_interval = Duration::from_millis(50);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_durable_deduplicated_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let opened = Store::open(config(dir.path())).await.unwrap();
    assert!(opened.history.is_empty());
    let store = opened.store;
    let c = store.committer();
    let a = c.commit(sub("1", RecordStatus::Accepted)).await.unwrap();
    let b = c.commit(sub("2", RecordStatus::Accepted)).await.unwrap();
    let again = c.commit(sub("1", RecordStatus::Accepted)).await.unwrap();
    let bad = c.commit(sub("3", RecordStatus::Quarantined)).await.unwrap();
    assert_eq!(a, Committed::New(1));
    assert_eq!(b, Committed::New(2));
    assert_eq!(again, Committed::Duplicate(1));
    assert_eq!(bad, Committed::New(3));
    let p = store.raw_flushed_through(3).await;
    assert_eq!(p.through_seq, 3);
    store.shutdown().await;

    let opened = Store::open(config(dir.path())).await.unwrap();
    // Only accepted records are history; the quarantined one is in raw.
    let seqs: Vec<u64> = opened.history.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2]);
    let c = opened.store.committer();
    assert_eq!(
        c.commit(sub("2", RecordStatus::Accepted)).await.unwrap(),
        Committed::Duplicate(2)
    );
    assert_eq!(
        c.commit(sub("4", RecordStatus::Accepted)).await.unwrap(),
        Committed::New(4)
    );
    opened.store.shutdown().await;

    let batches = raw_sql(
        dir.path(),
        Default::default(),
        "SELECT status, count(*) AS n FROM raw.hl7v2_message GROUP BY status ORDER BY status",
    )
    .await;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(text.contains("accepted    | 3"), "{text}");
    assert!(text.contains("quarantined | 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_only_in_the_wal_reach_the_raw_table_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Never flush by time: the records stay in the WAL only.
    cfg.raw_flush_interval = Duration::from_secs(3600);
    let opened = Store::open(cfg).await.unwrap();
    let c = opened.store.committer();
    for i in 0..10 {
        c.commit(sub(&i.to_string(), RecordStatus::Accepted))
            .await
            .unwrap();
    }
    // Simulate a crash: forget the store without its orderly shutdown.
    std::mem::forget(opened.store);
    drop(opened.feed);
    // The lock is held by the forgotten handle; a real crash releases it.
    let lock = dir.path().join("instance.lock");
    std::fs::remove_file(&lock).unwrap();

    let opened = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(opened.history.len(), 10);
    let c = opened.store.committer();
    assert_eq!(
        c.commit(sub("5", RecordStatus::Accepted)).await.unwrap(),
        Committed::Duplicate(6)
    );
    opened.store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opened = Store::open(config(dir.path())).await.unwrap();
    match Store::open(config(dir.path())).await {
        Err(fdp_store::StoreError::Locked(_)) => {}
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("expected Locked, got a second store"),
    }
    opened.store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_appends_are_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let opened = Store::open(config(dir.path())).await.unwrap();
    let c = opened.store.committer();
    // One raw append per commit: forty small files.
    for i in 0..40 {
        c.commit(sub(&format!("S{i}"), RecordStatus::Accepted))
            .await
            .unwrap();
        opened.store.raw_flushed_through(i + 1).await;
    }
    opened.store.shutdown().await;
    let path =
        fdp_store::tables::table_location(dir.path(), fdp_store::Layer::Raw, "hl7v2_message")
            .unwrap();
    let table = fdp_store::tables::open(&path, None).await.unwrap();
    let before = table.get_file_uris().unwrap().count();
    assert!(before >= 40, "{before} files before compaction");
    let (table, removed) = fdp_store::tables::compact(table, 32).await.unwrap();
    assert!(removed >= 40);
    assert_eq!(table.get_file_uris().unwrap().count(), 1);
    // Same rows after as before.
    let b = raw_sql(
        dir.path(),
        Default::default(),
        "SELECT count(*) AS n FROM raw.hl7v2_message",
    )
    .await;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&b)
        .unwrap()
        .to_string();
    assert!(text.contains("| 40 |"), "{text}");
    // And time travel still reaches the version before compaction.
    let b = raw_sql(
        dir.path(),
        fdp_store::AsOf::Version(20),
        "SELECT count(*) AS n FROM raw.hl7v2_message",
    )
    .await;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&b)
        .unwrap()
        .to_string();
    assert!(text.contains("| 20 |"), "{text}");
}

/// Read raw tables as the instance's integration engineer would: through a
/// governed session, the only way to the rows.
async fn raw_sql(
    dir: &std::path::Path,
    as_of: fdp_store::AsOf,
    sql: &str,
) -> Vec<fdp_store::RecordBatch> {
    use fdp_govern::{Governance, Policy, Principal, Purpose, SessionRequest};
    let gov = Governance::open(
        dir,
        Policy::demo(fdp_model::Model::canonical()),
        "RXX",
        None,
    )
    .unwrap();
    let who = Principal {
        name: "engineer".into(),
        roles: vec!["integration-engineer".into()],
        organisation: Some("RXX".into()),
    };
    let mut req = SessionRequest::new(who, Purpose::Operations, "test");
    req.as_of = as_of;
    let session = gov
        .session(&fdp_store::StoredTables::new(dir), req)
        .await
        .unwrap();
    session.query(sql).await.unwrap().batches
}
