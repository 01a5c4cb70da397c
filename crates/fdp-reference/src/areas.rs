//! Each patient's area of residence and deprivation decile, derived from
//! their postcode and the reference tables.
//!
//! The derivation reads the patient table whole, as the instance's own
//! processing (a derivation session, audited), and writes `patient_area`:
//! one row per patient with their 2021 LSOA, local authority, sub-ICB
//! location, ICB and IMD decile, and the area's status when there is none.
//! Every principal then reads `patient_area` through the policy like any
//! other table. That is how a planning analyst can have a patient's decile
//! while their postcode reaches them generalised: the decile was derived
//! before the postcode was, and the full postcode never leaves here.
//!
//! Vintages are never mixed silently. The postcode directory places each
//! postcode in an LSOA of one vintage; the chosen edition of the Indices of
//! Deprivation ranks LSOAs of one vintage (IoD2019: 2011 LSOAs; IoD2025:
//! 2021 LSOAs). Where they are the same, the join is on code and vintage.
//! Where they differ, the area is carried across by the ONS lookup between
//! the vintages: an area made by splitting one (or left unchanged) has its
//! one predecessor's decile; an area made by merging or redrawing several
//! has their decile only where they all agree, and otherwise none (its
//! status says so). There is no official rule for the last case, and
//! weighting by population would need the 2011 LSOA populations, which the
//! reference data does not hold.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use fdp_govern::{Governance, GovernedSession};
use fdp_model::Model;
use fdp_store::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use fdp_store::arrow::compute::cast;
use fdp_store::arrow::datatypes::{Field, Schema, SchemaRef};
use fdp_store::tables::{self, Layer, Lineage};
use fdp_store::StoredTables;

use crate::ReferenceError;

/// The derived table.
pub const TABLE: &str = "patient_area";
/// The part of it this derivation writes.
const WRITER: &str = "derived-areas";
const APP_ID: &str = "openfdp-patient-areas";

/// The tables the derivation reads.
const READS: &[&str] = &[
    "patient",
    "postcode_lookup",
    "area_deprivation",
    "lsoa_change",
];

/// An edition of the English Indices of Deprivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImdEdition {
    /// IoD2019, on 2011 LSOAs.
    IoD2019,
    /// IoD2025, on 2021 LSOAs.
    #[default]
    IoD2025,
}

impl ImdEdition {
    pub fn as_str(self) -> &'static str {
        match self {
            ImdEdition::IoD2019 => "IoD2019",
            ImdEdition::IoD2025 => "IoD2025",
        }
    }

    /// The LSOA vintage the edition ranks.
    pub fn lsoa_vintage(self) -> &'static str {
        match self {
            ImdEdition::IoD2019 => "2011",
            ImdEdition::IoD2025 => "2021",
        }
    }
}

impl std::str::FromStr for ImdEdition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "iod2019" | "imd2019" | "2019" => Ok(ImdEdition::IoD2019),
            "iod2025" | "imd2025" | "2025" => Ok(ImdEdition::IoD2025),
            _ => Err(format!(
                "{s:?} is not an edition of the Indices of Deprivation: say IoD2019 or IoD2025"
            )),
        }
    }
}

impl std::fmt::Display for ImdEdition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to derive areas with.
#[derive(Debug, Clone, Default)]
pub struct AreaOptions {
    pub imd_edition: ImdEdition,
    /// The postcode directory, where more than one is loaded.
    pub postcode_directory: Option<String>,
    /// Recorded with the table version written.
    pub run_id: Option<String>,
}

/// What a derivation found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Derived {
    pub patients: u64,
    /// Patients by area status (`matched`, `no postcode`, ...).
    pub by_status: BTreeMap<String, u64>,
    pub postcode_directory: String,
    /// The directory's LSOA vintage.
    pub lsoa_vintage: String,
    pub imd_edition: String,
    /// How the edition reached the directory's LSOAs.
    pub crosswalk: String,
}

impl Derived {
    pub fn count(&self, status: &str) -> u64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }
}

