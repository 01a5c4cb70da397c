//! Theatre sessions, for the theatre scheduler. Utilisation first: how
//! much of each planned theatre session was spent with a patient in
//! theatre, per session and per theatre or specialty and week, as the
//! CDM's `TheatreSession` defines it.
//!
//! - **Available time** is the session as planned: from its planned start
//!   to its planned end (`plannedDurationMinutes` where the session plan
//!   gives it).
//! - **Touch time** is each case's time in theatre: from the procedure's
//!   timestamp for its `actualProcedureTimeTotalTheatreTime` minutes.
//! - **Capped** utilisation counts only the touch time inside the planned
//!   session: a case started early or running past the planned end counts
//!   up to the session's edges. **Uncapped** counts all of it, so a list
//!   that overruns can exceed 100%.
//! - Each ratio has its colour band, the CDM's defaults: above 1.0 blue,
//!   from 0.90 green, from 0.85 yellow, from 0.75 orange, below red.
//!
//! The **trend** is the same week by week for every list, or one
//! specialty's, drawn as lines.
//!
//! **Free time** is what is left of a session to come once its cases are
//! booked: the minutes available less the expected minutes of every
//! booking not cancelled (computed from the bookings, not copied from the
//! session plan's own count). Of that, the **usable** minutes are what a
//! further case could take after a changeover of [`CHANGEOVER_MINUTES`],
//! and count only when at least [`SHORTEST_CASE_MINUTES`]: a list two
//! weeks out (locked) with usable time is what a trust offers others
//! through mutual aid.
//!
//! **6-4-2 readiness** holds each list to come to the standard of its
//! stage: six weeks out it is fixed (an anaesthetist named), by four it is
//! built (at least [`BUILT_PERCENT`]% of its minutes booked), at two it is
//! locked, and every patient on it must have a pre-operative assessment
//! (`ProcedureStatus`) found fit and still valid on the day of the list.
//! The patients who are not, and why, are a view of their own.
//!
//! **Sessions at risk** are lists still planned that may not run as
//! planned: their consultant or anaesthetist on leave (approved or asked
//! for) at the time of the list, the consultant or the theatre booked on
//! two lists at once, or no anaesthetist named (a gap in the rota).
//!
//! **Cancellations** are the bookings cancelled on the lists asked about,
//! each with its reason, and whether it was on the day of the list.
//!
//! Sessions released (the consultant on leave) or cancelled are not
//! counted: their time was never available to the list. A session that
//! went ahead with no case recorded counts at 0%. Ask for days that have
//! happened; a session still to come has no touch time yet.

use async_trait::async_trait;
use fdp_govern::{GovernedSession, Purpose};

use crate::platform::{
    column, Answer, Chart, Input, Manifest, Offers, OutputColumn, ParamKind, ParamSpec, ParamValue,
    Params, Priority, Product, ProductError, Reads, Source, ViewSpec,
};

/// The product.
#[derive(Default)]
pub struct TheatreSessions;

/// The changeover between two cases on a list.
pub const CHANGEOVER_MINUTES: i64 = 15;
/// The shortest case a list's free time is worth offering for.
pub const SHORTEST_CASE_MINUTES: i64 = 20;

/// The name of the view of free time on sessions to come.
pub const FREE_TIME: &str = "free-time";
/// The name of the view of sessions at risk.
pub const AT_RISK: &str = "at-risk";
/// The name of the view of cancelled bookings.
pub const CANCELLATIONS: &str = "cancellations";
/// The name of the view of utilisation week by week.
pub const TREND: &str = "trend";
/// The name of the 6-4-2 view: each list to come against its stage's
/// standard.
pub const READINESS: &str = "readiness";
/// The name of the view of patients on the lists to come not yet ready for
/// theatre.
pub const NOT_READY: &str = "not-ready";

/// 6-4-2: a list is fixed six weeks ahead (its consultant and anaesthetist
/// named, leave settled), built by four (booked), locked at two (every
/// patient assessed fit for the day).
const FIXED_DAYS: i64 = 42;
const BUILT_DAYS: i64 = 28;
const LOCKED_DAYS: i64 = 14;
/// The share of a list's minutes booked by the time it is built.
const BUILT_PERCENT: i64 = 85;

const ID: &str = "theatre-sessions";

/// A session's minutes available: the plan's own count, or else its
/// planned times (SQL over `theatre_session`).
const AVAILABLE: &str = "coalesce(CAST(planned_duration_minutes AS DOUBLE), \
     (date_part('epoch', planned_end_time) - date_part('epoch', planned_start_time)) / 60.0)";

/// A session still planned: neither released nor cancelled (SQL over
/// `theatre_session`).
const STILL_PLANNED: &str =
    "coalesce(status, '') NOT IN ('released', 'cancelled') AND NOT coalesce(cancelled, false)";

