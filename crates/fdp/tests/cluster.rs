//! The national instance's shape on loopback: tables in S3 (moto), and a
//! Ballista scheduler with two executors, each its own `fdp cluster`
//! process, behind mutual TLS. Governed queries give the rows they give in
//! process, whoever asks; the executors split each table's files between
//! them; and members without the right certificate are turned away.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fdp_store::tables::{self, Layer};

const PATIENTS: usize = 40;
const OPTED_OUT: [usize; 3] = [0, 7, 13];
const FILES: usize = 4;
const PER_FILE: usize = 10_000;
const BUCKET: &str = "national-tables";
const ENCOUNTER_COLUMNS: &[&str] = &["encounter_id", "patient_id", "specialty_name"];
const SPECIALTIES: [&str; 4] = ["Urology", "ENT", "Cardiology", "General Surgery"];

fn patient_nhs(i: usize) -> String {
    nhs_number(900_000_000 + i as u64 * 11)
}

/// A member of the cluster, stopped when dropped.
struct Member {
    child: Child,
    _stdout: ChildStdout,
    log: PathBuf,
    /// What it printed on starting: where it listens.
    said: String,
}

impl Member {
    fn start(args: &[&dyn AsRef<std::ffi::OsStr>], log: PathBuf) -> Member {
        let mut cmd = fdp();
        for a in args {
            cmd.arg(a);
        }
        let mut child = cmd
            .env(
                "FDP_LOG",
                "warn,fdp_scan=info,fdp_cluster=info,ballista_executor::execution_loop=info,ballista_scheduler=info",
            )
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut said = String::new();
        stdout.read_line(&mut said).unwrap();
        assert!(
            !said.is_empty(),
            "a cluster member did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Member {
            child,
            _stdout: stdout.into_inner(),
            log,
            said: said.trim().to_string(),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The files it read, by the job they were for. It runs one task at a
    /// time, so a scan is the last task's it received.
    fn scans(&self) -> BTreeMap<String, BTreeSet<String>> {
        let text = std::fs::read_to_string(&self.log).unwrap();
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut job = String::new();
        for line in text.lines() {
            // "Received task: [TID <job>/<stage>.<attempt>/<task>.<attempt>]"
            if let Some(task) = line.split("Received task: [TID ").nth(1) {
                job = task.split('/').next().unwrap_or("").to_string();
            } else if line.contains("fdp_scan") {
                let files = line
                    .split("files=")
                    .nth(1)
                    .and_then(|rest| rest.split(' ').next())
                    .unwrap_or("");
                out.entry(job.clone()).or_default().extend(
                    files
                        .split(',')
                        .filter(|f| !f.is_empty())
                        .map(str::to_string),
                );
            }
        }
        out
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Output {
    let mut cmd = fdp();
    for a in args {
        cmd.arg(a);
    }
    cmd.env("FDP_LOG", "warn,fdp_cluster=info")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// `fdp sql` as `who` for `purpose` under `config`: its rows, and whether
/// it said the plan ran on the cluster.
fn governed(
    config: &Path,
    data: &Path,
    who: &str,
    purpose: &str,
    sql: &str,
) -> Result<(String, bool), String> {
    let out = run(&[
        &"sql",
        &"--format",
        &"json",
        &"--data-dir",
        &data,
        &"--config",
        &config,
        &"--as",
        &who,
        &"--purpose",
        &purpose,
        &sql,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(stderr);
    }
    Ok((
        String::from_utf8(out.stdout).unwrap(),
        stderr.contains("plan ran on the cluster"),
    ))
}

/// The instance writes its canonical tables into the bucket: patients,
/// and encounters in `FILES` stored files.
async fn write_tables(data: &Path, url: &url::Url) {
    fdp_store::location::configure(url, Default::default()).unwrap();
    fdp_store::location::bind_tables_root(data, Some(url)).unwrap();
    // The model's columns a query here needs, as a writer stores them.
    let write = |table: &'static str, columns: &'static [&'static str], rows: Vec<Row>| {
        use fdp_store::arrow::datatypes::{DataType, Field, Schema};
        let schema = std::sync::Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(*c, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let batch = fdp_store::rows::batch_from_rows(&schema, &rows).unwrap();
        let at = tables::table_location(data, Layer::Canonical, table).unwrap();
        async move {
            let table = tables::open_or_create(&at, schema).await.unwrap();
            tables::append(table, vec![batch], Default::default())
                .await
                .unwrap();
        }
    };
    let patients = (0..PATIENTS)
        .map(|i| {
            serde_json::json!({"person_id": format!("pat-{i:03}"), "nhs_number": patient_nhs(i)})
                .as_object()
                .unwrap()
                .clone()
        })
        .collect();
    write("patient", &["person_id", "nhs_number"], patients).await;
    for f in 0..FILES {
        let rows = (f * PER_FILE..(f + 1) * PER_FILE)
            .map(|i| {
                serde_json::json!({
                    "encounter_id": format!("enc-{i:06}"),
                    "patient_id": format!("pat-{:03}", i % PATIENTS),
                    "specialty_name": SPECIALTIES[i % SPECIALTIES.len()],
                })
                .as_object()
                .unwrap()
                .clone()
            })
            .collect();
        write("encounter", ENCOUNTER_COLUMNS, rows).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governed_plans_run_on_a_ballista_cluster_over_s3_as_they_run_in_process() {
    let moto = Moto::start();
    moto.make_bucket(BUCKET);
    moto.set_aws_env();
    let dir = tempfile::tempdir().unwrap();
    let at = |p: &str| dir.path().join(p);

    // The cluster's authority and its members' certificates.
    run_ok(&[
        &"cluster",
        &"ca",
        &"--out",
        &at("ca"),
        &"--name",
        &"national",
    ]);
    for (role, name) in [
        ("scheduler", "scheduler"),
        ("executor", "executor-1"),
        ("executor", "executor-2"),
        ("instance", "X26"),
    ] {
        run_ok(&[
            &"cluster",
            &"issue",
            &"--ca",
            &at("ca"),
            &"--out",
            &at(name),
            &"--name",
            &name,
            &"--role",
            &role,
        ]);
    }

    // The instance's tables, in the bucket.
    let data = at("national");
    std::fs::create_dir_all(&data).unwrap();
    let url = url::Url::parse(&format!("s3://{BUCKET}/x26/")).unwrap();
    write_tables(&data, &url).await;
    let listed: Vec<String> = OPTED_OUT.iter().map(|&i| patient_nhs(i)).collect();
    std::fs::write(data.join("opt-out.txt"), listed.join("\n") + "\n").unwrap();

    // A second writer holding the version the first just committed past
    // cannot commit that version again.
    let encounter = tables::table_location(&data, Layer::Canonical, "encounter").unwrap();
    let a = tables::open(&encounter, None).await.unwrap();
    let b = tables::open(&encounter, None).await.unwrap();
    let empty = fdp_store::RecordBatch::new_empty(std::sync::Arc::new(
        fdp_store::arrow::datatypes::Schema::new(
            ENCOUNTER_COLUMNS
                .iter()
                .map(|c| {
                    fdp_store::arrow::datatypes::Field::new(
                        *c,
                        fdp_store::arrow::datatypes::DataType::Utf8,
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        ),
    ));
    tables::append(a, vec![empty.clone()], Default::default())
        .await
        .unwrap();
    let no_retry = fdp_store::CommitProperties::default().with_max_retries(0);
    assert!(
        tables::append(b, vec![empty], no_retry).await.is_err(),
        "a second commit of the same version was accepted"
    );

    // The scheduler and two executors, each a process of its own. The
    // executors hold a copy of the instance's keys (made by the first
    // governed read below, so started after it).
    let scheduler = Member::start(
        &[
            &"cluster",
            &"scheduler",
            &"--member",
            &at("scheduler"),
            &"--listen",
            &"127.0.0.1:0",
            &"--executor-timeout-secs",
            &"15",
        ],
        at("scheduler.log"),
    );
    let scheduler_url = scheduler
        .said
        .strip_prefix("scheduler ")
        .unwrap()
        .to_string();
    let config = |name: &str, cluster: Option<&Path>| {
        let mut text = format!(
            "ods = \"X26\"\n\n[storage]\ntables = \"{url}\"\n\n\
             [principal.dr]\nroles = [\"clinician\"]\n\n[principal.an]\nroles = [\"analyst\"]\n"
        );
        if let Some(member) = cluster {
            text.push_str(&format!(
                "\n[cluster]\nscheduler = \"{scheduler_url}\"\nmember_dir = \"{}\"\ndistributed_from_bytes = 0\n",
                member.display()
            ));
        }
        let path = at(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let local = config("local.toml", None);
    let distributed = config("distributed.toml", Some(&at("X26")));

    let by_id =
        "SELECT encounter_id, patient_id, specialty_name FROM encounter ORDER BY encounter_id";
    let counts = "SELECT specialty_name, count(*) AS n FROM encounter GROUP BY 1 ORDER BY 1";
    let (here, ran_there) = governed(&local, &data, "an", "planning", counts).unwrap();
    assert!(!ran_there);
    assert!(here.contains("Urology"), "{here}");
    copy_dir(&data.join("keystore"), &at("executor-keys/keystore"));
    let executors: Vec<Member> = ["executor-1", "executor-2"]
        .iter()
        .map(|name| {
            Member::start(
                &[
                    &"cluster",
                    &"executor",
                    &"--member",
                    &at(name),
                    &"--scheduler",
                    &scheduler_url,
                    &"--flight",
                    &"127.0.0.1:0",
                    &"--keys",
                    &at("executor-keys"),
                    &"--work-dir",
                    &at(&format!("{name}-work")),
                    &"--slots",
                    &"1",
                ],
                at(&format!("{name}.log")),
            )
        })
        .collect();

    // Two principals with different grants: each gets the same rows from
    // the cluster as from the instance's own process.
    let opted_out_encounters = (0..FILES * PER_FILE)
        .filter(|i| OPTED_OUT.contains(&(i % PATIENTS)))
        .count();
    for (who, purpose, sql, rows) in [
        ("dr", "direct-care", by_id, FILES * PER_FILE),
        (
            "an",
            "planning",
            by_id,
            FILES * PER_FILE - opted_out_encounters,
        ),
        ("an", "planning", counts, 4),
    ] {
        let (here, ran_here_there) = governed(&local, &data, who, purpose, sql).unwrap();
        assert!(!ran_here_there);
        let (there, ran_there) = governed(&distributed, &data, who, purpose, sql)
            .unwrap_or_else(|e| panic!("{who} {purpose} on the cluster: {e}"));
        assert!(ran_there, "{who} {purpose} {sql}: not run on the cluster");
        let answer: Vec<Row> = serde_json::from_str(&there).unwrap();
        assert_eq!(
            answer.len(),
            rows,
            "{who} {purpose} {sql}: {:?}",
            executors.iter().map(Member::scans).collect::<Vec<_>>()
        );
        assert!(
            here == there,
            "{who} {purpose} {sql}: the cluster's answer differs from the instance's"
        );
        if purpose == "planning" {
            assert!(!there.contains("pat-"), "an identifier under planning");
            for i in 0..PATIENTS {
                assert!(!there.contains(&patient_nhs(i)));
            }
        }
    }

    // The executors split the scans: in each job, each read files the
    // other did not, and together every file of the table.
    let (s3, root) = fdp_store::location::object_store_for(encounter.url()).unwrap();
    let stored: BTreeSet<String> = {
        use futures::TryStreamExt;
        s3.list(Some(&root))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.location.to_string())
            .filter(|p| p.ends_with(".parquet"))
            .collect()
    };
    assert_eq!(stored.len(), FILES);
    let scans: Vec<BTreeMap<String, BTreeSet<String>>> =
        executors.iter().map(Member::scans).collect();
    let jobs: BTreeSet<&String> = scans.iter().flat_map(|s| s.keys()).collect();
    let mut shared_jobs = 0;
    for job in jobs {
        let of = |s: &BTreeMap<String, BTreeSet<String>>| -> BTreeSet<String> {
            s.get(job)
                .map(|files| files.intersection(&stored).cloned().collect())
                .unwrap_or_default()
        };
        let (one, two) = (of(&scans[0]), of(&scans[1]));
        if one.is_empty() && two.is_empty() {
            continue;
        }
        assert!(
            one.is_disjoint(&two),
            "job {job}: both read {:?}",
            one.intersection(&two)
        );
        let all: BTreeSet<String> = one.union(&two).cloned().collect();
        assert_eq!(all, stored, "job {job}: not every file was read");
        if !one.is_empty() && !two.is_empty() {
            shared_jobs += 1;
        }
    }
    assert!(shared_jobs > 0, "no job had both executors scan: {scans:?}");

    // Attacks on the cluster itself. An executor's certificate relabelled
    // as an instance's is still an executor's to the scheduler, which
    // refuses it a plan.
    let rogue = at("rogue");
    std::fs::create_dir_all(&rogue).unwrap();
    for f in ["cluster.pem", "cluster.key", "ca.pem"] {
        std::fs::copy(at("executor-1").join(f), rogue.join(f)).unwrap();
    }
    std::fs::write(
        rogue.join("member.json"),
        r#"{"name": "executor-1", "role": "instance"}"#,
    )
    .unwrap();
    let rogue_config = config("rogue.toml", Some(&rogue));
    let refused = governed(&rogue_config, &data, "an", "planning", counts).unwrap_err();
    assert!(refused.contains("not for a cluster executor"), "{refused}");
    // A certificate from another authority does not get past TLS.
    run_ok(&[
        &"cluster",
        &"ca",
        &"--out",
        &at("other-ca"),
        &"--name",
        &"other",
    ]);
    run_ok(&[
        &"cluster",
        &"issue",
        &"--ca",
        &at("other-ca"),
        &"--out",
        &at("stranger"),
        &"--name",
        &"X26",
        &"--role",
        &"instance",
    ]);
    let stranger = config("stranger.toml", Some(&at("stranger")));
    let refused = governed(&stranger, &data, "an", "planning", counts).unwrap_err();
    assert!(refused.contains("the cluster at"), "{refused}");
    assert!(!refused.contains("Urology"));

    // An executor dies mid-query. The scheduler notices it has stopped
    // sending heartbeats, gives its tasks to the executor still standing,
    // and the query finishes with the answer it gives in process; it must
    // not hang or answer short.
    let mut executors = executors;
    let heavy = "SELECT a.specialty_name, count(*) AS n FROM encounter a \
                 JOIN encounter b ON a.patient_id = b.patient_id \
                 WHERE b.specialty_name = 'Urology' GROUP BY 1 ORDER BY 1";
    let (expected, _) = governed(&local, &data, "dr", "direct-care", heavy).unwrap();
    let tasks_seen = |m: &Member| {
        std::fs::read_to_string(&m.log)
            .unwrap_or_default()
            .matches("Received task")
            .count()
    };
    let mut query = fdp();
    query
        .args([
            "sql",
            "--format",
            "json",
            "--as",
            "dr",
            "--purpose",
            "direct-care",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&distributed)
        .arg(heavy)
        .env("FDP_LOG", "warn,fdp_cluster=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The scheduler hands tasks to whichever executor polls first, so the
    // query is run again until the second executor takes one of its tasks.
    let mut tries = 0;
    let (running, started, killed_after) = loop {
        tries += 1;
        let before = tasks_seen(&executors[1]);
        let started = Instant::now();
        let mut running = query.spawn().unwrap();
        let took_a_task = loop {
            if tasks_seen(&executors[1]) > before {
                break true;
            }
            if running.try_wait().unwrap().is_some() {
                break false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the query neither finished nor reached the second executor"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        if took_a_task {
            executors[1].kill();
            break (running, started, started.elapsed());
        }
        assert!(
            tries < 5,
            "the second executor took no task of the query in {tries} runs"
        );
    };
    let finished = {
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(running.wait_with_output());
        });
        let out = rx
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|_| {
                let tail = |m: &Member| {
                    let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    lines[lines.len().saturating_sub(30)..].join("\n")
                };
                panic!(
                    "the query hung after an executor died.\nscheduler:\n{}\nexecutor-1:\n{}",
                    tail(&scheduler),
                    tail(&executors[0])
                )
            });
        waiter.join().unwrap();
        out.unwrap()
    };
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert!(
        finished.status.success(),
        "the query failed when an executor died ({killed_after:?} in): {stderr}"
    );
    assert!(stderr.contains("plan ran on the cluster"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&finished.stdout),
        expected,
        "the answer changed when an executor died"
    );
    eprintln!(
        "executor killed {killed_after:?} into the query; it finished in {:?}",
        started.elapsed()
    );

    // With no executor left, the instance gives up at its timeout and
    // says where to look, rather than wait on the cluster for ever.
    executors[0].kill();
    let impatient = at("impatient.toml");
    std::fs::write(
        &impatient,
        std::fs::read_to_string(&distributed).unwrap() + "timeout_secs = 3\n",
    )
    .unwrap();
    let refused = governed(&impatient, &data, "an", "planning", counts).unwrap_err();
    assert!(refused.contains("gave no answer within 3 s"), "{refused}");

    drop(executors);
    drop(scheduler);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
