//! The theatre planner: which patients on the PTL to book onto which
//! lists over the coming weeks, proposed by the scheduling engine
//! (`fdp-schedule`'s plan, the engine of the IHTC-2024 problem) from the
//! governed tables, each with the reason they were or were not booked; the
//! planner accepts a proposal as a `BookingRequest`, a governed action
//! that is audited.
//!
//! What the plan is built from (see [`load`]): the PTL as the waiting list
//! computes it (clock, priority, weeks waited), each entry's planned
//! procedure, its expected minutes and its latest pre-operative
//! assessment (`Encounter.lastPoa…`), the patient's sex and age, the lists
//! to come with their consultant and anaesthetist, what is booked on them
//! and the booking requests already accepted, approved leave, and the bays
//! of the wards named (`wards`) for inpatients' beds. The rules it keeps
//! are [`fdp_schedule::plan`]'s: priority limits, 6-4-2 (a list inside two
//! weeks is locked; one lost to leave takes nobody), no booking without a
//! valid assessment, the list's minutes with changeovers, single-sex bays.
//!
//! Views:
//! - `proposal`: every patient on the PTL with a running clock, proposed
//!   for a list or not, and why;
//! - `week`: the theatre week, list by list, with the patients proposed,
//!   already booked or requested, to accept from;
//! - `compare`: the proposal beside what booking by hand gives (by
//!   priority, then weeks waited, first fit), on the lists' utilisation,
//!   patients treated, breaches, patients past their priority's limit and
//!   patients treated out of turn.
//!
//! The search runs for a fixed number of moves (`moves`), so a page asked
//! twice of the same tables proposes the same schedule, and the planner
//! accepts what they saw.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Datelike, Duration, NaiveDate, Utc};
use fdp_govern::{GovernedSession, Purpose};
use fdp_schedule::ihtc::SearchOptions;
use fdp_schedule::plan::{self, Measures, Plan, PlanOptions, Proposal, Status};
use serde_json::{json, Value};

mod accept;
pub mod load;
#[cfg(test)]
mod tests;

use crate::platform::{
    column, ActionSpec, Answer, Input, Manifest, OfferedOn, Offers, OutputColumn, ParamKind,
    ParamSpec, Params, Priority, Product, ProductError, Reads, RecordIntake, RecordsChange, Source,
    ViewSpec,
};

/// The product.
#[derive(Default)]
pub struct TheatrePlanner {
    searches: Searches,
}

/// How long a plan asked for waits for another's search to end before it
/// is turned away.
const WAIT_FOR_TURN: std::time::Duration = std::time::Duration::from_secs(60);

/// A plan is seconds of a core. The instance makes one at a time, and
/// each person asks for one at a time, so that a token asking for plans in
/// a loop (or dropping each request as soon as it is made) takes one core
/// at most and holds up nobody but itself for long.
struct Searches {
    turn: Arc<tokio::sync::Semaphore>,
    asking: People,
}

impl Default for Searches {
    fn default() -> Self {
        Searches {
            turn: Arc::new(tokio::sync::Semaphore::new(1)),
            asking: Default::default(),
        }
    }
}

/// Who is asking for a plan now.
type People = Arc<Mutex<HashSet<String>>>;

/// One person's mark as asking: taken off when dropped, whether the plan
/// was made, refused, or the request abandoned while it waited its turn.
struct Mark {
    who: String,
    asking: People,
}

impl Drop for Mark {
    fn drop(&mut self) {
        if let Ok(mut asking) = self.asking.lock() {
            asking.remove(&self.who);
        }
    }
}

/// Held while one person's plan is being made, wherever it is: dropped
/// only when the search itself ends, not when the request is abandoned.
struct Asking {
    _mark: Mark,
    _turn: tokio::sync::OwnedSemaphorePermit,
}

