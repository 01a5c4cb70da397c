//! The waiting list: the patient tracking list (PTL) under the national
//! referral-to-treatment (RTT) rules, for the waiting-list manager who
//! must know who to book next and whose wait breaches when.
//!
//! Every figure about a clock is computed from the pathway's activities
//! (`pathway_activity`: referral, outpatient attendances, decision to
//! admit, treatment, each with its RTT status code), never copied from the
//! extract; where the extract's own figures disagree the PTL shows both
//! and says why. The rules, in [`ptl.sql`](ptl_sql), are:
//!
//! - **clock start**: an activity coded 10 (first activity: the referral
//!   received), 11 (the end of active monitoring, which restarts the
//!   clock) or 12 (a new period for a substantially new treatment). The
//!   clock runs from the first start after the last stop, so a second
//!   referral letter does not restart a running clock;
//! - **clock continues**: 20 (subsequent activity), 21 (transfer to another
//!   provider, the clock still running);
//! - **clock stop**: 30 (first definitive treatment), 31 and 32 (active
//!   monitoring started by the patient or the clinician), 33 (did not
//!   attend the first appointment), 34 (decision not to treat), 35
//!   (treatment declined), 36 (died before treatment);
//! - **outside a period**: 90–99 change nothing.
//!
//! Patient pauses were abolished in October 2015: `rtt_days_paused` is 0
//! unless the entry records one, and is shown. A breach date at N weeks is
//! the clock start plus 7·N days (plus days paused), the day the wait
//! reaches N whole weeks; a clock still running after it has breached.
//! The clinical priority's limit runs from the decision to admit: P1a 24
//! hours, P1b 72 hours, P2 four weeks, P3 three months; P4 may wait
//! longer, and P5 and P6 record the patient's choice to defer.

use async_trait::async_trait;
use chrono::{Duration, NaiveDate, Utc};
use fdp_govern::{GovernedSession, Purpose};

mod changes;
mod rules;

pub use changes::{CHANGEABLE, PROPOSE, SIGN_OFF};
pub use rules::Rule;

use crate::platform::{MessageSpec, 
    column, ActionSpec, Answer, Chart, Input, Manifest, OfferedOn, Offers, OutputColumn,
    ParamKind, ParamSpec, ParamValue, Params, Priority, Product, ProductError, Reads,
    RecordIntake, RecordsChange, Source, ViewSpec,
};

/// The product.
#[derive(Default)]
pub struct WaitingList;

const ID: &str = "waiting-list";

/// The PTL query as it reads on `as_at` (a SQL date literal): shared with
/// `fdp bench elective`, which runs the same text in DuckDB.
pub fn ptl_sql(as_at: &str) -> String {
    ptl_query(as_at, true)
}

/// The PTL query, naming patients only where `names` (a session whose
/// policy removes names cannot read the column at all).
pub(crate) fn ptl_query(as_at: &str, names: bool) -> String {
    include_str!("ptl.sql")
        .replace("{as_at}", as_at)
        .replace(
            "{patient_name}",
            if names {
                "e.patient_name"
            } else {
                "CAST(NULL AS VARCHAR)"
            },
        )
}

/// The weeks bands of `rtt_time_bands`, shortest wait first.
pub const WEEKS_BANDS: [&str; 6] = [
    "00-17 weeks",
    "18-51 weeks",
    "52-64 weeks",
    "65-77 weeks",
    "78-103 weeks",
    "104+ weeks",
];

/// The weeks at which a wait breaches, and the PTL's column of days to
/// each.
pub const BREACHES: [(u32, &str); 5] = [
    (18, "days_to_18_week_rtt_breach"),
    (52, "days_to_52_week_rtt_breach"),
    (65, "days_to_65_week_rtt_breach"),
    (78, "rtt_period_days_to_78_week_breach"),
    (104, "rtt_period_days_to_104_week_breach"),
];

fn as_at_param() -> ParamSpec {
    ParamSpec {
        name: "as_at".into(),
        kind: ParamKind::Date,
        required: false,
        description: "The day the clocks are read on (default today, UTC)".into(),
    }
}


