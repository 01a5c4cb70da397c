//! A real hospital simulator's stream, sent by an MLLP client that is not
//! ours (`mllp_send` from the Python `hl7` package), into `fdp serve`.

mod common;

use common::*;

#[test]
fn simulated_hospital_stream_is_acknowledged_and_mapped() {
    let messages = shared_data("hl7v2_simhospital/messages.out");
    assert!(messages.exists(), "missing {}", messages.display());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("trust");
    let server = Server::start(&data, 0.5);

    let codes = mllp_send_file(&messages, server.mllp.port());
    assert_eq!(codes.len(), 1013, "one ACK per message");
    assert!(
        codes.iter().all(|c| c == "AA"),
        "every message AA: {:?}",
        codes.iter().filter(|c| *c != "AA").count()
    );

    // Everything is in raw, as received; the ORUs are kept unprocessed.
    wait_until(30, "raw table to hold 1013 messages", || {
        try_sql_count(&data, "SELECT count(*) AS n FROM raw.hl7v2_message") == Some(1013)
    });
    let oru = sql_count(
        &data,
        "SELECT count(*) AS n FROM raw.hl7v2_message WHERE message_type = 'ORU^R01' AND status = 'unprocessed'",
    );
    assert_eq!(oru, 610);

    // The A01s appear as admissions; the A34 merge is applied.
    // dataset_refresh_time is written after the other canonical tables.
    wait_until(30, "canonical tables", || {
        try_sql_count(&data, "SELECT count(*) AS n FROM dataset_refresh_time").unwrap_or(0) > 0
    });
    // Distinct visit numbers across the 400 A01s.
    let distinct_visits: std::collections::HashSet<String> = std::fs::read(&messages)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap()
        .split('\n')
        .filter(|m| m.contains("ADT^A01"))
        .filter_map(|m| {
            let pv1 = m.split('\r').find(|s| s.starts_with("PV1|"))?;
            Some(pv1.split('|').nth(19)?.split('^').next()?.to_string())
        })
        .collect();
    // Canonical tables are rewritten every half second here: wait for the
    // version that reflects the whole stream.
    let expected = distinct_visits.len() as i64;
    wait_until(30, "every admission in the canonical table", || {
        try_sql_count(&data, "SELECT count(*) AS n FROM admission") == Some(expected)
    });
    wait_until(30, "the merge in the canonical patient table", || {
        try_sql_count(
            &data,
            "SELECT count(*) AS n FROM patient WHERE person_id = '2777246431'",
        ) == Some(1)
    });
    let merged_away = sql_count(
        &data,
        "SELECT count(*) AS n FROM patient WHERE person_id = '618454581'",
    );
    assert_eq!(merged_away, 0, "the A34 retires hospital number 618454581");
    let survivor = sql_count(
        &data,
        "SELECT count(*) AS n FROM patient WHERE person_id = '2777246431'",
    );
    assert_eq!(survivor, 1);
    let nhs = sql(
        &data,
        "SELECT nhs_number FROM patient WHERE person_id = '2590157853'",
    );
    assert_eq!(nhs[0]["nhs_number"], "2478684691");
    server.stop();
}