impl Searches {
    async fn take_turn(&self, session: &GovernedSession) -> Result<Asking, ProductError> {
        let principal = session.principal();
        let who = format!(
            "{}/{}",
            principal.organisation.as_deref().unwrap_or(""),
            principal.name
        );
        let fresh = self
            .asking
            .lock()
            .map_err(|_| ProductError::Failed("the planner's queue was poisoned".into()))?
            .insert(who.clone());
        if !fresh {
            return Err(ProductError::Busy(format!(
                "a plan for {} is already being made: wait for it before asking again",
                principal.name
            )));
        }
        let mark = Mark {
            who,
            asking: self.asking.clone(),
        };
        match tokio::time::timeout(WAIT_FOR_TURN, self.turn.clone().acquire_owned()).await {
            Ok(Ok(turn)) => Ok(Asking {
                _mark: mark,
                _turn: turn,
            }),
            _ => Err(ProductError::Busy(
                "the planner is making other plans: ask again in a minute".into(),
            )),
        }
    }
}

const ID: &str = "theatre-planner";
/// The action accepting a proposed booking.
pub const ACCEPT: &str = "accept";
/// Weeks planned unless asked otherwise: the 6-4-2 timetable's six.
pub const WEEKS: u32 = 6;
/// Moves the search makes unless asked otherwise.
pub const MOVES: i64 = 400_000;


fn plan_params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::optional(
            "as_at",
            ParamKind::Date,
            "The day planned from (YYYY-MM-DD; the lists from the day after); default today",
        ),
        ParamSpec::optional(
            "weeks",
            ParamKind::Integer,
            "Weeks planned, 1 to 12; default 6",
        ),
        ParamSpec::optional(
            "wards",
            ParamKind::TextList,
            "The wards (ward ids) whose bays take elective inpatients, comma-separated",
        ),
        ParamSpec::optional(
            "moves",
            ParamKind::Integer,
            "Moves the search makes, 0 to 20,000,000 (0: booking by hand alone); default 400,000",
        ),
    ]
}

fn reads() -> Vec<Reads> {
    vec![
        Reads::new(
            "pathway_activity",
            &[
                "pathway_id",
                "activity_date",
                "activity_sequence",
                "rtt_status_code",
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
        Reads::new(
            "encounter",
            &[
                "eal_id",
                "specialty_name",
                "primary_consultant_name",
                "intended_primary_procedure_code",
                "estimated_total_theatre_time",
                "intended_management_code",
                "last_poa_outcome",
                "last_poa_expiry_date",
                "last_poa_booking_status",
                "last_poa_scheduled_or_attended_datetime",
            ],
        ),
        Reads::new(
            "procedure",
            &["procedure_id", "encounter_id", "procedure_date", "procedure_opcs_code"],
        ),
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
                "property_to_modify",
                "new_value",
            ],
        ),
        Reads::new("patient", &["person_id", "sex", "date_of_birth"]),
        Reads::new(
            "theatre_session",
            &[
                "theatre_session_id",
                "date",
                "am_pm",
                "theatre_name",
                "specialty_name",
                "primary_consultant_id",
                "primary_consultant_name",
                "primary_anaesthetist_id",
                "planned_duration_minutes",
                "status",
                "cancelled",
            ],
        ),
        Reads::new(
            "theatre_booking",
            &[
                "theatre_session_id",
                "eal_id",
                "expected_duration",
                "booking_cancelled",
            ],
        ),
        Reads::new(
            "booking_request",
            &[
                "booking_request_id",
                "encounter_id",
                "theatre_session_id",
                "status",
                "task_type",
            ],
        ),
        Reads::new(
            "staff_unavailability",
            &[
                "care_professional_id",
                "leave_start_time",
                "leave_end_time",
                "leave_state",
            ],
        ),
        Reads::optional("bed", &["ward_id", "bay", "status", "bed_type"]),
    ]
}