/// The columns the PTL reads, by table.
fn reads() -> Vec<Reads> {
    vec![
        Reads::new(
            "pathway_activity",
            &[
                "pathway_id",
                "activity_date",
                "activity_sequence",
                "activity_type",
                "rtt_status_code",
                "activity_outcome",
                "source_system",
                "source_reference",
            ],
        ),
        Reads::new(
            "eal_entry",
            &[
                "eal_id",
                "pathway_id",
                "patient_id",
                "patient_name",
                "priority_type",
                "decided_to_admit_date",
                "planned_date",
                "removal_date",
                "rtt_period_start_date",
                "rtt_status_code",
                "rtt_weeks_waiting",
                "rtt_days_paused",
                "latest_clinically_appropriate_date",
            ],
        ),
        Reads::optional(
            "patient_pathway",
            &[
                "pathway_id",
                "specialty_name",
                "consultant_name",
                "treatment_function_code",
                "patient_deceased",
            ],
        ),
        Reads::optional(
            "encounter",
            &[
                "eal_id",
                "specialty_name",
                "primary_consultant_name",
                "intended_primary_procedure_code",
                "estimated_total_theatre_time",
            ],
        ),
        Reads::new(
            "procedure",
            &["procedure_id", "encounter_id", "procedure_date", "procedure_opcs_code"],
        ),
        // Signed-off changes apply over the extract, for everyone who
        // reads the list.
        Reads::new(
            "validated_changelog",
            &[
                "change_log_id",
                "eal_id",
                "removed",
                "removal_date",
                "validated",
                "status",
                "closed_at",
                "closed_by",
                "property_to_modify",
                "new_value",
                "comments",
            ],
        ),
        // The queue itself: for those who validate the list.
        Reads::optional(
            "change_log_request",
            &[
                "change_log_id",
                "eal_id",
                "description",
                "primary_evidence_source",
                "originating_waiting_list_alert_rule_types",
                "requested_by",
                "timestamp",
                "resolved",
            ],
        ),
    ]
}

/// The validation rules built in, in the order they are listed.
pub fn validation_rules() -> &'static [Rule] {
    rules::built_in()
}

/// What the clock figures are computed from.
fn clock_source() -> Source {
    Source::derived(&[
        ("pathway_activity", "activity_date"),
        ("pathway_activity", "activity_sequence"),
        ("pathway_activity", "rtt_status_code"),
        ("eal_entry", "rtt_days_paused"),
    ])
}

