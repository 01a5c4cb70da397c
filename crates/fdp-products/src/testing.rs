//! What products' own tests share: the demo policy's governance over a
//! temporary directory and tables in memory, and a view asked as one of
//! the policy's roles, through the platform's one path; and a live census
//! fed real HL7 v2 ADT messages, which records staff actions as the
//! instance does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use fdp_ingest::adt::census::Census;
use fdp_ingest::live::{Live, StaffAction};
use tokio::sync::mpsc;

use fdp_govern::memory::MemoryTables;
use fdp_govern::{Governance, Policy, Principal, Purpose, SessionRequest};

use crate::platform::{
    run_table_action, run_view, ActionRequest, Output, ProductError, RecordIntake, Recorder,
    Registry,
};

/// An instance of organisation RXX under the demo policy, holding `tables`
/// and the records products' actions store.
pub(crate) struct DemoInstance {
    dir: tempfile::TempDir,
    governance: Governance,
    tables: MemoryTables,
    pub(crate) held: HeldRecords,
}

impl DemoInstance {
    pub(crate) fn new(tables: MemoryTables) -> DemoInstance {
        DemoInstance::with_policy(tables, "")
    }

    /// An instance under the demo policy with `more` (roles of its own)
    /// added.
    pub(crate) fn with_policy(tables: MemoryTables, more: &str) -> DemoInstance {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{}\n{more}", fdp_govern::policy::DEMO_POLICY);
        let policy = Policy::parse("test policy", &text, fdp_model::Model::canonical()).unwrap();
        let governance = Governance::open(dir.path(), policy, "RXX", None).unwrap();
        DemoInstance {
            dir,
            governance,
            tables,
            held: HeldRecords::default(),
        }
    }

    /// The tables as they stand: those given, and the canonical rows of
    /// every record stored since.
    pub(crate) fn tables_now(&self) -> MemoryTables {
        let mut tables = self.tables.clone();
        let rows = self.held.rows.lock().unwrap();
        for (table, by_key) in rows.iter() {
            let rows: Vec<Value> = by_key.values().cloned().collect();
            tables = tables.with_rows(table, &rows).unwrap();
        }
        tables
    }

    /// `product`'s action over the tables, made by `name` in `role` for
    /// `purpose`, through the platform's one path.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn act(
        &self,
        product: &str,
        action: &str,
        target: &str,
        (name, role): (&str, &str),
        purpose: Purpose,
        inputs: Value,
    ) -> Result<Value, ProductError> {
        let mut req = request(role, purpose, "ui");
        req.principal.name = name.to_string();
        let session = self
            .governance
            .session(&self.tables_now(), req.clone())
            .await?;
        let what = format!("POST /api/products/{product}/actions/{action}/{target}");
        run_table_action(
            &Registry::builtin(),
            ActionRequest {
                product,
                action,
                target,
                inputs: &inputs,
                what: &what,
            },
            &self.governance,
            &req,
            &session,
            &self.held,
        )
        .await
    }

    /// Record that the patients with `nhs_numbers` have opted out of the
    /// use of their data for purposes beyond their care.
    pub(crate) fn opt_out(&self, nhs_numbers: &[&str]) {
        std::fs::write(
            self.dir.path().join("opt-out.txt"),
            nhs_numbers.join("\n") + "\n",
        )
        .unwrap();
    }

    /// `sql` asked as someone in `role` for `purpose`, as a SQL client
    /// would ask it: to show what a role can reach round a product.
    pub(crate) async fn sql(
        &self,
        role: &str,
        purpose: Purpose,
        sql: &str,
    ) -> Result<fdp_govern::QueryResult, ProductError> {
        let session = self
            .governance
            .session(&self.tables_now(), request(role, purpose, "sql"))
            .await?;
        Ok(session.query(sql).await?)
    }

    pub(crate) fn governance(&self) -> &Governance {
        &self.governance
    }

    /// Every audit entry so far.
    pub(crate) fn audit(&self) -> Vec<fdp_govern::AuditEntry> {
        self.governance.audit().entries().unwrap()
    }

    /// `product`'s `view` with `params`, asked by someone in `role` for
    /// `purpose` over `channel` (`http` leaves the instance, `ui` does not).
    pub(crate) async fn view(
        &self,
        product: &str,
        role: &str,
        purpose: Purpose,
        channel: &str,
        view: &str,
        params: &[(&str, &str)],
    ) -> Result<Output, ProductError> {
        let session = self
            .governance
            .session(&self.tables_now(), request(role, purpose, channel))
            .await?;
        let given: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        run_view(&Registry::builtin(), product, view, &session, &given).await
    }
}

/// A request by someone in `role` (named "a `role`") of organisation RXX.
pub(crate) fn request(role: &str, purpose: Purpose, channel: &str) -> SessionRequest {
    let principal = Principal {
        name: format!("a {role}"),
        roles: vec![role.to_string()],
        organisation: Some("RXX".into()),
    };
    SessionRequest::new(principal, purpose, channel)
}

/// A live census fed as the instance feeds it: HL7 v2 messages classified
/// and applied in order, and staff actions recorded as records of the `ui`
/// stream and applied before [`Recorder::record`] returns.
pub(crate) struct LiveFeed {
    pub(crate) live: Arc<Live>,
    feed: mpsc::Sender<Arc<fdp_ingest::live::RawRecord>>,
    seq: AtomicU64,
}