fn placement_columns() -> Vec<OutputColumn> {
    let list = |name: &str, title: &str, from: &str| {
        column(name, title, Source::column("theatre_session", from))
    };
    vec![
        column("eal_id", "Entry", Source::column("eal_entry", "eal_id")),
        column("patient_id", "Patient", Source::column("eal_entry", "patient_id")),
        column("patient_name", "Name", Source::column("eal_entry", "patient_name")),
        column(
            "priority_type",
            "Priority",
            Source::column("eal_entry", "priority_type"),
        ),
        column(
            "consultant",
            "Consultant",
            Source::column("encounter", "primary_consultant_name"),
        ),
        column(
            "procedure_code",
            "Procedure",
            Source::column("encounter", "intended_primary_procedure_code"),
        ),
        column(
            "expected_theatre_minutes",
            "Minutes",
            Source::column("encounter", "estimated_total_theatre_time"),
        ),
        column(
            "weeks_waited",
            "Weeks waited",
            Source::derived(&[
                ("pathway_activity", "activity_date"),
                ("pathway_activity", "rtt_status_code"),
            ]),
        ),
        column(
            "breach_date_18_weeks",
            "18-week breach",
            Source::derived(&[("pathway_activity", "activity_date")]),
        ),
        column(
            "priority_limit_date",
            "Priority limit",
            Source::derived(&[
                ("eal_entry", "decided_to_admit_date"),
                ("eal_entry", "priority_type"),
            ]),
        ),
        column(
            "status",
            "Status",
            Source::derived(&[
                ("theatre_booking", "theatre_session_id"),
                ("booking_request", "status"),
            ]),
        ),
        list("theatre_session_id", "List", "theatre_session_id"),
        list("date", "Day", "date"),
        list("am_pm", "AM/PM", "am_pm"),
        list("theatre_name", "Theatre", "theatre_name"),
        column("bay", "Bay", Source::column("bed", "bay")),
        column(
            "reason",
            "Why",
            Source::derived(&[
                ("eal_entry", "priority_type"),
                ("encounter", "last_poa_outcome"),
                ("encounter", "last_poa_expiry_date"),
                ("theatre_session", "planned_duration_minutes"),
                ("theatre_booking", "expected_duration"),
                ("staff_unavailability", "leave_start_time"),
            ]),
        ),
    ]
}

impl TheatrePlanner {
    fn id() -> String {
        ID.into()
    }
}

/// The plan's options from the view's parameters.
pub struct Asked {
    pub as_at: NaiveDate,
    pub weeks: u32,
    pub wards: Vec<String>,
    pub moves: u64,
}

impl Asked {
    pub fn from(params: &Params) -> Result<Asked, ProductError> {
        let weeks = params.integer("weeks").unwrap_or(i64::from(WEEKS));
        if !(1..=12).contains(&weeks) {
            return Err(ProductError::Param {
                name: "weeks".into(),
                message: format!("{weeks}: give 1 to 12 weeks"),
            });
        }
        let moves = params.integer("moves").unwrap_or(MOVES);
        if !(0..=20_000_000).contains(&moves) {
            return Err(ProductError::Param {
                name: "moves".into(),
                message: format!("{moves}: give 0 to 20,000,000 moves"),
            });
        }
        let as_at = match params.get("as_at") {
            Some(crate::platform::ParamValue::Date(d)) => *d,
            _ => Utc::now().date_naive(),
        };
        Ok(Asked {
            as_at,
            weeks: weeks as u32,
            wards: params.list("wards"),
            moves: moves as u64,
        })
    }

    fn options(&self) -> PlanOptions {
        PlanOptions {
            search: SearchOptions {
                // The moves decide when it ends, so that the same tables
                // give the same proposal; the time is a ceiling.
                time_limit: std::time::Duration::from_secs(120),
                threads: 1,
                max_moves: Some(self.moves.max(1)),
                seed: 1,
            },
        }
    }
}

/// The proposal and the baseline for the tables the session shows.
pub struct Planned {
    pub loaded: load::Loaded,
    pub proposal: Proposal,
    pub baseline: Proposal,
}

/// Build the plan from `session`'s tables and search it.
pub async fn planned(session: &GovernedSession, asked: &Asked) -> Result<Planned, ProductError> {
    planned_holding(session, asked, ()).await
}