/// The PTL's columns, in order.
fn ptl_columns() -> Vec<OutputColumn> {
    let eal = |name: &str, title: &str| column(name, title, Source::column("eal_entry", name));
    let clock = |name: &str, title: &str| column(name, title, clock_source());
    let extract = |name: &str, title: &str, from: &str| {
        column(name, title, Source::column("eal_entry", from))
    };
    vec![
        eal("eal_id", "Entry"),
        eal("pathway_id", "Pathway"),
        eal("patient_id", "Patient"),
        eal("patient_name", "Name"),
        column(
            "specialty",
            "Specialty",
            Source::derived(&[
                ("patient_pathway", "specialty_name"),
                ("encounter", "specialty_name"),
            ]),
        ),
        column(
            "consultant",
            "Consultant",
            Source::derived(&[
                ("patient_pathway", "consultant_name"),
                ("encounter", "primary_consultant_name"),
            ]),
        ),
        column(
            "procedure_code",
            "Procedure",
            Source::column("encounter", "intended_primary_procedure_code"),
        ),
        column(
            "expected_theatre_minutes",
            "Expected theatre minutes",
            Source::column("encounter", "estimated_total_theatre_time"),
        ),
        column(
            "priority_type",
            "Priority",
            Source::derived(&[
                ("eal_entry", "priority_type"),
                ("validated_changelog", "new_value"),
            ]),
        ),
        eal("decided_to_admit_date", "Decided to admit"),
        eal("planned_date", "TCI"),
        eal("latest_clinically_appropriate_date", "Latest clinically appropriate"),
        clock("clock", "Clock"),
        clock("rtt_status_code", "RTT status"),
        clock("rtt_status_date", "Status since"),
        clock("rtt_period_start_date", "Clock start"),
        clock("clock_start_code", "Started by"),
        clock("rtt_period_end_date", "Clock stop"),
        clock("clock_stop_code", "Stopped by"),
        eal("rtt_days_paused", "Days paused"),
        clock("rtt_period_length", "Days waited"),
        clock("rtt_weeks_waiting", "Weeks waited"),
        clock("rtt_time_bands", "Weeks band"),
        clock("date_of_18_week_rtt_breach", "18-week breach"),
        clock("days_to_18_week_rtt_breach", "Days to 18"),
        clock("date_of_52_week_rtt_breach", "52-week breach"),
        clock("days_to_52_week_rtt_breach", "Days to 52"),
        clock("date_of_65_week_rtt_breach", "65-week breach"),
        clock("days_to_65_week_rtt_breach", "Days to 65"),
        clock("rtt_period_78_week_breach_date", "78-week breach"),
        clock("rtt_period_days_to_78_week_breach", "Days to 78"),
        clock("rtt_period_104_week_breach_date", "104-week breach"),
        clock("rtt_period_days_to_104_week_breach", "Days to 104"),
        clock("less_than_10_weeks_to_rtt_breach", "Under 10 weeks to 18"),
        clock("rtt_period_is_68_week_waiter", "68+ weeks"),
        clock("rtt_period_is_94_week_waiter", "94+ weeks"),
        column(
            "priority_due_date",
            "Priority due",
            Source::derived(&[
                ("eal_entry", "priority_type"),
                ("eal_entry", "decided_to_admit_date"),
            ]),
        ),
        column(
            "past_priority_limit",
            "Past priority limit",
            Source::derived(&[
                ("eal_entry", "priority_type"),
                ("eal_entry", "decided_to_admit_date"),
            ]),
        ),
        column(
            "booked_out_of_turn",
            "Booked out of turn",
            Source::derived(&[
                ("eal_entry", "priority_type"),
                ("eal_entry", "planned_date"),
                ("encounter", "intended_primary_procedure_code"),
                ("pathway_activity", "activity_date"),
            ]),
        ),
        extract(
            "extract_rtt_period_start_date",
            "Extract: clock start",
            "rtt_period_start_date",
        ),
        extract(
            "extract_rtt_status_code",
            "Extract: RTT status",
            "rtt_status_code",
        ),
        extract(
            "extract_rtt_weeks_waiting",
            "Extract: weeks waited",
            "rtt_weeks_waiting",
        ),
        column(
            "extract_disagrees",
            "Why the extract differs",
            Source::derived(&[
                ("eal_entry", "rtt_period_start_date"),
                ("eal_entry", "rtt_status_code"),
                ("eal_entry", "rtt_weeks_waiting"),
                ("pathway_activity", "rtt_status_code"),
            ]),
        ),
    ]
}

/// The day `params` names (or today).
fn as_at(params: &Params) -> NaiveDate {
    params
        .date("as_at")
        .unwrap_or_else(|| Utc::now().date_naive())
}

/// The filters the PTL view takes, as a SQL condition over its columns.
fn filters(params: &Params) -> Result<String, ProductError> {
    let mut out = vec!["TRUE".to_string()];
    for (name, col) in [("specialty", "specialty"), ("consultant", "consultant")] {
        if let Some(v) = params.get(name) {
            out.push(format!("{col} = {}", v.sql_literal()));
        }
    }
    let priorities = params.list("priority");
    if !priorities.is_empty() {
        out.push(format!(
            "priority_type IN {}",
            ParamValue::TextList(priorities).sql_literal()
        ));
    }
    if let Some(band) = params.text("weeks_band") {
        if !WEEKS_BANDS.contains(&band.as_str()) {
            return Err(ProductError::Param {
                name: "weeks_band".into(),
                message: format!("{band:?} is not one of {}", WEEKS_BANDS.join(", ")),
            });
        }
        out.push(format!(
            "rtt_time_bands = {}",
            ParamValue::Text(band).sql_literal()
        ));
    }
    if let Some(weeks) = params.integer("breach_within_weeks") {
        if !(0..=104).contains(&weeks) {
            return Err(ProductError::Param {
                name: "breach_within_weeks".into(),
                message: format!("{weeks} is not between 0 and 104"),
            });
        }
        let days = weeks * 7;
        let any = BREACHES
            .iter()
            .map(|(_, c)| format!("({c} >= 0 AND {c} < {days})"))
            .collect::<Vec<_>>()
            .join(" OR ");
        out.push(format!("clock = 'running' AND ({any})"));
    }
    Ok(out.join(" AND "))
}