/// The CDM's colour band for a utilisation ratio `ratio` (a SQL
/// expression).
fn band(ratio: &str) -> String {
    format!(
        "CASE WHEN {ratio} IS NULL THEN NULL \
              WHEN {ratio} > 1.0 THEN 'Blue' \
              WHEN {ratio} >= 0.90 THEN 'Green' \
              WHEN {ratio} >= 0.85 THEN 'Yellow' \
              WHEN {ratio} >= 0.75 THEN 'Orange' \
              ELSE 'Red' END"
    )
}

/// Each session counted between `from` and `to` (SQL date literals), with
/// its available minutes and its cases' touch time, capped and uncapped.
fn session_minutes(from: &str, to: &str) -> String {
    format!(
        "WITH counted AS ( \
             SELECT s.theatre_session_id, s.date, s.theatre_id, s.theatre_name, s.specialty_name, \
                    s.am_pm, s.primary_consultant_name, s.planned_start_time, s.planned_end_time, \
                    s.start_time, s.end_time, \
                    date_part('epoch', s.planned_start_time) / 60.0 AS planned_from, \
                    date_part('epoch', s.planned_end_time) / 60.0 AS planned_to, \
                    {AVAILABLE} AS available_minutes \
             FROM theatre_session s \
             WHERE s.date BETWEEN {from} AND {to} \
               AND {STILL_PLANNED} \
         ), \
         cases AS ( \
             SELECT p.theatre_session_id, \
                    date_part('epoch', p.procedure_timestamp) / 60.0 AS into_theatre, \
                    CAST(p.actual_procedure_time_total_theatre_time AS DOUBLE) AS minutes \
             FROM procedure p \
             WHERE p.theatre_session_id IS NOT NULL \
               AND p.procedure_timestamp IS NOT NULL \
               AND p.actual_procedure_time_total_theatre_time > 0 \
         ), \
         touched AS ( \
             SELECT c.theatre_session_id, count(*) AS cases, \
                    sum(c.minutes) AS uncapped, \
                    sum(greatest(0.0, least(c.into_theatre + c.minutes, s.planned_to) \
                                      - greatest(c.into_theatre, s.planned_from))) AS capped \
             FROM cases c JOIN counted s ON s.theatre_session_id = c.theatre_session_id \
             GROUP BY c.theatre_session_id \
         ) \
         SELECT s.*, coalesce(t.cases, 0) AS cases, \
                coalesce(t.capped, 0.0) AS touch_capped, coalesce(t.uncapped, 0.0) AS touch_uncapped \
         FROM counted s LEFT JOIN touched t ON t.theatre_session_id = s.theatre_session_id"
    )
}

/// Whole minutes `actual` fell after `planned`, none if before; unknown
/// (NULL) where the actual time was not recorded.
fn minutes_after(actual: &str, planned: &str) -> String {
    format!(
        "CASE WHEN {actual} IS NOT NULL THEN CAST(greatest(0.0, \
             (date_part('epoch', {actual}) - date_part('epoch', {planned})) / 60.0) AS BIGINT) END"
    )
}

/// A ratio of two SQL expressions, NULL where nothing was available.
fn ratio(touch: &str, available: &str) -> String {
    format!("CASE WHEN {available} > 0 THEN round({touch} / {available}, 4) END")
}

fn date_param(name: &str, description: &str) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        kind: ParamKind::Date,
        required: true,
        description: description.into(),
    }
}

/// The session's own column `name`, titled `title`.
fn session(name: &str, title: &str) -> OutputColumn {
    column(name, title, Source::column("theatre_session", name))
}

/// Where touch time comes from.
fn touch_source() -> Source {
    Source::derived(&[
        ("procedure", "procedure_timestamp"),
        ("procedure", "actual_procedure_time_total_theatre_time"),
        ("theatre_session", "planned_start_time"),
        ("theatre_session", "planned_end_time"),
    ])
}

fn available_source() -> Source {
    Source::derived(&[
        ("theatre_session", "planned_start_time"),
        ("theatre_session", "planned_end_time"),
        ("theatre_session", "planned_duration_minutes"),
    ])
}