/// As [`planned`], holding `held` until the search ends, even if the
/// caller stops waiting for it.
async fn planned_holding(
    session: &GovernedSession,
    asked: &Asked,
    held: impl Send + 'static,
) -> Result<Planned, ProductError> {
    let loaded = load::load(session, asked.as_at, asked.weeks, &asked.wards).await?;
    let plan = loaded.plan.clone();
    let options = asked.options();
    let moves = asked.moves;
    let (proposal, baseline) = tokio::task::spawn_blocking(move || {
        let _held = held;
        let baseline = plan::baseline(&plan)?;
        let proposal = if moves == 0 {
            baseline.clone()
        } else {
            plan::propose(&plan, &options)?
        };
        Ok::<_, plan::PlanError>((proposal, baseline))
    })
    .await
    .map_err(|e| ProductError::Failed(format!("the search stopped: {e}")))?
    .map_err(|e| ProductError::Failed(e.to_string()))?;
    Ok(Planned {
        loaded,
        proposal,
        baseline,
    })
}

/// A placement's row, in [`placement_columns`]' order.
fn placement_row(plan: &Plan, planned: &Planned, p: &plan::Placement) -> Vec<Value> {
    let shown = planned.loaded.shown.get(&p.id).cloned().unwrap_or(Value::Null);
    let field = |k: &str| shown.get(k).cloned().unwrap_or(Value::Null);
    let session = p
        .session
        .as_deref()
        .and_then(|s| plan.sessions.iter().find(|x| x.id == s));
    let status = match p.status {
        Status::AlreadyBooked if planned.loaded.requested.contains_key(&p.id) => "requested",
        other => other.as_str(),
    };
    vec![
        json!(p.id),
        field("patient_id"),
        field("patient_name"),
        field("priority_type"),
        field("consultant"),
        field("procedure_code"),
        field("expected_theatre_minutes"),
        field("weeks_waited"),
        field("breach_date_18_weeks"),
        field("priority_limit_date"),
        json!(status),
        json!(p.session),
        json!(p.date.map(|d| d.to_string())),
        json!(session.map(|s| s.am_pm.clone())),
        json!(session.map(|s| s.theatre.clone())),
        json!(p.bay),
        json!(p.reason),
    ]
}

fn compare_columns() -> Vec<OutputColumn> {
    let from = Source::derived(&[
        ("theatre_session", "planned_duration_minutes"),
        ("theatre_booking", "expected_duration"),
        ("eal_entry", "priority_type"),
        ("pathway_activity", "activity_date"),
    ]);
    vec![
        column("measure", "Measure", from.clone()),
        column("baseline", "By hand (priority, weeks waited, first fit)", from.clone()),
        column("proposal", "Proposed", from.clone()),
        column("better", "Better", from),
    ]
}