/// Derive every patient's area and write `patient_area` in one commit.
pub async fn derive(
    data_dir: &Path,
    governance: &Governance,
    tables: &StoredTables,
    options: &AreaOptions,
) -> Result<Derived, ReferenceError> {
    let session = governance
        .derivation_session(tables, "patient-areas", READS)
        .await?;
    let (directory, vintage) = directory(&session, options).await?;
    let edition = options.imd_edition;
    let (deprivation, crosswalk) = deprivation_by_lsoa(&session, edition, &vintage).await?;
    let sql = format!(
        "WITH dep AS ({deprivation}),
         pl AS (
           SELECT regexp_replace(upper(postcode), '[^A-Z0-9]', '', 'g') AS pc,
                  lsoa_code, lsoa_vintage, local_authority_code, sub_icb_location_code, icb_code
           FROM postcode_lookup WHERE postcode_directory = {dir}),
         p AS (
           SELECT person_id,
                  max(nullif(regexp_replace(upper(coalesce(postcode, '')), '[^A-Z0-9]', '', 'g'), '')) AS pc
           FROM patient WHERE person_id IS NOT NULL GROUP BY person_id)
         SELECT p.person_id AS patient_id,
                CASE WHEN p.pc IS NULL THEN 'no postcode'
                     WHEN pl.pc IS NULL THEN 'postcode not found'
                     WHEN dep.imd_decile IS NULL THEN 'no deprivation for this area'
                     ELSE 'matched' END AS area_status,
                CASE WHEN pl.pc IS NOT NULL THEN {dir} END AS postcode_directory,
                pl.lsoa_code, pl.lsoa_vintage, pl.local_authority_code,
                pl.sub_icb_location_code, pl.icb_code,
                CASE WHEN dep.imd_decile IS NOT NULL THEN {ed} END AS imd_edition,
                dep.imd_decile,
                now() AS derived_timestamp
         FROM p LEFT JOIN pl ON p.pc = pl.pc
                LEFT JOIN dep ON dep.lsoa = pl.lsoa_code",
        dir = quote(&directory),
        ed = quote(edition.as_str()),
    );
    let answer = session.query(&sql).await?;
    let object = Model::canonical()
        .object_type_by_table(TABLE)
        .expect("patient_area is in the model");
    let schema: SchemaRef = Arc::new(Schema::new(
        object
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(Default::default()))
            .collect::<Vec<Field>>(),
    ));
    let mut derived = Derived {
        postcode_directory: directory,
        lsoa_vintage: vintage,
        imd_edition: edition.as_str().to_string(),
        crosswalk,
        ..Derived::default()
    };
    let mut batches = Vec::with_capacity(answer.batches.len());
    for b in &answer.batches {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            let c = b.column_by_name(f.name()).ok_or_else(|| {
                ReferenceError::Derivation(format!("the derivation did not give {}", f.name()))
            })?;
            columns.push(
                cast(c, f.data_type())
                    .map_err(|e| ReferenceError::Derivation(format!("{}: {e}", f.name())))?,
            );
        }
        let status = columns[schema.index_of("area_status").expect("in the model")].clone();
        let status = cast(&status, &fdp_store::arrow::datatypes::DataType::Utf8)
            .map_err(|e| ReferenceError::Derivation(e.to_string()))?;
        for s in status.as_string::<i32>().iter().flatten() {
            *derived.by_status.entry(s.to_string()).or_default() += 1;
        }
        derived.patients += b.num_rows() as u64;
        batches.push(
            RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| ReferenceError::Derivation(e.to_string()))?,
        );
    }
    let part = tables::part_name(TABLE, WRITER);
    let path = tables::table_location(data_dir, Layer::Canonical, &part)?;
    let table = tables::open_or_create(&path, schema.clone()).await?;
    let lineage = Lineage {
        transform: format!(
            "derive:patient-areas ({} via {})",
            edition, derived.crosswalk
        ),
        run: options.run_id.clone(),
        ..Lineage::default()
    };
    tables::replace(
        table,
        batches,
        tables::commit_properties(&lineage, APP_ID, 0),
    )
    .await?;
    tracing::info!(
        patients = derived.patients,
        matched = derived.count("matched"),
        "patient areas derived"
    );
    Ok(derived)
}

/// The postcode directory to use and its LSOA vintage.
async fn directory(
    session: &GovernedSession,
    options: &AreaOptions,
) -> Result<(String, String), ReferenceError> {
    let found = session
        .query(
            "SELECT postcode_directory, lsoa_vintage, count(*) AS postcodes
             FROM postcode_lookup GROUP BY postcode_directory, lsoa_vintage
             ORDER BY postcode_directory, lsoa_vintage",
        )
        .await?;
    let mut dirs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in &found.batches {
        let d = text(b, 0)?;
        let v = text(b, 1)?;
        for i in 0..b.num_rows() {
            if let (true, true) = (d.is_valid(i), v.is_valid(i)) {
                dirs.entry(d.value(i).to_string())
                    .or_default()
                    .push(v.value(i).to_string());
            }
        }
    }
    let named: Vec<String> = dirs.keys().cloned().collect();
    let chosen = match (&options.postcode_directory, named.as_slice()) {
        (_, []) => {
            return Err(ReferenceError::Derivation(
                "no postcode directory is loaded, so no patient can be placed in an area: \
                 load the reference data first (fdp reference load <folder>)"
                    .into(),
            ))
        }
        (Some(d), _) if dirs.contains_key(d) => d.clone(),
        (Some(d), _) => {
            return Err(ReferenceError::Derivation(format!(
                "the postcode directory {d:?} is not loaded; loaded: {}",
                named.join(", ")
            )))
        }
        (None, [one]) => one.clone(),
        (None, _) => {
            return Err(ReferenceError::Derivation(format!(
                "several postcode directories are loaded ({}): say which to use",
                named.join(", ")
            )))
        }
    };
    let vintages = &dirs[&chosen];
    match vintages.as_slice() {
        [one] => Ok((chosen, one.clone())),
        _ => Err(ReferenceError::Derivation(format!(
            "the postcode directory {chosen:?} places postcodes in LSOAs of several vintages ({}); \
             one directory must use one vintage",
            vintages.join(", ")
        ))),
    }
}

