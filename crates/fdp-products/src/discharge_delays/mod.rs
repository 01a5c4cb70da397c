//! Discharge delays: patients medically optimised for discharge and still
//! in a bed, by ward and one by one, as at a day. Care coordination's view
//! of where delayed discharges are building up, for the discharge hub
//! (direct care), the site team (operations) and the ICB's planners.

use async_trait::async_trait;
use chrono::Utc;
use fdp_govern::{GovernedSession, Purpose};

use crate::platform::{
    column,
    Input,
    Answer, Chart, Manifest, ParamKind, ParamSpec, ParamValue, Params, Priority, Product,
    ProductError, Reads, Source, ViewSpec, Offers,
};

/// The product.
#[derive(Default)]
pub struct DischargeDelays;

fn as_at_param() -> ParamSpec {
    ParamSpec {
        name: "as_at".into(),
        kind: ParamKind::Date,
        required: false,
        description: "The day the delays are counted to (default today, UTC)".into(),
    }
}

/// The patients delayed as at `as_at` (a SQL date literal): medically
/// optimised on or before it, not discharged by it, and in a ward then.
fn delayed(as_at: &str) -> String {
    format!(
        "SELECT r.admission_id, r.patient_id, s.ward_id, r.medically_optimised_date, r.discharge_pathway, \
                date_part('day', CAST({as_at} AS TIMESTAMP) - CAST(r.medically_optimised_date AS TIMESTAMP)) AS days_delayed \
         FROM discharge_readiness r \
         JOIN admission a ON a.admission_id = r.admission_id \
         JOIN ward_stay s ON s.admission_id = r.admission_id \
         WHERE r.medically_optimised \
           AND r.medically_optimised_date <= {as_at} \
           AND (a.discharge_timestamp IS NULL OR a.discharge_timestamp > CAST({as_at} AS TIMESTAMP)) \
           AND s.start_timestamp <= CAST({as_at} AS TIMESTAMP) \
           AND (s.end_timestamp IS NULL OR s.end_timestamp > CAST({as_at} AS TIMESTAMP))"
    )
}

#[async_trait]
impl Product for DischargeDelays {
    fn manifest(&self) -> Manifest {
        Manifest {
            id: "discharge-delays".into(),
            title: "Discharge delays".into(),
            version: "1.0.0".into(),
            priority: Priority::CareCoordination,
            description: "Patients medically optimised for discharge and still in a bed: how many on each ward, for how long, and who".into(),
            publisher: None,
            purposes: vec![Purpose::DirectCare, Purpose::Operations, Purpose::Planning],
            reads: vec![
                Reads::new(
                    "discharge_readiness",
                    &["admission_id", "patient_id", "medically_optimised", "medically_optimised_date", "discharge_pathway"],
                ),
                Reads::new("admission", &["admission_id", "discharge_timestamp"]),
                Reads::new("ward_stay", &["admission_id", "ward_id", "start_timestamp", "end_timestamp"]),
            ],
            views: vec![
                ViewSpec {
                    name: "by-ward".into(),
                    title: "Delayed discharges by ward".into(),
                    description: "For each ward, the patients medically optimised and still there, and the mean days since".into(),
                    params: vec![as_at_param()],
                    input: Input::Tables,
                    chart: Some(Chart::bars("ward_id", "patients")),
                    as_of: None,
                    needs: vec![],
                },
                ViewSpec {
                    name: "patients".into(),
                    title: "Delayed discharges, patient by patient".into(),
                    description: "Each patient medically optimised and still in a bed, the longest delayed first".into(),
                    params: vec![as_at_param()],
                    input: Input::Tables,
                    chart: None,
                    as_of: None,
                    needs: vec![],
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
        let as_at = params
            .get("as_at")
            .cloned()
            .unwrap_or_else(|| ParamValue::Date(Utc::now().date_naive()))
            .sql_literal();
        let delayed = delayed(&as_at);
        let days = Source::derived(&[("discharge_readiness", "medically_optimised_date")]);
        let (sql, columns) = match view {
            "by-ward" => (
                format!(
                    "SELECT ward_id, count(*) AS patients, round(avg(days_delayed), 1) AS mean_days_delayed \
                     FROM ({delayed}) d GROUP BY ward_id ORDER BY patients DESC, ward_id"
                ),
                vec![
                    column("ward_id", "Ward", Source::column("ward_stay", "ward_id")),
                    column("patients", "Patients", Source::count("discharge_readiness")),
                    column("mean_days_delayed", "Mean days delayed", days),
                ],
            ),
            "patients" => (
                format!(
                    "SELECT admission_id, patient_id, ward_id, medically_optimised_date, discharge_pathway, days_delayed \
                     FROM ({delayed}) d ORDER BY days_delayed DESC, admission_id"
                ),
                vec![
                    column("admission_id", "Admission", Source::column("discharge_readiness", "admission_id")),
                    column("patient_id", "Patient", Source::column("discharge_readiness", "patient_id")),
                    column("ward_id", "Ward", Source::column("ward_stay", "ward_id")),
                    column(
                        "medically_optimised_date",
                        "Medically optimised",
                        Source::column("discharge_readiness", "medically_optimised_date"),
                    ),
                    column(
                        "discharge_pathway",
                        "Pathway",
                        Source::column("discharge_readiness", "discharge_pathway"),
                    ),
                    column("days_delayed", "Days delayed", days),
                ],
            ),
            other => {
                return Err(ProductError::UnknownView {
                    product: "discharge-delays".into(),
                    view: other.into(),
                })
            }
        };
        let result = session.query(&sql).await?;
        Answer::from_query(&result, columns)
    }
}

#[cfg(test)]
mod tests;
