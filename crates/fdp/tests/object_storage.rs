//! An instance whose tables live in S3 (moto's S3 server on loopback), with
//! the credentials in the environment as a deployment gives them: a
//! hospital's feed over MLLP lands there, and SQL, time travel, lineage and
//! deduplication work as they do on local disk, while nothing but the WAL,
//! keys and audit stays in the data directory. (Governed reads of tables in
//! S3, row rules per file among them, are `fdp-store`'s
//! `tests/object_store.rs`.)

mod common;

use common::*;

#[test]
fn a_trust_keeps_its_tables_in_s3_and_serves_them_as_from_its_own_disk() {
    let moto = Moto::start();
    moto.make_bucket("rxx-tables");
    // Every `fdp` this test starts inherits the credentials, as a
    // deployment's service environment would give them; none is in a file.
    moto.set_aws_env();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    let server = Server::start_configured(
        &data,
        0.5,
        "127.0.0.1:0",
        "127.0.0.1:0",
        "[principal.tester]\nroles = [\"clinician\"]\n\n[storage]\ntables = \"s3://rxx-tables/rxx\"\n",
    );
    let codes = mllp_send_file(
        &shared_data("hl7v2_simhospital/messages.out"),
        server.mllp.port(),
    );
    assert_eq!(codes.len(), 1013, "one ACK per message");
    assert!(codes.iter().all(|c| c == "AA"), "every message AA");

    wait_until(60, "the raw table in S3 to hold 1013 messages", || {
        try_sql_count(&data, "SELECT count(*) AS n FROM raw.hl7v2_message") == Some(1013)
    });
    wait_until(60, "the canonical tables in S3", || {
        try_sql_count(&data, "SELECT count(*) AS n FROM dataset_refresh_time").unwrap_or(0) > 0
    });
    let admissions = sql_count(&data, "SELECT count(*) AS n FROM admission");
    assert!(admissions > 0);
    // Lineage: the canonical commits name the raw versions they came from,
    // read from the table's log in the bucket.
    let (status, history) = http_get(
        server.http,
        "/api/tables/admission/history",
        Some(&server.token),
    );
    assert_eq!(status, 200, "{history}");
    assert!(
        history.contains("hl7v2_message") && history.contains("through_seq"),
        "{history}"
    );
    server.stop();

    // Nothing of the tables is on local disk: the directory names where
    // they are.
    assert!(!data.join("tables").exists());
    assert_eq!(
        std::fs::read_to_string(data.join("tables.url"))
            .unwrap()
            .trim(),
        "s3://rxx-tables/rxx/"
    );
    // Time travel: version 0 of a canonical table is its empty creation.
    let v0 = fdp_ok!(
        "sql",
        "--format",
        "json",
        "--as-of",
        "0",
        "--data-dir",
        data,
        "SELECT count(*) AS n FROM admission"
    );
    assert!(v0.contains("\"n\":0"), "{v0}");

    // A command without the configuration finds the tables where they are;
    // loading the same file again adds nothing.
    let again = fdp_ok!(
        "ingest",
        "hl7",
        "--data-dir",
        data,
        shared_data("hl7v2_simhospital/messages.out")
    );
    assert!(again.contains("already present 1013"), "{again}");

    // The configuration cannot point the directory elsewhere, nor carry
    // credentials in the location.
    let refusal = |tables: &str| {
        let config = data.with_extension("elsewhere.toml");
        std::fs::write(
            &config,
            format!("ods = \"RXX\"\n[storage]\ntables = \"{tables}\"\n"),
        )
        .unwrap();
        serve_refused(&config, &data)
    };
    let moved = refusal("s3://rxx-tables/other");
    assert!(moved.contains("copy them there first"), "{moved}");
    let secret = refusal("s3://key:secret@rxx-tables/rxx");
    assert!(secret.contains("credentials do not belong"), "{secret}");
}