#[async_trait]
impl Product for TheatreSessions {
    fn manifest(&self) -> Manifest {
        let range = || {
            vec![
                date_param("from", "The first day counted"),
                date_param("to", "The last day counted"),
            ]
        };
        let mut for_specialty = range();
        for_specialty.push(ParamSpec {
            name: "specialty".into(),
            kind: ParamKind::Text,
            required: false,
            description: "Only this specialty's lists (default every list)".into(),
        });
        let mut by_group = range();
        by_group.push(ParamSpec {
            name: "by".into(),
            kind: ParamKind::Text,
            required: false,
            description: "theatre (the default) or specialty".into(),
        });
        Manifest {
            id: ID.into(),
            title: "Theatre sessions".into(),
            version: "1.0.0".into(),
            priority: Priority::ElectiveRecovery,
            description: "How much of each planned theatre session was spent with a patient in theatre, capped at the session's planned times and uncapped, per session and per theatre or specialty and week".into(),
            publisher: None,
            purposes: vec![Purpose::DirectCare, Purpose::Operations],
            reads: vec![
                Reads::new(
                    "theatre_session",
                    &[
                        "theatre_session_id",
                        "date",
                        "theatre_id",
                        "theatre_name",
                        "specialty_name",
                        "am_pm",
                        "primary_consultant_name",
                        "primary_consultant_id",
                        "primary_anaesthetist_id",
                        "planned_start_time",
                        "planned_end_time",
                        "planned_duration_minutes",
                        "start_time",
                        "end_time",
                        "status",
                        "cancelled",
                    ],
                ),
                Reads::new(
                    "procedure",
                    &[
                        "theatre_session_id",
                        "procedure_timestamp",
                        "actual_procedure_time_total_theatre_time",
                    ],
                ),
                Reads::optional(
                    "theatre_booking",
                    &[
                        "theatre_booking_id",
                        "theatre_session_id",
                        "patient_id",
                        "expected_duration",
                        "booking_cancelled",
                        "cancellation_date",
                        "cancellation_reason",
                        "cancelled_otd",
                    ],
                ),
                Reads::optional(
                    "procedure_status",
                    &[
                        "theatre_booking_id",
                        "poa_booking_status",
                        "poa_scheduled_or_attended_datetime",
                        "poa_outcome",
                        "poa_expiry_date",
                    ],
                ),
                Reads::optional(
                    "staff_unavailability",
                    &[
                        "care_professional_id",
                        "title",
                        "leave_start_time",
                        "leave_end_time",
                        "leave_state",
                    ],
                ),
            ],
            views: vec![
                ViewSpec {
                    name: "sessions".into(),
                    title: "Theatre sessions".into(),
                    description: "Each session that went ahead: its planned and actual times, its cases, and its utilisation capped and uncapped".into(),
                    params: range(),
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: "utilisation".into(),
                    title: "Utilisation by week".into(),
                    description: "Per theatre (or specialty) and week: the sessions, the minutes available, the touch time and the utilisation, capped and uncapped".into(),
                    params: by_group,
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: TREND.into(),
                    title: "Utilisation trend".into(),
                    description: "Week by week, every list (or one specialty's): the minutes available, the touch time and the utilisation, capped and uncapped".into(),
                    params: for_specialty,
                    input: Input::Tables,
                    chart: Some(Chart::lines("week", &["utilisation_capped", "utilisation_uncapped"])),
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: FREE_TIME.into(),
                    title: "Free time on sessions to come".into(),
                    description: "Each session planned between the two days, as the theatre week: the minutes booked, unbooked and usable for a further case".into(),
                    params: range(),
                    input: Input::Tables,
                    chart: Some(Chart::bars("list", "booked_minutes").stacked(&["usable_unbooked_minutes"])),
                    as_of: None,
                    needs: vec!["theatre_booking".into()],
                },
                ViewSpec {
                    name: READINESS.into(),
                    title: "6-4-2 readiness".into(),
                    description: "Each list in the six weeks from the day given against its stage: fixed at six weeks (an anaesthetist named), built by four (85% of its minutes booked), locked at two (every patient assessed fit for the day), and what stands in the way".into(),
                    params: vec![date_param("as_at", "The day the lists are counted from")],
                    input: Input::Tables,
                    chart: Some(Chart::bars("list", "patients_ready").stacked(&["patients_not_ready"])),
                    as_of: None,
                    needs: vec!["theatre_booking".into(), "procedure_status".into()],
                },
                ViewSpec {
                    name: NOT_READY.into(),
                    title: "Patients not ready for theatre".into(),
                    description: "Each patient booked on a list in the six weeks from the day given without a pre-operative assessment found fit and valid on the day of the list, and why".into(),
                    params: vec![date_param("as_at", "The day the lists are counted from")],
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: vec!["theatre_booking".into(), "procedure_status".into()],
                },
                ViewSpec {
                    name: AT_RISK.into(),
                    title: "Sessions at risk".into(),
                    description: "Each list planned between the two days that may not run as planned, and why: consultant or anaesthetist on leave, consultant or theatre double-booked, no anaesthetist named".into(),
                    params: range(),
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: vec!["staff_unavailability".into()],
                },
                ViewSpec {
                    name: CANCELLATIONS.into(),
                    title: "Cancellations".into(),
                    description: "Each booking cancelled on a list between the two days, with its reason, and whether on the day".into(),
                    params: range(),
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: vec!["theatre_booking".into()],
                },
            ],
            actions: Vec::new(),
            offers: Offers::default(),
        }
    }