/// SQL giving `(lsoa, imd_decile)` for LSOAs of `vintage` under `edition`,
/// and how the two vintages were bridged.
async fn deprivation_by_lsoa(
    session: &GovernedSession,
    edition: ImdEdition,
    vintage: &str,
) -> Result<(String, String), ReferenceError> {
    let ed = quote(edition.as_str());
    let own = edition.lsoa_vintage();
    let held = count(
        session,
        &format!(
            "SELECT count(*) FROM area_deprivation WHERE imd_edition = {ed} AND lsoa_vintage = {}",
            quote(own)
        ),
    )
    .await?;
    if held == 0 {
        return Err(ReferenceError::Derivation(format!(
            "{edition} is not loaded (it ranks {own} LSOAs): load the reference data that holds it, \
             or derive with the edition that is loaded"
        )));
    }
    let mixed = count(
        session,
        &format!(
            "SELECT count(*) FROM area_deprivation WHERE imd_edition = {ed} AND lsoa_vintage <> {}",
            quote(own)
        ),
    )
    .await?;
    if mixed > 0 {
        return Err(ReferenceError::Derivation(format!(
            "{mixed} rows of {edition} name LSOAs of a vintage other than {own}: \
             the edition's table is wrong and no decile can be trusted"
        )));
    }
    let index = format!(
        "SELECT lsoa_code, imd_decile FROM area_deprivation \
         WHERE imd_edition = {ed} AND lsoa_vintage = {}",
        quote(own)
    );
    if own == vintage {
        return Ok((
            format!("SELECT lsoa_code AS lsoa, imd_decile FROM ({index}) i"),
            format!("{own} LSOAs, same vintage"),
        ));
    }
    let changes = count(session, "SELECT count(*) FROM lsoa_change").await?;
    if changes == 0 {
        return Err(ReferenceError::Derivation(format!(
            "{edition} ranks {own} LSOAs and the postcode directory places postcodes in {vintage} \
             LSOAs; the ONS lookup between them (lsoa_change) is needed and is not loaded"
        )));
    }
    let (to, from) = match vintage {
        "2021" => ("lsoa2021_code", "lsoa2011_code"),
        "2011" => ("lsoa2011_code", "lsoa2021_code"),
        other => {
            return Err(ReferenceError::Derivation(format!(
                "no lookup joins {other} LSOAs to {own} ones"
            )))
        }
    };
    // An area takes its predecessors' decile where they all have one and
    // it is the same; otherwise none.
    Ok((
        format!(
            "SELECT c.{to} AS lsoa,
                    CASE WHEN count(i.imd_decile) = count(*) AND min(i.imd_decile) = max(i.imd_decile)
                         THEN min(i.imd_decile) END AS imd_decile
             FROM lsoa_change c LEFT JOIN ({index}) i ON i.lsoa_code = c.{from}
             GROUP BY c.{to}"
        ),
        format!("{vintage} LSOAs through the ONS {own}-{vintage} lookup"),
    ))
}

async fn count(session: &GovernedSession, sql: &str) -> Result<i64, ReferenceError> {
    let r = session.query(sql).await?;
    let b = r
        .batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| ReferenceError::Derivation(format!("no answer to {sql}")))?;
    let c = cast(b.column(0), &fdp_store::arrow::datatypes::DataType::Int64)
        .map_err(|e| ReferenceError::Derivation(e.to_string()))?;
    Ok(c.as_primitive::<fdp_store::arrow::datatypes::Int64Type>()
        .value(0))
}

fn text(b: &RecordBatch, i: usize) -> Result<fdp_store::arrow::array::StringArray, ReferenceError> {
    let c = cast(b.column(i), &fdp_store::arrow::datatypes::DataType::Utf8)
        .map_err(|e| ReferenceError::Derivation(e.to_string()))?;
    Ok(c.as_string::<i32>().clone())
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