fn compare_rows(plan: &Plan, planned: &Planned) -> Vec<Vec<Value>> {
    let b = Measures::of(plan, &planned.baseline);
    let o = Measures::of(plan, &planned.proposal);
    let mut rows = Vec::new();
    let mut row = |name: &str, x: Value, y: Value, better: &str| {
        rows.push(vec![json!(name), x, y, json!(better)]);
    };
    let cmp = |x: f64, y: f64, higher: bool| {
        if (x - y).abs() < 1e-9 {
            "same"
        } else if (y > x) == higher {
            "proposal"
        } else {
            "baseline"
        }
    };
    row("lists", json!(b.sessions), json!(o.sessions), "same");
    let inpatients = &planned.loaded.inpatients;
    row(
        "inpatients in the wards' beds now",
        json!(inpatients.in_beds),
        json!(inpatients.in_beds),
        "same",
    );
    row(
        "of them, no expected discharge date",
        json!(inpatients.no_discharge_date),
        json!(inpatients.no_discharge_date),
        "same",
    );
    row(
        "available minutes",
        json!(b.available_minutes),
        json!(o.available_minutes),
        "same",
    );
    row(
        "booked minutes",
        json!(b.booked_minutes),
        json!(o.booked_minutes),
        cmp(b.booked_minutes as f64, o.booked_minutes as f64, true),
    );
    let pct = |u: f64| json!((u * 1000.0).round() / 10.0);
    row(
        "booked utilisation %",
        pct(b.utilisation),
        pct(o.utilisation),
        cmp(b.utilisation, o.utilisation, true),
    );
    row(
        "patients treated",
        json!(b.treated),
        json!(o.treated),
        cmp(b.treated as f64, o.treated as f64, true),
    );
    row(
        "18-week breaches",
        json!(b.breaches_18),
        json!(o.breaches_18),
        cmp(b.breaches_18 as f64, o.breaches_18 as f64, false),
    );
    row(
        "52-week breaches",
        json!(b.breaches_52),
        json!(o.breaches_52),
        cmp(b.breaches_52 as f64, o.breaches_52 as f64, false),
    );
    row(
        "past their priority's limit",
        json!(b.past_priority_limit),
        json!(o.past_priority_limit),
        cmp(b.past_priority_limit as f64, o.past_priority_limit as f64, false),
    );
    row(
        "treated out of turn",
        json!(b.out_of_turn),
        json!(o.out_of_turn),
        cmp(b.out_of_turn as f64, o.out_of_turn as f64, false),
    );
    // Without the e-roster, nursing is not measured: shown as unknown, not
    // as none.
    let nursing = |n: usize, m: &Measures| {
        if m.nursing_checked {
            json!(n)
        } else {
            Value::Null
        }
    };
    row(
        "ward shifts short of safe nursing",
        nursing(b.understaffed_shifts, &b),
        nursing(o.understaffed_shifts, &o),
        cmp(
            b.understaffed_shifts as f64,
            o.understaffed_shifts as f64,
            false,
        ),
    );
    row(
        "ward shifts not yet rostered",
        nursing(b.unrostered_shifts, &b),
        nursing(o.unrostered_shifts, &o),
        "same",
    );
    row(
        "hard rules broken",
        json!(b.rule_breaks.len()),
        json!(o.rule_breaks.len()),
        cmp(b.rule_breaks.len() as f64, o.rule_breaks.len() as f64, false),
    );
    rows
}

/// The Monday of the first week open to booking, after the two locked.
fn first_open_week(plan: &Plan) -> NaiveDate {
    let open = plan.start + Duration::days(plan::LOCKED_DAYS);
    open + Duration::days((7 - i64::from(open.weekday().num_days_from_monday())) % 7)
}

#[async_trait]
impl Product for TheatrePlanner {
    fn manifest(&self) -> Manifest {
        let mut week_params = plan_params();
        week_params.push(ParamSpec::optional(
            "week",
            ParamKind::Date,
            "The week shown (its Monday, YYYY-MM-DD); default the first week open to booking",
        ));
        Manifest {
            id: TheatrePlanner::id(),
            title: "Theatre planner".into(),
            version: "1.0.0".into(),
            priority: Priority::ElectiveRecovery,
            description: "Which patients on the PTL to book onto which lists over the coming weeks, proposed under priority limits, 6-4-2 and pre-operative readiness, with why each was or was not booked; accepted proposals become booking requests".into(),
            publisher: None,
            purposes: vec![Purpose::DirectCare],
            reads: reads(),
            views: vec![
                ViewSpec {
                    name: "proposal".into(),
                    title: "Proposed bookings".into(),
                    description: "Every patient on the PTL with a running clock: the list proposed, or why none".into(),
                    params: plan_params(),
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: Vec::new(),
                },
                ViewSpec {
                    name: "week".into(),
                    title: "Theatre week".into(),
                    description: "The week's lists, each with the patients proposed, already booked or requested, and why".into(),
                    params: week_params,
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: Vec::new(),
                },
                ViewSpec {
                    name: "compare".into(),
                    title: "Proposal against booking by hand".into(),
                    description: "The lists' booked utilisation, patients treated, breaches, patients past their priority's limit and out of turn, proposed and by priority then weeks waited, first fit".into(),
                    params: plan_params(),
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: Vec::new(),
                },
            ],
            actions: vec![ActionSpec {
                name: ACCEPT.into(),
                title: "Accept".into(),
                description: "Accept a proposed booking: a booking request for the booking team to book the patient onto the list, checked again against the list's free minutes, the 6-4-2 lock, leave and the patient's pre-operative assessment".into(),
                target: "entry".into(),
                changes: vec!["booking_request".into()],
                inputs: vec![
                    ParamSpec {
                        name: "theatre_session_id".into(),
                        kind: ParamKind::Text,
                        required: true,
                        description: "The list".into(),
                    },
                    ParamSpec::optional("reason", ParamKind::Text, "Why, as the proposal gave it"),
                ],
                input: Input::Tables,
                offered_on: vec![
                    OfferedOn {
                        view: "week".into(),
                        column: "eal_id".into(),
                    },
                    OfferedOn {
                        view: "proposal".into(),
                        column: "eal_id".into(),
                    },
                ],
            }],
            offers: Offers::default(),
        }
    }