#[async_trait]
impl Product for WaitingList {
    fn manifest(&self) -> Manifest {
        let ptl_params = vec![
            as_at_param(),
            ParamSpec::optional("specialty", ParamKind::Text, "Only this specialty"),
            ParamSpec::optional("consultant", ParamKind::Text, "Only this consultant's patients"),
            ParamSpec::optional(
                "priority",
                ParamKind::TextList,
                "Only these clinical priorities (P1a, P1b, P2, P3, P4, P5, P6)",
            ),
            ParamSpec::optional(
                "weeks_band",
                ParamKind::Text,
                "Only this weeks band (00-17 weeks, 18-51 weeks, 52-64 weeks, 65-77 weeks, 78-103 weeks, 104+ weeks)",
            ),
            ParamSpec::optional(
                "breach_within_weeks",
                ParamKind::Integer,
                "Only clocks that reach a breach (18, 52, 65, 78 or 104 weeks) within this many weeks",
            ),
        ];
        Manifest {
            id: ID.into(),
            title: "Waiting list (PTL)".into(),
            version: "1.0.0".into(),
            priority: Priority::ElectiveRecovery,
            description: "The patient tracking list under the national RTT rules: each clock computed from its pathway's activities, weeks waited, breach dates, clinical priority and treatment in turn".into(),
            publisher: None,
            purposes: vec![Purpose::DirectCare, Purpose::Operations, Purpose::Planning],
            reads: reads(),
            views: vec![
                ViewSpec {
                    name: "ptl".into(),
                    title: "Patient tracking list".into(),
                    description: "Every entry on the elective admission list, longest wait first, with its clock computed from the pathway's activities".into(),
                    params: ptl_params,
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: "breach-forecast".into(),
                    title: "Breach forecast".into(),
                    description: "How many clocks reach 18, 52, 65, 78 and 104 weeks in each of the next 12 weeks if nobody is treated".into(),
                    params: vec![as_at_param()],
                    input: Input::Tables,
                    chart: Some(Chart::bars("week_starting", "breach_18")),
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: "validation".into(),
                    title: "Validation flags".into(),
                    description: "Each entry a validation rule flags, with the rule and its evidence, longest wait first".into(),
                    params: vec![
                        as_at_param(),
                        ParamSpec::optional("rule", ParamKind::Text, "Only this rule's flags"),
                    ],
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: "validation-summary".into(),
                    title: "Validation summary".into(),
                    description: "How many entries each validation rule flags, with why the rule exists".into(),
                    params: vec![as_at_param()],
                    input: Input::Tables,
                    chart: Some(Chart::bars("title", "entries")),
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: "shape".into(),
                    title: "Waiting-list shape".into(),
                    description: "Patients waiting in each weeks band, by clinical priority".into(),
                    params: vec![as_at_param()],
                    input: Input::Tables,
                    chart: Some(Chart::bars("rtt_time_bands", "patients")),
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: "queue".into(),
                    title: "Validation queue".into(),
                    description: "Changes proposed to entries on the list, awaiting a clinician's sign-off, oldest first".into(),
                    params: Vec::new(),
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: vec!["change_log_request".into()],
                },
                ViewSpec {
                    name: "history".into(),
                    title: "Validation history".into(),
                    description: "Every change proposed to one entry, from the old value to the new, who proposed it, who decided it and the record it is kept as".into(),
                    params: vec![ParamSpec {
                        name: "entry".into(),
                        kind: ParamKind::Text,
                        required: true,
                        description: "The entry (its eal_id)".into(),
                    }],
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: vec!["change_log_request".into()],
                },
            ],
            actions: vec![
                ActionSpec {
                    name: PROPOSE.into(),
                    title: "Propose a change".into(),
                    description: "Propose removing an entry from the list (with its coded reason) or changing its priority, with the evidence; a clinician signs it off".into(),
                    target: "entry".into(),
                    changes: vec!["change_log_request".into()],
                    inputs: vec![
                        ParamSpec::optional("reason", ParamKind::Text, "For a removal, its reason: treated, treated-as-emergency, deceased, duplicate, no-longer-required, declined, not-contactable or transferred"),
                        ParamSpec::optional("property", ParamKind::Text, "For a change, the property (priorityType); leave out to remove the entry"),
                        ParamSpec::optional("new_value", ParamKind::Text, "For a change, the new value"),
                        ParamSpec {
                            name: "evidence".into(),
                            kind: ParamKind::Text,
                            required: true,
                            description: "The evidence: a validation rule's finding, a letter, a record".into(),
                        },
                        ParamSpec::optional("rule", ParamKind::Text, "The validation rule that flagged the entry"),
                        ParamSpec::optional("comments", ParamKind::Text, "Comments for the clinician"),
                    ],
                    input: Input::Tables,
                    offered_on: vec![OfferedOn {
                        view: "validation".into(),
                        column: "eal_id".into(),
                    }],
                },
                ActionSpec {
                    name: SIGN_OFF.into(),
                    title: "Sign off a change".into(),
                    description: "A clinician signs off (or rejects) a change someone else proposed; a removal signed off takes the entry off the list".into(),
                    target: "change".into(),
                    changes: vec!["change_log_request".into(), "validated_changelog".into()],
                    inputs: vec![
                        ParamSpec::optional("decision", ParamKind::Text, "sign-off (the default) or reject"),
                        ParamSpec::optional("comments", ParamKind::Text, "The clinician's comments"),
                    ],
                    input: Input::Tables,
                    offered_on: vec![OfferedOn {
                        view: "queue".into(),
                        column: "change_log_id".into(),
                    }],
                },
            ],
            // Mutual aid: a booking request for another trust's free
            // theatre time carries the pathway (`crate::mutual_aid`).
            offers: Offers {
                questions: Vec::new(),
                messages: vec![
                    MessageSpec::new("booking-request", "A trust's request to book a patient on the waiting list into another trust's free theatre time, with the pathway's record"),
                    MessageSpec::new("booking-status", "The providing trust's acceptance or decline of a booking request"),
                ],
            },
        }
    }