impl LiveFeed {
    pub(crate) fn new() -> LiveFeed {
        let live = Live::new(Census::new());
        let (feed, rx) = mpsc::channel(64);
        tokio::spawn(fdp_ingest::live::run_applier(live.clone(), rx));
        LiveFeed {
            live,
            feed,
            seq: AtomicU64::new(0),
        }
    }

    /// Send an ADT message (segments separated by newlines) and wait until
    /// the census shows it; panics unless it is accepted.
    pub(crate) async fn send(&self, hl7: &str) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let classified = fdp_ingest::hl7v2::classify(
            hl7.replace('\n', "\r").as_bytes(),
            "test",
            1_763_600_000_000_000,
        );
        assert_eq!(
            classified.verdict,
            fdp_ingest::hl7v2::Verdict::Accept,
            "{hl7}"
        );
        self.apply(classified.submission.into_record(seq)).await;
    }

    async fn apply(&self, record: fdp_ingest::live::RawRecord) {
        let seq = record.seq;
        self.feed.send(Arc::new(record)).await.unwrap();
        self.live.applied_through(seq).await;
    }

    /// Admit `admission` of `patient` (hospital number, NHS number,
    /// surname) to `bed` of `ward` on site RXX01 at 08:00 on `day`
    /// November 2026.
    pub(crate) async fn admit(
        &self,
        admission: &str,
        patient: (&str, &str, &str),
        (ward, bed): (&str, &str),
        day: u32,
    ) {
        self.admit_to(admission, patient, &format!("{ward}^BAY1^{bed}^RXX01"), day)
            .await;
    }

    /// [`Self::admit`] to `ward` with no bed named (the PAS has not placed
    /// the patient yet).
    pub(crate) async fn admit_without_bed(
        &self,
        admission: &str,
        patient: (&str, &str, &str),
        ward: &str,
        day: u32,
    ) {
        self.admit_to(admission, patient, &format!("{ward}^^^RXX01"), day)
            .await;
    }

    async fn admit_to(
        &self,
        admission: &str,
        (mrn, nhs, name): (&str, &str, &str),
        location: &str,
        day: u32,
    ) {
        let n = self.seq.load(Ordering::SeqCst) + 1;
        self.send(&format!(
            "MSH|^~\\&|PAS|RXX|OPENFDP|RXX|202611{day:02}080000||ADT^A01^ADT_A01|C{n:05}|P|2.4|||AL|NE|GBR|UNICODE UTF-8\n\
             EVN|A01|202611{day:02}080000\n\
             PID|1||{nhs}^^^NHS^NH~{mrn}^^^RXX^MR||{name}^Test^^^Mx||19500101|F|||1 High Street^^Leeds^^LS1 1AA^GBR^H\n\
             PV1|1|I|{location}|21|||C100^JONES^Ann^^^Dr|||300{}{admission}^^^RXX^VN{}202611{day:02}080000",
            "|".repeat(9),
            "|".repeat(25)
        ))
        .await;
    }
}

#[async_trait::async_trait]
impl Recorder for LiveFeed {
    async fn record(&self, action: &StaffAction, by: &str) -> Result<(), String> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.apply(fdp_ingest::live::staff_submission(action, by).into_record(seq))
            .await;
        Ok(())
    }
}

/// Records stored the way the instance's FHIR source stores them, in
/// memory: each resource kept by `Type/id`, its canonical rows (as
/// `fdp_fhir::map` makes them) replacing any with the same primary key.
#[derive(Default)]
pub(crate) struct HeldRecords {
    records: Mutex<BTreeMap<String, Value>>,
    rows: Mutex<BTreeMap<String, BTreeMap<String, Value>>>,
    /// The source each store came from, in order.
    pub(crate) sources: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl RecordIntake for HeldRecords {
    async fn take(
        &self,
        source: &str,
        resources: Vec<(Value, String)>,
    ) -> Result<Vec<String>, String> {
        let model = fdp_model::Model::canonical();
        let mut stored = Vec::new();
        for (resource, id) in resources {
            let problems: Vec<String> = fdp_fhir::validate::validate(&resource)
                .into_iter()
                .filter(fdp_fhir::Issue::is_error)
                .map(|i| i.diagnostics)
                .collect();
            if !problems.is_empty() {
                return Err(problems.join("; "));
            }
            let rt = resource["resourceType"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            for (object_type, row) in fdp_fhir::map_resource(&resource, &id)
                .map(|m| m.rows)
                .unwrap_or_default()
            {
                let ot = model.object_type(object_type).unwrap();
                let key = row
                    .get(&ot.primary_key_property().column)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                self.rows
                    .lock()
                    .unwrap()
                    .entry(ot.table.clone())
                    .or_default()
                    .insert(key, Value::Object(row));
            }
            let record = format!("{rt}/{id}");
            self.records
                .lock()
                .unwrap()
                .insert(record.clone(), resource);
            stored.push(record);
        }
        self.sources.lock().unwrap().push(source.to_string());
        Ok(stored)
    }

    fn current(&self, record: &[String]) -> Vec<Value> {
        let records = self.records.lock().unwrap();
        record
            .iter()
            .filter_map(|r| records.get(r).cloned())
            .collect()
    }
}