    async fn view(
        &self,
        view: &str,
        session: &GovernedSession,
        params: &Params,
    ) -> Result<Answer, ProductError> {
        let literal = |name: &str| {
            params
                .get(name)
                .map(|v| v.sql_literal())
                .ok_or_else(|| ProductError::Param {
                    name: name.into(),
                    message: "a date is needed".into(),
                })
        };
        if view == READINESS || view == NOT_READY {
            let Some(ParamValue::Date(as_at)) = params.get("as_at") else {
                return Err(ProductError::Param {
                    name: "as_at".into(),
                    message: "a date is needed".into(),
                });
            };
            let (sql, columns) = if view == READINESS {
                readiness(*as_at)
            } else {
                not_ready(*as_at)
            };
            let result = session.query(&sql).await?;
            return Answer::from_query(&result, columns);
        }
        let (from, to) = (literal("from")?, literal("to")?);
        let minutes = session_minutes(&from, &to);
        let (sql, columns) = match view {
            FREE_TIME => free_time(&from, &to),
            AT_RISK => at_risk(&from, &to),
            CANCELLATIONS => cancellations(&from, &to),
            "sessions" => sessions(&minutes),
            TREND => {
                let only = match params.get("specialty") {
                    Some(v) => format!("WHERE specialty_name = {}", v.sql_literal()),
                    None => String::new(),
                };
                trend(&minutes, &only)
            }
            "utilisation" => {
                let by = params.text("by").unwrap_or_else(|| "theatre".into());
                let group = match by.as_str() {
                    "theatre" => ("theatre_name", "Theatre", "theatre_name"),
                    "specialty" => ("specialty_name", "Specialty", "specialty_name"),
                    _ => {
                        return Err(ProductError::Param {
                            name: "by".into(),
                            message: format!("{by:?} is not theatre or specialty"),
                        })
                    }
                };
                by_week(&minutes, group)
            }
            _ => {
                return Err(ProductError::UnknownView {
                    product: ID.into(),
                    view: view.into(),
                })
            }
        };
        let result = session.query(&sql).await?;
        Answer::from_query(&result, columns)
    }
}

/// The cases, touch minutes and utilisation both ways with their bands,
/// from SQL expressions for the capped and uncapped touch minutes and the
/// minutes available: the columns [`touch_columns`] describes.
fn touch_select(capped: &str, uncapped: &str, available: &str) -> String {
    let (ratio_capped, ratio_uncapped) = (ratio(capped, available), ratio(uncapped, available));
    format!(
        "cases, CAST({capped} AS BIGINT) AS touch_minutes_capped, \
         CAST({uncapped} AS BIGINT) AS touch_minutes_uncapped, \
         {ratio_capped} AS utilisation_capped, {} AS utilisation_capped_status, \
         {ratio_uncapped} AS utilisation_uncapped, {} AS utilisation_uncapped_status",
        band(&ratio_capped),
        band(&ratio_uncapped),
    )
}

fn touch_columns() -> Vec<OutputColumn> {
    vec![
        column("cases", "Cases", Source::count("procedure")),
        column("touch_minutes_capped", "Touch time, capped (min)", touch_source()),
        column("touch_minutes_uncapped", "Touch time, uncapped (min)", touch_source()),
        column("utilisation_capped", "Utilisation, capped", touch_source()),
        column("utilisation_capped_status", "Band, capped", touch_source()),
        column("utilisation_uncapped", "Utilisation, uncapped", touch_source()),
        column("utilisation_uncapped_status", "Band, uncapped", touch_source()),
    ]
}

fn sessions(minutes: &str) -> (String, Vec<OutputColumn>) {
    let sql = format!(
        "SELECT theatre_session_id, date, theatre_name, specialty_name, am_pm, primary_consultant_name, \
                planned_start_time, planned_end_time, start_time, end_time, \
                CAST(available_minutes AS BIGINT) AS available_minutes, \
                {late_start} AS late_start_minutes, {overrun} AS overrun_minutes, \
                {touch} \
         FROM ({minutes}) \
         ORDER BY date, theatre_name, planned_start_time",
        touch = touch_select("touch_capped", "touch_uncapped", "available_minutes"),
        late_start = minutes_after("start_time", "planned_start_time"),
        overrun = minutes_after("end_time", "planned_end_time"),
    );
    let columns = vec![
        session("theatre_session_id", "Session"),
        session("date", "Date"),
        session("theatre_name", "Theatre"),
        session("specialty_name", "Specialty"),
        session("am_pm", "AM/PM"),
        session("primary_consultant_name", "Consultant"),
        session("planned_start_time", "Planned start"),
        session("planned_end_time", "Planned end"),
        session("start_time", "Started"),
        session("end_time", "Ended"),
        column("available_minutes", "Minutes available", available_source()),
        column(
            "late_start_minutes",
            "Late start (min)",
            Source::derived(&[
                ("theatre_session", "start_time"),
                ("theatre_session", "planned_start_time"),
            ]),
        ),
        column(
            "overrun_minutes",
            "Overrun (min)",
            Source::derived(&[
                ("theatre_session", "end_time"),
                ("theatre_session", "planned_end_time"),
            ]),
        ),
    ]
    .into_iter()
    .chain(touch_columns())
    .collect();
    (sql, columns)
}