    async fn view(
        &self,
        view: &str,
        session: &GovernedSession,
        params: &Params,
    ) -> Result<Answer, ProductError> {
        if !matches!(view, "proposal" | "week" | "compare") {
            return Err(self.no_view(view));
        }
        let asked = Asked::from(params)?;
        let turn = self.searches.take_turn(session).await?;
        let planned = planned_holding(session, &asked, turn).await?;
        let plan = &planned.loaded.plan;
        let (columns, rows) = match view {
            "compare" => (compare_columns(), compare_rows(plan, &planned)),
            "proposal" => {
                let mut rows: Vec<Vec<Value>> = planned
                    .proposal
                    .placements
                    .iter()
                    .map(|p| placement_row(plan, &planned, p))
                    .collect();
                let columns = placement_columns();
                let at = |name: &str| columns.iter().position(|c| c.name == name);
                let (entry, status, reason) = (at("eal_id"), at("status"), at("reason"));
                let mut unplannable = planned.loaded.unplannable.clone();
                unplannable.sort_by(|a, b| a.eal_id.cmp(&b.eal_id));
                for u in unplannable {
                    let mut row = vec![Value::Null; columns.len()];
                    for (k, value) in [
                        (entry, json!(u.eal_id)),
                        (status, json!(Status::NotBooked.as_str())),
                        (reason, json!(u.reason)),
                    ] {
                        if let Some(k) = k {
                            row[k] = value;
                        }
                    }
                    rows.push(row);
                }
                (columns, rows)
            }
            _ => {
                let week = match params.get("week") {
                    Some(crate::platform::ParamValue::Date(d)) => *d,
                    _ => first_open_week(plan),
                };
                let end = week + Duration::days(7);
                let order: HashMap<&str, (NaiveDate, &str, &str)> = plan
                    .sessions
                    .iter()
                    .map(|s| (s.id.as_str(), (s.date, s.am_pm.as_str(), s.theatre.as_str())))
                    .collect();
                let mut placed: Vec<&plan::Placement> = planned
                    .proposal
                    .placements
                    .iter()
                    .filter(|p| p.date.is_some_and(|d| d >= week && d < end))
                    .collect();
                placed.sort_by_key(|p| {
                    (
                        p.session.as_deref().and_then(|s| order.get(s)).copied(),
                        p.id.clone(),
                    )
                });
                let rows = placed
                    .into_iter()
                    .map(|p| placement_row(plan, &planned, p))
                    .collect();
                (placement_columns(), rows)
            }
        };
        Ok(Answer {
            columns,
            rows,
            disclosure: None,
            patients: Vec::new(),
        })
    }

    async fn act_on_tables(
        &self,
        action: &str,
        target: &str,
        session: &GovernedSession,
        _held: &dyn RecordIntake,
        inputs: &Params,
        by: &str,
    ) -> Result<RecordsChange, ProductError> {
        match action {
            ACCEPT => accept::accept(target, session, inputs, by).await,
            other => Err(ProductError::UnknownAction {
                product: ID.into(),
                action: other.into(),
            }),
        }
    }
}
