//! Long stays: patients in hospital 7, 14 and 21 days or more ("stranded"
//! and "super-stranded"), by ward, at an instant. The length of stay runs
//! from admission, whichever ward the patient is on now.

use async_trait::async_trait;
use chrono::Utc;
use fdp_govern::{GovernedSession, Purpose};

use crate::platform::{
    Input,
    Answer, Chart, Manifest, OutputColumn, ParamKind, ParamSpec, ParamValue, Params, Priority, Product,
    ProductError, Reads, Source, ViewSpec, Offers,
};

/// The product.
#[derive(Default)]
pub struct LongStays;

#[async_trait]
impl Product for LongStays {
    fn manifest(&self) -> Manifest {
        Manifest {
            id: "long-stays".into(),
            title: "Long stays".into(),
            version: "1.0.0".into(),
            priority: Priority::CareCoordination,
            description: "Patients in hospital 7, 14 and 21 days or more, by the ward they are on".into(),
            publisher: None,
            purposes: vec![Purpose::DirectCare, Purpose::Operations, Purpose::Planning],
            reads: vec![
                Reads::new("admission", &["admission_id", "admission_timestamp", "discharge_timestamp"]),
                Reads::new("ward_stay", &["admission_id", "ward_id", "start_timestamp", "end_timestamp"]),
            ],
            views: vec![ViewSpec {
                name: "by-ward".into(),
                title: "Long stays by ward".into(),
                description: "For each ward, the patients on it and how many have been in hospital 7, 14 and 21 days or more".into(),
                params: vec![ParamSpec {
                    name: "at".into(),
                    kind: ParamKind::Timestamp,
                    required: false,
                    description: "The instant counted at (default now)".into(),
                }],
                input: Input::Tables,
                chart: Some(Chart::bars("ward_id", "stay_21_plus")),
                as_of: None,
                needs: vec![],
            }],
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
        if view != "by-ward" {
            return Err(ProductError::UnknownView {
                product: "long-stays".into(),
                view: view.into(),
            });
        }
        let at = params
            .get("at")
            .cloned()
            .unwrap_or_else(|| ParamValue::Timestamp(Utc::now()))
            .sql_literal();
        let sql = format!(
            "SELECT s.ward_id, count(*) AS in_hospital, \
                    count(*) FILTER (WHERE a.admission_timestamp <= {at} - INTERVAL '7 days') AS stay_7_plus, \
                    count(*) FILTER (WHERE a.admission_timestamp <= {at} - INTERVAL '14 days') AS stay_14_plus, \
                    count(*) FILTER (WHERE a.admission_timestamp <= {at} - INTERVAL '21 days') AS stay_21_plus \
             FROM ward_stay s JOIN admission a ON a.admission_id = s.admission_id \
             WHERE a.admission_timestamp <= {at} \
               AND (a.discharge_timestamp IS NULL OR a.discharge_timestamp > {at}) \
               AND s.start_timestamp <= {at} \
               AND (s.end_timestamp IS NULL OR s.end_timestamp > {at}) \
             GROUP BY s.ward_id ORDER BY stay_21_plus DESC, s.ward_id"
        );
        let stay = |name: &str, title: &str| OutputColumn {
            name: name.into(),
            title: title.into(),
            source: Source::count("admission"),
        };
        let columns = vec![
            OutputColumn {
                name: "ward_id".into(),
                title: "Ward".into(),
                source: Source::column("ward_stay", "ward_id"),
            },
            stay("in_hospital", "Patients"),
            stay("stay_7_plus", "7+ days"),
            stay("stay_14_plus", "14+ days"),
            stay("stay_21_plus", "21+ days"),
        ];
        let result = session.query(&sql).await?;
        Answer::from_query(&result, columns)
    }
}

#[cfg(test)]
mod tests;