/// Each session planned between `from` and `to` (SQL date literals) with
/// its booked, unbooked and usable minutes.
fn free_time(from: &str, to: &str) -> (String, Vec<OutputColumn>) {
    let sql = format!(
        "WITH planned AS ( \
             SELECT theatre_session_id, date, theatre_name, specialty_name, am_pm, primary_consultant_name, \
                    planned_start_time, planned_end_time, \
                    {AVAILABLE} AS available \
             FROM theatre_session \
             WHERE date BETWEEN {from} AND {to} \
               AND {STILL_PLANNED} \
         ), \
         booked AS ( \
             SELECT theatre_session_id, count(*) AS bookings, \
                    sum(coalesce(CAST(expected_duration AS DOUBLE), 0.0)) AS minutes \
             FROM theatre_booking \
             WHERE NOT coalesce(booking_cancelled, false) AND theatre_session_id IS NOT NULL \
             GROUP BY theatre_session_id \
         ), \
         free AS ( \
             SELECT p.*, coalesce(b.bookings, 0) AS bookings, coalesce(b.minutes, 0.0) AS booked, \
                    greatest(0.0, p.available - coalesce(b.minutes, 0.0)) AS unbooked \
             FROM booked b RIGHT JOIN planned p ON b.theatre_session_id = p.theatre_session_id \
         ) \
         SELECT theatre_session_id, \
                concat_ws(' · ', to_char(date, '%a %d %b'), theatre_name, am_pm) AS list, \
                date, theatre_name, specialty_name, am_pm, primary_consultant_name, \
                planned_start_time, planned_end_time, \
                CAST(available AS BIGINT) AS available_minutes, bookings, \
                CAST(booked AS BIGINT) AS booked_minutes, CAST(unbooked AS BIGINT) AS unbooked_minutes, \
                CAST(CASE WHEN unbooked - {CHANGEOVER_MINUTES} >= {SHORTEST_CASE_MINUTES} \
                          THEN unbooked - {CHANGEOVER_MINUTES} ELSE 0 END AS BIGINT) AS usable_unbooked_minutes \
         FROM free \
         ORDER BY date, theatre_name, planned_start_time"
    );
    let booked = || {
        Source::derived(&[
            ("theatre_booking", "expected_duration"),
            ("theatre_booking", "booking_cancelled"),
        ])
    };
    let columns = vec![
        session("theatre_session_id", "Session"),
        list_column(),
        session("date", "Date"),
        session("theatre_name", "Theatre"),
        session("specialty_name", "Specialty"),
        session("am_pm", "AM/PM"),
        session("primary_consultant_name", "Consultant"),
        session("planned_start_time", "Planned start"),
        session("planned_end_time", "Planned end"),
        column("available_minutes", "Minutes available", available_source()),
        column("bookings", "Bookings", Source::count("theatre_booking")),
        column("booked_minutes", "Booked (min)", booked()),
        column("unbooked_minutes", "Unbooked (min)", booked()),
        column("usable_unbooked_minutes", "Usable unbooked (min)", booked()),
    ];
    (sql, columns)
}

/// The lists still planned between `from` and `to` (SQL date literals).
fn planned(from: &str, to: &str) -> String {
    format!(
        "SELECT theatre_session_id, date, theatre_id, theatre_name, specialty_name, am_pm, \
                primary_consultant_id, primary_consultant_name, primary_anaesthetist_id, \
                planned_start_time, planned_end_time \
         FROM theatre_session \
         WHERE date BETWEEN {from} AND {to} \
           AND {STILL_PLANNED}"
    )
}

/// Each list planned between `from` and `to` that may not run as planned,
/// once for each reason.
fn at_risk(from: &str, to: &str) -> (String, Vec<OutputColumn>) {
    let leave = |who: &str, risk: &str| {
        format!(
            "SELECT s.theatre_session_id, '{risk}' AS risk, \
                    coalesce(u.title, 'Leave') || ' (' || coalesce(u.leave_state, 'state not given') || ')' AS detail \
             FROM staff_unavailability u JOIN s ON u.care_professional_id = s.{who} \
               AND u.leave_start_time < s.planned_end_time AND u.leave_end_time > s.planned_start_time \
             WHERE coalesce(u.leave_state, '') IN ('approved', 'requested')"
        )
    };
    let twice = |on: &str, risk: &str| {
        format!(
            "SELECT a.theatre_session_id, '{risk}' AS risk, \
                    'also on session ' || b.theatre_session_id || ' in ' || coalesce(b.theatre_name, 'another theatre') AS detail \
             FROM s a JOIN s b ON a.{on} = b.{on} AND a.theatre_session_id <> b.theatre_session_id \
               AND a.planned_start_time < b.planned_end_time AND b.planned_start_time < a.planned_end_time"
        )
    };
    let sql = format!(
        "WITH s AS ({planned}), \
         risks AS ( \
             {consultant_leave} UNION ALL {anaesthetist_leave} UNION ALL \
             {consultant_twice} UNION ALL {theatre_twice} UNION ALL \
             SELECT theatre_session_id, 'no anaesthetist' AS risk, 'no anaesthetist named on the list' AS detail \
             FROM s WHERE primary_anaesthetist_id IS NULL \
         ) \
         SELECT s.theatre_session_id, s.date, s.theatre_name, s.specialty_name, s.am_pm, \
                s.primary_consultant_name, s.planned_start_time, r.risk, r.detail \
         FROM risks r JOIN s ON s.theatre_session_id = r.theatre_session_id \
         ORDER BY s.date, s.theatre_name, s.planned_start_time, r.risk, r.detail",
        planned = planned(from, to),
        consultant_leave = leave("primary_consultant_id", "consultant on leave"),
        anaesthetist_leave = leave("primary_anaesthetist_id", "anaesthetist on leave"),
        consultant_twice = twice("primary_consultant_id", "consultant double-booked"),
        theatre_twice = twice("theatre_id", "theatre double-booked"),
    );
    let why = || {
        Source::derived(&[
            ("staff_unavailability", "leave_state"),
            ("theatre_session", "primary_consultant_id"),
            ("theatre_session", "primary_anaesthetist_id"),
            ("theatre_session", "theatre_id"),
        ])
    };
    let columns = vec![
        session("theatre_session_id", "Session"),
        session("date", "Date"),
        session("theatre_name", "Theatre"),
        session("specialty_name", "Specialty"),
        session("am_pm", "AM/PM"),
        session("primary_consultant_name", "Consultant"),
        session("planned_start_time", "Planned start"),
        column("risk", "Risk", why()),
        column("detail", "Why", why()),
    ];
    (sql, columns)
}