    async fn view(
        &self,
        view: &str,
        session: &GovernedSession,
        params: &Params,
    ) -> Result<Answer, ProductError> {
        let day = as_at(params);
        let names = session
            .visible_columns("eal_entry")
            .await
            .is_some_and(|c| c.iter().any(|c| c == "patient_name"));
        let ptl = ptl_query(&ParamValue::Date(day).sql_literal(), names);
        let (sql, columns) = match view {
            "ptl" => {
                let mut columns = ptl_columns();
                let listed = columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                // Where the grant shows the queue, each entry says what
                // change to it awaits sign-off.
                let (ptl, extra) = if session.covers("change_log_request") {
                    columns.push(column(
                        "awaiting_sign_off",
                        "Awaiting sign-off",
                        Source::column("change_log_request", "description"),
                    ));
                    (
                        format!(
                            "SELECT p.*, q.awaiting_sign_off FROM ({ptl}) p \
                             LEFT JOIN (SELECT eal_id, min(description) AS awaiting_sign_off \
                                        FROM change_log_request WHERE NOT coalesce(resolved, false) \
                                        GROUP BY eal_id) q ON q.eal_id = p.eal_id"
                        ),
                        ", awaiting_sign_off",
                    )
                } else {
                    (ptl, "")
                };
                (
                    format!(
                        "SELECT {listed}{extra} FROM ({ptl}) ptl WHERE {} \
                         ORDER BY rtt_period_length DESC NULLS LAST, eal_id",
                        filters(params)?
                    ),
                    columns,
                )
            }
            "queue" => queue(names),
            "history" => history(session, params).await?,
            "breach-forecast" => breach_forecast(&ptl, day),
            "validation" => return validation(session, &ptl, day, params).await,
            "validation-summary" => validation_summary(&ptl, day),
            "shape" => shape(&ptl),
            other => {
                return Err(ProductError::UnknownView {
                    product: ID.into(),
                    view: other.into(),
                })
            }
        };
        let result = session.query(&sql).await?;
        Answer::from_query(&result, columns)
    }

