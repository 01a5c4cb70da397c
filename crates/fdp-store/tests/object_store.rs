//! A data directory whose tables live in S3: an S3-compatible server (moto)
//! on loopback, the store writing its raw and canonical tables there, time
//! travel, and governed reads with the per-file row rules, which give the
//! rows plan filters give. Two writers can never commit the same version.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;
use deltalake::kernel::transaction::CommitProperties;
use fdp_govern::{Governance, Policy, Principal, Purpose, SessionRequest};
use fdp_store::location::{self, parse_tables_url};
use fdp_store::tables::{self, Layer};
use fdp_store::{RecordStatus, Store, StoreConfig, StoredTables, Submission};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// moto's S3 on a loopback port, stopped when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with moto[server] (pip install 'moto[server]==5.2.1'; scripts/test installs it)");
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "moto did not start on port {port}: is moto[server] installed?"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Make a bucket (moto takes an unsigned request).
    fn bucket(&self, name: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// The options an instance's `[storage.options]` would give.
    fn options(&self) -> BTreeMap<String, String> {
        [
            ("aws_endpoint", self.endpoint()),
            ("aws_allow_http", "true".into()),
            ("aws_region", "eu-west-2".into()),
            // moto checks no signature; the keys are the test's own.
            ("aws_access_key_id", "test-key".into()),
            ("aws_secret_access_key", "test-secret".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn submission(i: usize) -> Submission {
    Submission {
        received_at_us: 1_700_000_000_000_000 + i as i64,
        status: RecordStatus::Accepted,
        stream: "hl7v2_message".into(),
        source: "test".into(),
        message_type: "ADT^A01".into(),
        control_id: format!("MSG{i:05}"),
        dedup_key: Some(format!("MSG{i:05}")),
        reason: String::new(),
        location: String::new(),
        payload: format!("MSH|^~\\&|PAS|RXX|||20260101||ADT^A01|MSG{i:05}|P|2.4\r").into_bytes(),
    }
}

fn patients(ids: &[(&str, &str)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("nhs_number", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(ids.iter().map(|p| p.0))) as ArrayRef,
            Arc::new(StringArray::from_iter_values(ids.iter().map(|p| p.1))),
        ],
    )
    .unwrap()
}

fn principal(role: &str) -> Principal {
    Principal {
        name: format!("a {role}"),
        roles: vec![role.into()],
        organisation: Some("RXX".into()),
    }
}

async fn rows(
    gov: &Governance,
    tables: &StoredTables,
    role: &str,
    purpose: Purpose,
    sql: &str,
) -> String {
    let session = gov
        .session(tables, SessionRequest::new(principal(role), purpose, "sql"))
        .await
        .unwrap();
    pretty_format_batches(&session.query(sql).await.unwrap().batches)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_in_s3_are_written_read_back_in_time_and_governed_and_no_version_is_committed_twice()
{
    let moto = Moto::start();
    moto.bucket("trust-tables");
    let url = parse_tables_url("s3://trust-tables/rxx").unwrap();
    location::configure(&url, moto.options()).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Records through the WAL into the raw table, which is in the bucket.
    let mut config = StoreConfig::new(dir.path());
    config.tables_url = Some(url.clone());
    config.raw_flush_interval = Duration::from_millis(50);
    let opened = Store::open(config.clone()).await.unwrap();
    let store = opened.store;
    for i in 0..40 {
        store.committer().commit(submission(i)).await.unwrap();
    }
    store.raw_flushed_through(40).await;
    assert_eq!(
        tables::list_tables(dir.path(), Layer::Raw).await.unwrap(),
        vec!["hl7v2_message".to_string()]
    );
    assert!(
        !dir.path().join("tables").exists(),
        "no table is kept locally"
    );
    let raw = tables::table_location(dir.path(), Layer::Raw, "hl7v2_message").unwrap();
    assert_eq!(
        raw.url().as_str(),
        "s3://trust-tables/rxx/raw/hl7v2_message/"
    );
    assert_eq!(
        tables::raw_watermark(&tables::open(&raw, None).await.unwrap())
            .await
            .unwrap(),
        40
    );

    // A canonical table in two versions, and each version read back.
    let patient = tables::table_location(dir.path(), Layer::Canonical, "patient").unwrap();
    let p = patients(&[("pat-001", "9434765919"), ("pat-002", "9434765870")]);
    let t = tables::open_or_create(&patient, p.schema()).await.unwrap();
    let t = tables::append(t, vec![p], CommitProperties::default())
        .await
        .unwrap();
    let first = t.version().unwrap();
    let more = patients(&[("pat-003", "9434765889")]);
    let t = tables::append(t, vec![more], CommitProperties::default())
        .await
        .unwrap();
    assert_eq!(t.version(), Some(first + 1));
    assert_eq!(patient.latest_version(None).await.unwrap(), Some(first + 1));
    assert_eq!(
        patient.latest_version(Some(first)).await.unwrap(),
        Some(first + 1)
    );
    assert_eq!(
        patient.latest_version(Some(first + 1)).await.unwrap(),
        Some(first + 1)
    );
    assert!(patient.created().await.unwrap().is_some());
    let count = |t: deltalake::DeltaTable| async move {
        let ctx = datafusion::prelude::SessionContext::new();
        t.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("t", t.table_provider().await.unwrap())
            .unwrap();
        let b = ctx
            .sql("SELECT count(*) AS n FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        pretty_format_batches(&b).unwrap().to_string()
    };
    assert!(count(tables::open(&patient, Some(first)).await.unwrap())
        .await
        .contains("| 2 |"));
    assert!(count(tables::open(&patient, None).await.unwrap())
        .await
        .contains("| 3 |"));

    // Governed reads over the bucket: the opted-out patient is gone under
    // planning, with the per-file row rules, and identifiers are not shown.
    let opt_out = dir.path().join("opt-out.txt");
    std::fs::write(&opt_out, "9434765870\n").unwrap();
    let gov = Governance::open(
        dir.path(),
        Policy::parse(
            "demo",
            fdp_govern::policy::DEMO_POLICY,
            fdp_model::Model::canonical(),
        )
        .unwrap(),
        "RXX",
        Some(&opt_out),
    )
    .unwrap();
    let tables_read = StoredTables::new(dir.path());
    let direct = rows(
        &gov,
        &tables_read,
        "clinician",
        Purpose::DirectCare,
        "SELECT person_id FROM patient ORDER BY 1",
    )
    .await;
    assert!(
        direct.contains("pat-002") && direct.contains("pat-003"),
        "{direct}"
    );
    let planning = rows(
        &gov,
        &tables_read,
        "analyst",
        Purpose::Planning,
        "SELECT * FROM patient",
    )
    .await;
    assert_eq!(planning.lines().count() - 4, 2, "{planning}");
    assert!(
        !planning.contains("9434765919") && !planning.contains("pat-00"),
        "{planning}"
    );

    // The store is reopened and finds its tables where it left them; the
    // data directory will not be pointed elsewhere.
    store.shutdown().await;
    let reopened = Store::open(config.clone()).await.unwrap();
    assert_eq!(reopened.store.committer().committed_through(), 40);
    reopened.store.shutdown().await;
    let mut moved = config.clone();
    moved.tables_url = Some(parse_tables_url("s3://trust-tables/elsewhere").unwrap());
    let refused = Store::open(moved)
        .await
        .err()
        .expect("another location is refused");
    assert!(refused.to_string().contains("copy them"), "{refused}");

    // Two writers holding the same version: the first commits the next
    // version, and the second's commit of it is refused by the store
    // itself (a conditional put), whatever the writer does.
    let a = tables::open(&patient, None).await.unwrap();
    let b = tables::open(&patient, None).await.unwrap();
    let next = a.version().unwrap() + 1;
    tables::append(
        a,
        vec![patients(&[("pat-004", "9434765897")])],
        CommitProperties::default(),
    )
    .await
    .unwrap();
    let no_retry = CommitProperties::default().with_max_retries(0);
    let lost = tables::append(
        b.clone(),
        vec![patients(&[("pat-005", "9434765900")])],
        no_retry,
    )
    .await;
    assert!(
        lost.is_err(),
        "a second commit of version {next} was accepted"
    );
    let (s3, root) = location::object_store_for(patient.url()).unwrap();
    let entry = root
        .clone()
        .join("_delta_log")
        .join(format!("{next:020}.json").as_str());
    let put = s3
        .put_opts(
            &entry,
            PutPayload::from(b"{}".to_vec()),
            PutOptions::from(PutMode::Create),
        )
        .await;
    assert!(
        matches!(put, Err(object_store::Error::AlreadyExists { .. })),
        "{put:?}"
    );
    let kept = s3.get(&entry).await.unwrap().bytes().await.unwrap();
    assert!(
        String::from_utf8_lossy(&kept).contains("\"add\""),
        "the first commit was overwritten"
    );
    // Raw appends carry the WAL's place: a stale writer's append is refused
    // even where Delta would retry at a later version.
    let stale = tables::open(&raw, None).await.unwrap();
    let fresh = tables::open(&raw, None).await.unwrap();
    let one = |i: usize| {
        let record = submission(100 + i).into_record(41 + i as u64);
        fdp_store::raw::to_batch(&[&record])
    };
    tables::append_raw(fresh, one(0), 41).await.unwrap();
    assert!(tables::append_raw(stale, one(1), 42).await.is_err());
    let raw_now = tables::open(&raw, None).await.unwrap();
    assert_eq!(tables::raw_watermark(&raw_now).await.unwrap(), 41);
}