/// Each booking cancelled on a list between `from` and `to`.
fn cancellations(from: &str, to: &str) -> (String, Vec<OutputColumn>) {
    let sql = format!(
        "WITH s AS ({planned}) \
         SELECT s.theatre_session_id, s.date, s.theatre_name, s.specialty_name, s.am_pm, \
                b.theatre_booking_id, b.cancellation_date, \
                coalesce(b.cancellation_reason, 'no reason recorded') AS cancellation_reason, \
                coalesce(b.cancelled_otd, b.cancellation_date = s.date, false) AS cancelled_on_the_day \
         FROM theatre_booking b JOIN s ON s.theatre_session_id = b.theatre_session_id \
         WHERE coalesce(b.booking_cancelled, false) \
         ORDER BY s.date, s.theatre_name, s.planned_start_time, b.theatre_booking_id",
        planned = planned(from, to),
    );
    let booking = |name: &str, title: &str| {
        column(name, title, Source::column("theatre_booking", name))
    };
    let columns = vec![
        session("theatre_session_id", "Session"),
        session("date", "Date"),
        session("theatre_name", "Theatre"),
        session("specialty_name", "Specialty"),
        session("am_pm", "AM/PM"),
        booking("theatre_booking_id", "Booking"),
        booking("cancellation_date", "Cancelled on"),
        booking("cancellation_reason", "Reason"),
        column(
            "cancelled_on_the_day",
            "On the day",
            Source::derived(&[
                ("theatre_booking", "cancelled_otd"),
                ("theatre_booking", "cancellation_date"),
                ("theatre_session", "date"),
            ]),
        ),
    ];
    (sql, columns)
}

/// The lists planned in the six weeks from `as_at`, each with its days to
/// go and its stage; each booking on them not cancelled; and where each
/// booked patient stands with their pre-operative assessment.
fn lists_to_come(as_at: chrono::NaiveDate) -> String {
    let last = as_at + chrono::Duration::days(FIXED_DAYS - 1);
    format!(
        "WITH s AS ( \
             SELECT theatre_session_id, date, theatre_name, specialty_name, am_pm, \
                    primary_consultant_name, primary_anaesthetist_id, planned_start_time, \
                    concat_ws(' · ', to_char(date, '%a %d %b'), theatre_name, am_pm) AS list, \
                    {AVAILABLE} AS available, \
                    CAST((date_part('epoch', CAST(date AS TIMESTAMP)) \
                          - date_part('epoch', CAST(DATE '{as_at}' AS TIMESTAMP))) / 86400 AS BIGINT) AS days_to_list \
             FROM theatre_session \
             WHERE date BETWEEN DATE '{as_at}' AND DATE '{last}' \
               AND {STILL_PLANNED} \
         ), \
         staged AS ( \
             SELECT *, CASE WHEN days_to_list < {LOCKED_DAYS} THEN '2 weeks: locked' \
                            WHEN days_to_list < {BUILT_DAYS} THEN '4 weeks: built' \
                            ELSE '6 weeks: fixed' END AS stage \
             FROM s \
         ), \
         b AS ( \
             SELECT b.theatre_booking_id, b.theatre_session_id, b.patient_id, s.date, \
                    coalesce(CAST(b.expected_duration AS DOUBLE), 0.0) AS minutes \
             FROM theatre_booking b JOIN s ON s.theatre_session_id = b.theatre_session_id \
             WHERE NOT coalesce(b.booking_cancelled, false) \
         ), \
         a AS ( \
             SELECT b.theatre_booking_id, \
                    CASE WHEN bool_or(p.poa_outcome = 'fit' AND p.poa_expiry_date >= b.date) THEN 'ready' \
                         WHEN bool_or(p.poa_outcome = 'fit') THEN 'assessment lapses before the list' \
                         WHEN bool_or(p.poa_outcome = 'unfit') THEN 'unfit at assessment' \
                         WHEN bool_or(p.poa_outcome = 'awaiting results') THEN 'assessment results awaited' \
                         WHEN bool_or(p.poa_booking_status = 'booked') THEN 'assessment booked, not yet held' \
                         WHEN bool_or(p.poa_booking_status = 'did not attend') THEN 'did not attend assessment' \
                         ELSE 'no assessment' END AS readiness, \
                    max(p.poa_scheduled_or_attended_datetime) AS assessment, \
                    max(p.poa_expiry_date) AS valid_until \
             FROM b LEFT JOIN procedure_status p ON p.theatre_booking_id = b.theatre_booking_id \
             GROUP BY b.theatre_booking_id \
         )"
    )
}