    async fn act_on_tables(
        &self,
        action: &str,
        target: &str,
        session: &GovernedSession,
        held: &dyn RecordIntake,
        inputs: &Params,
        by: &str,
    ) -> Result<RecordsChange, ProductError> {
        match action {
            PROPOSE => changes::propose(target, session, inputs, by).await,
            SIGN_OFF => changes::sign_off(target, session, held, inputs, by).await,
            other => Err(ProductError::UnknownAction {
                product: ID.into(),
                action: other.into(),
            }),
        }
    }
}

/// The changes awaiting sign-off, oldest first, each with its entry.
fn queue(names: bool) -> (String, Vec<OutputColumn>) {
    let name = if names {
        "e.patient_name"
    } else {
        "CAST(NULL AS VARCHAR)"
    };
    let sql = format!(
        "SELECT r.change_log_id, r.eal_id, e.patient_id, {name} AS patient_name, \
                r.description, array_to_string(r.originating_waiting_list_alert_rule_types, ', ') AS rule, \
                r.primary_evidence_source AS evidence, r.requested_by, r.timestamp AS proposed_at \
         FROM change_log_request r JOIN eal_entry e ON e.eal_id = r.eal_id \
         WHERE NOT coalesce(r.resolved, false) \
         ORDER BY r.timestamp, r.change_log_id"
    );
    let request = |name: &str, title: &str, from: &str| {
        column(name, title, Source::column("change_log_request", from))
    };
    let columns = vec![
        request("change_log_id", "Change", "change_log_id"),
        request("eal_id", "Entry", "eal_id"),
        column("patient_id", "Patient", Source::column("eal_entry", "patient_id")),
        column("patient_name", "Name", Source::column("eal_entry", "patient_name")),
        request("description", "Change", "description"),
        request("rule", "Rule", "originating_waiting_list_alert_rule_types"),
        request("evidence", "Evidence", "primary_evidence_source"),
        request("requested_by", "Proposed by", "requested_by"),
        request("proposed_at", "Proposed", "timestamp"),
    ];
    (sql, columns)
}

/// Every change proposed to one entry, and how each was decided.
async fn history(
    session: &GovernedSession,
    params: &Params,
) -> Result<(String, Vec<OutputColumn>), ProductError> {
    let entry = params.text("entry").unwrap_or_default();
    // Comments are free text, and a policy may remove them.
    let comments = if session
        .visible_columns("validated_changelog")
        .await
        .is_some_and(|c| c.iter().any(|c| c == "comments"))
    {
        "v.comments"
    } else {
        "CAST(NULL AS VARCHAR) AS comments"
    };
    let sql = format!(
        "SELECT r.change_log_id, 'Task/' || r.change_log_id AS record, r.timestamp AS proposed_at, \
                r.requested_by, r.description, r.primary_evidence_source AS evidence, \
                coalesce(v.status, 'awaiting sign-off') AS decision, v.closed_by AS decided_by, \
                v.closed_at AS decided_at, {comments} \
         FROM change_log_request r LEFT JOIN validated_changelog v ON v.change_log_id = r.change_log_id \
         WHERE r.eal_id = {} ORDER BY r.timestamp, r.change_log_id",
        text(&entry)
    );
    let request = |name: &str, title: &str, from: &str| {
        column(name, title, Source::column("change_log_request", from))
    };
    let decision = |name: &str, title: &str, from: &str| {
        column(name, title, Source::column("validated_changelog", from))
    };
    let columns = vec![
        request("change_log_id", "Change", "change_log_id"),
        request("record", "Kept as", "change_log_id"),
        request("proposed_at", "Proposed", "timestamp"),
        request("requested_by", "Proposed by", "requested_by"),
        request("description", "From → to", "description"),
        request("evidence", "Evidence", "primary_evidence_source"),
        decision("decision", "Decision", "status"),
        decision("decided_by", "Decided by", "closed_by"),
        decision("decided_at", "Decided", "closed_at"),
        decision("comments", "Comments", "comments"),
    ];
    Ok((sql, columns))
}