/// Each list in the six weeks from `as_at` against its stage's standard.
fn readiness(as_at: chrono::NaiveDate) -> (String, Vec<OutputColumn>) {
    let sql = format!(
        "{lists}, \
         counted AS ( \
             SELECT s.theatre_session_id, count(b.theatre_booking_id) AS bookings, \
                    coalesce(sum(b.minutes), 0.0) AS booked, \
                    count(CASE WHEN a.readiness = 'ready' THEN 1 END) AS ready \
             FROM s LEFT JOIN b ON b.theatre_session_id = s.theatre_session_id \
                    LEFT JOIN a ON a.theatre_booking_id = b.theatre_booking_id \
             GROUP BY s.theatre_session_id \
         ), \
         judged AS ( \
             SELECT t.*, c.bookings, c.booked, c.ready, \
                    CAST(CASE WHEN t.available > 0 THEN round(100.0 * c.booked / t.available) END AS BIGINT) AS booked_percent, \
                    concat_ws('; ', \
                        CASE WHEN t.primary_anaesthetist_id IS NULL THEN 'no anaesthetist named' END, \
                        CASE WHEN t.days_to_list < {BUILT_DAYS} AND c.booked < t.available * {BUILT_PERCENT} / 100.0 \
                             THEN 'booked ' || CAST(CAST(round(100.0 * c.booked / t.available) AS BIGINT) AS VARCHAR) \
                                  || '% of ' || CAST(CAST(t.available AS BIGINT) AS VARCHAR) || ' minutes' END, \
                        CASE WHEN t.days_to_list < {LOCKED_DAYS} AND c.bookings > c.ready \
                             THEN CAST(c.bookings - c.ready AS VARCHAR) || ' of ' || CAST(c.bookings AS VARCHAR) \
                                  || ' patients not ready for theatre' END) AS to_do \
             FROM staged t JOIN counted c ON c.theatre_session_id = t.theatre_session_id \
         ) \
         SELECT theatre_session_id, list, date, theatre_name, specialty_name, am_pm, primary_consultant_name, \
                days_to_list, stage, CAST(available AS BIGINT) AS available_minutes, \
                CAST(booked AS BIGINT) AS booked_minutes, booked_percent, bookings, ready AS patients_ready, \
                bookings - ready AS patients_not_ready, to_do = '' AS on_track, to_do \
         FROM judged \
         ORDER BY date, theatre_name, planned_start_time",
        lists = lists_to_come(as_at),
    );
    let assessed = || {
        Source::derived(&[
            ("procedure_status", "poa_outcome"),
            ("procedure_status", "poa_expiry_date"),
            ("procedure_status", "poa_booking_status"),
            ("theatre_booking", "booking_cancelled"),
        ])
    };
    let booked = || {
        Source::derived(&[
            ("theatre_booking", "expected_duration"),
            ("theatre_booking", "booking_cancelled"),
        ])
    };
    let judged = || {
        Source::derived(&[
            ("theatre_session", "date"),
            ("theatre_session", "primary_anaesthetist_id"),
            ("theatre_booking", "expected_duration"),
            ("procedure_status", "poa_outcome"),
            ("procedure_status", "poa_expiry_date"),
        ])
    };
    let columns = vec![
        session("theatre_session_id", "Session"),
        list_column(),
        session("date", "Date"),
        session("theatre_name", "Theatre"),
        session("specialty_name", "Specialty"),
        session("am_pm", "AM/PM"),
        session("primary_consultant_name", "Consultant"),
    ]
    .into_iter()
    .chain(stage_columns())
    .chain([
        column("available_minutes", "Minutes available", available_source()),
        column("booked_minutes", "Booked (min)", booked()),
        column("booked_percent", "Booked %", booked()),
        column("bookings", "Patients", Source::count("theatre_booking")),
        column("patients_ready", "Ready", assessed()),
        column("patients_not_ready", "Not ready", assessed()),
        column("on_track", "On track", judged()),
        column("to_do", "To do", judged()),
    ])
    .collect();
    (sql, columns)
}

/// Each patient on a list in the six weeks from `as_at` not ready for
/// theatre, and why.
fn not_ready(as_at: chrono::NaiveDate) -> (String, Vec<OutputColumn>) {
    let sql = format!(
        "{lists} \
         SELECT t.theatre_session_id, t.list, t.date, t.days_to_list, t.stage, b.theatre_booking_id, b.patient_id, \
                a.readiness, a.assessment, a.valid_until \
         FROM a JOIN b ON b.theatre_booking_id = a.theatre_booking_id \
                JOIN staged t ON t.theatre_session_id = b.theatre_session_id \
         WHERE a.readiness <> 'ready' \
         ORDER BY t.date, t.theatre_name, t.planned_start_time, b.theatre_booking_id",
        lists = lists_to_come(as_at),
    );
    let status = |name: &str| Source::column("procedure_status", name);
    let columns = vec![
        session("theatre_session_id", "Session"),
        list_column(),
        session("date", "Date"),
    ]
    .into_iter()
    .chain(stage_columns())
    .chain([
        column(
            "theatre_booking_id",
            "Booking",
            Source::column("theatre_booking", "theatre_booking_id"),
        ),
        column(
            "patient_id",
            "Patient",
            Source::column("theatre_booking", "patient_id"),
        ),
        column(
            "readiness",
            "Why not ready",
            Source::derived(&[
                ("procedure_status", "poa_outcome"),
                ("procedure_status", "poa_expiry_date"),
                ("procedure_status", "poa_booking_status"),
            ]),
        ),
        column(
            "assessment",
            "Assessment",
            status("poa_scheduled_or_attended_datetime"),
        ),
        column("valid_until", "Valid until", status("poa_expiry_date")),
    ])
    .collect();
    (sql, columns)
}

/// A list's days to go and its 6-4-2 stage.
fn stage_columns() -> [OutputColumn; 2] {
    let from_date = || Source::derived(&[("theatre_session", "date")]);
    [
        column("days_to_list", "Days to go", from_date()),
        column("stage", "6-4-2 stage", from_date()),
    ]
}

/// A list named by its day, theatre and half.
fn list_column() -> OutputColumn {
    column(
        "list",
        "List",
        Source::derived(&[
            ("theatre_session", "date"),
            ("theatre_session", "theatre_name"),
            ("theatre_session", "am_pm"),
        ]),
    )
}

/// Week by week, the lists of `minutes` that `only` (a `WHERE` clause, or
/// nothing) keeps.
fn trend(minutes: &str, only: &str) -> (String, Vec<OutputColumn>) {
    let sql = format!(
        "SELECT week, sessions, CAST(available AS BIGINT) AS available_minutes, {touch} \
         FROM ( \
             SELECT CAST(date_trunc('week', CAST(date AS TIMESTAMP)) AS DATE) AS week, \
                    count(*) AS sessions, sum(cases) AS cases, sum(available_minutes) AS available, \
                    sum(touch_capped) AS capped, sum(touch_uncapped) AS uncapped \
             FROM ({minutes}) {only} \
             GROUP BY 1 \
         ) \
         ORDER BY week",
        touch = touch_select("capped", "uncapped", "available"),
    );
    let columns = vec![
        column(
            "week",
            "Week beginning",
            Source::derived(&[("theatre_session", "date")]),
        ),
        column("sessions", "Sessions", Source::count("theatre_session")),
        column("available_minutes", "Minutes available", available_source()),
    ]
    .into_iter()
    .chain(touch_columns())
    .collect();
    (sql, columns)
}

/// Per `group` (its column, title and session column) and week.
fn by_week(minutes: &str, group: (&str, &str, &str)) -> (String, Vec<OutputColumn>) {
    let (name, title, from) = group;
    let sql = format!(
        "SELECT week, {name}, sessions, CAST(available AS BIGINT) AS available_minutes, {touch} \
         FROM ( \
             SELECT CAST(date_trunc('week', CAST(date AS TIMESTAMP)) AS DATE) AS week, {from} AS {name}, \
                    count(*) AS sessions, sum(cases) AS cases, sum(available_minutes) AS available, \
                    sum(touch_capped) AS capped, sum(touch_uncapped) AS uncapped \
             FROM ({minutes}) \
             GROUP BY 1, 2 \
         ) \
         ORDER BY week, {name}",
        // The week's ratio is of its sums, not an average of its sessions'.
        touch = touch_select("capped", "uncapped", "available"),
    );
    let columns = vec![
        column(
            "week",
            "Week beginning",
            Source::derived(&[("theatre_session", "date")]),
        ),
        column(name, title, Source::column("theatre_session", from)),
        column("sessions", "Sessions", Source::count("theatre_session")),
        column("available_minutes", "Minutes available", available_source()),
    ]
    .into_iter()
    .chain(touch_columns())
    .collect();
    (sql, columns)
}

#[cfg(test)]
mod tests;