/// For each of the 12 weeks from `day`, the clocks that reach each breach
/// in it if nobody is treated.
fn breach_forecast(ptl: &str, day: NaiveDate) -> (String, Vec<OutputColumn>) {
    let weeks = (1..=12)
        .map(|w| {
            let start = day + Duration::days(7 * (w - 1));
            format!("({w}, DATE '{start}')")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let counts = BREACHES
        .iter()
        .map(|(n, c)| {
            format!(
                "count(p.eal_id) FILTER (WHERE p.{c} >= (w.week - 1) * 7 AND p.{c} < w.week * 7) AS breach_{n}"
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT w.week, w.week_starting, {counts} \
         FROM (VALUES {weeks}) AS w(week, week_starting) \
         LEFT JOIN (SELECT * FROM ({ptl}) ptl WHERE clock = 'running') p ON TRUE \
         GROUP BY w.week, w.week_starting ORDER BY w.week"
    );
    let mut columns = vec![
        column("week", "Week", clock_source()),
        column("week_starting", "Week starting", clock_source()),
    ];
    for (n, _) in BREACHES {
        columns.push(column(
            &format!("breach_{n}"),
            &format!("Reach {n} weeks"),
            Source::count("eal_entry"),
        ));
    }
    (sql, columns)
}

/// Where a rule's evidence comes from.
fn evidence_source() -> Source {
    Source::derived(&[
        ("pathway_activity", "activity_type"),
        ("pathway_activity", "activity_date"),
        ("pathway_activity", "rtt_status_code"),
        ("pathway_activity", "activity_outcome"),
        ("pathway_activity", "source_system"),
        ("pathway_activity", "source_reference"),
        ("patient_pathway", "treatment_function_code"),
        ("patient_pathway", "patient_deceased"),
        ("eal_entry", "latest_clinically_appropriate_date"),
        ("procedure", "procedure_date"),
    ])
}

/// A text as a SQL literal.
fn text(t: &str) -> String {
    ParamValue::Text(t.to_string()).sql_literal()
}

/// Each entry a rule flags, with its evidence (one line per rule and
/// entry): the PTL computed once and held, each rule asked of it.
async fn validation(
    session: &GovernedSession,
    ptl: &str,
    day: NaiveDate,
    params: &Params,
) -> Result<Answer, ProductError> {
    let only = params.text("rule");
    let rules: Vec<&Rule> = validation_rules()
        .iter()
        .filter(|r| only.as_deref().is_none_or(|o| o == r.name))
        .collect();
    if let Some(o) = &only {
        if rules.is_empty() {
            return Err(ProductError::Param {
                name: "rule".into(),
                message: format!(
                    "{o:?} is not a rule (the rules: {})",
                    validation_rules()
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    let as_at = ParamValue::Date(day).sql_literal();
    let columns = flag_columns();
    let names = columns
        .iter()
        .skip(2)
        .map(|c| format!("p.{}", c.name))
        .filter(|c| c != "p.evidence")
        .collect::<Vec<_>>()
        .join(", ");
    let _held = session.hold("ptl", ptl).await?;
    let mut answer = Answer {
        columns: columns.clone(),
        rows: Vec::new(),
        disclosure: None,
        patients: Vec::new(),
    };
    for rule in rules {
        let sql = format!(
            "SELECT {} AS rule, {} AS title, {names}, f.evidence \
             FROM (SELECT eal_id, min(evidence) AS evidence FROM ({}) r GROUP BY eal_id) f \
             JOIN ptl p ON p.eal_id = f.eal_id \
             ORDER BY p.rtt_period_length DESC NULLS LAST, p.eal_id",
            text(&rule.name),
            text(&rule.title),
            rule.query(&as_at)
        );
        let result = session.query(&sql).await?;
        answer.rows.extend(Answer::from_query(&result, columns.clone())?.rows);
    }
    Ok(answer)
}

/// The columns of the validation flags: the rule, the entry as the PTL
/// shows it, and the evidence.
fn flag_columns() -> Vec<OutputColumn> {
    let ptl = ptl_columns();
    let shown = [
        "eal_id",
        "pathway_id",
        "patient_id",
        "patient_name",
        "specialty",
        "priority_type",
        "rtt_weeks_waiting",
    ];
    let mut columns = vec![
        column("rule", "Rule", Source::derived(&[])),
        column("title", "Flag", Source::derived(&[])),
    ];
    columns.extend(shown.iter().filter_map(|n| ptl.iter().find(|c| c.name == *n).cloned()));
    columns.push(column("evidence", "Evidence", evidence_source()));
    columns
}

/// How many entries each rule flags, and why the rule exists.
fn validation_summary(ptl: &str, day: NaiveDate) -> (String, Vec<OutputColumn>) {
    let as_at = ParamValue::Date(day).sql_literal();
    let counts = validation_rules()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "SELECT {i} AS i, {} AS rule, {} AS title, {} AS rationale, \
                        (SELECT count(DISTINCT eal_id) FROM ({}) r) AS entries",
                text(&r.name),
                text(&r.title),
                text(&r.rationale),
                r.query(&as_at)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let sql = format!(
        "WITH ptl AS ({ptl}) SELECT rule, title, entries, rationale FROM ({counts}) s ORDER BY i"
    );
    let columns = vec![
        column("rule", "Rule", Source::derived(&[])),
        column("title", "Flag", Source::derived(&[])),
        column("entries", "Entries flagged", Source::count("eal_entry")),
        column("rationale", "Why", Source::derived(&[])),
    ];
    (sql, columns)
}

/// Patients in each weeks band, by clinical priority.
fn shape(ptl: &str) -> (String, Vec<OutputColumn>) {
    let bands = WEEKS_BANDS
        .iter()
        .enumerate()
        .map(|(i, b)| format!("({i}, '{b}')"))
        .collect::<Vec<_>>()
        .join(", ");
    let groups: [(&str, &str, &str); 6] = [
        ("p1", "P1", "('P1', 'P1a', 'P1b')"),
        ("p2", "P2", "('P2')"),
        ("p3", "P3", "('P3')"),
        ("p4", "P4", "('P4')"),
        ("deferred", "Deferred (P5, P6)", "('P5', 'P6')"),
        ("no_priority", "No priority", ""),
    ];
    let counts = groups
        .iter()
        .map(|(name, _, set)| {
            if set.is_empty() {
                format!(
                    "count(p.eal_id) FILTER (WHERE p.priority_type IS NULL \
                     OR p.priority_type NOT IN ('P1', 'P1a', 'P1b', 'P2', 'P3', 'P4', 'P5', 'P6')) AS {name}"
                )
            } else {
                format!("count(p.eal_id) FILTER (WHERE p.priority_type IN {set}) AS {name}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT b.rtt_time_bands, count(p.eal_id) AS patients, {counts} \
         FROM (VALUES {bands}) AS b(i, rtt_time_bands) \
         LEFT JOIN (SELECT * FROM ({ptl}) ptl WHERE clock = 'running') p \
           ON p.rtt_time_bands = b.rtt_time_bands \
         GROUP BY b.i, b.rtt_time_bands ORDER BY b.i"
    );
    let mut columns = vec![
        column("rtt_time_bands", "Weeks waited", clock_source()),
        column("patients", "Patients", Source::count("eal_entry")),
    ];
    for (name, title, _) in groups {
        columns.push(column(name, title, Source::count("eal_entry")));
    }
    (sql, columns)
}

#[cfg(test)]
mod tests;
