//! `fdp synth population`: a synthetic ICB population written into an
//! instance's canonical tables, built on the reference data's real areas.
//!
//! The areas, postcodes, practices and ethnic mix are read from the UK
//! reference folder; the records' codes from the shipped cohorts' value
//! sets, so the cohorts and the population speak the same codes. The
//! planted truth goes to a CSV beside, never into the instance.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use chrono::NaiveDate;
use fdp_store::arrow::array::{
    ArrayRef, Date32Builder, Int32Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use fdp_store::arrow::datatypes::{Field, Schema, SchemaRef};
use fdp_store::tables::{self, Layer, Lineage};
use fdp_synth::population::{
    AreaInputs, Codes, LsoaInput, Population, PostcodeInput, PracticeInput, RecordKind, Resident,
};

/// The writer's name: each table's part is `<table>@synth-population`.
const WRITER: &str = "synth-population";

/// Rows of a CSV file by header name. The reference files are small.
fn csv(path: &Path) -> Result<Vec<HashMap<String, String>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let data = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    let mut records = fdp_ingest::extract::csv::Records::new(data, b",", 1);
    let mut fields = Vec::new();
    let text = |f: &[u8]| String::from_utf8_lossy(f).trim().to_string();
    let Some(_) = records.next_into(&mut fields) else {
        bail!("{} is empty", path.display());
    };
    let header: Vec<String> = fields.iter().map(|f| text(f.as_ref())).collect();
    let mut rows = Vec::new();
    while records.next_into(&mut fields).is_some() {
        if fields.len() == 1 && fields[0].is_empty() {
            continue;
        }
        rows.push(
            header
                .iter()
                .cloned()
                .zip(fields.iter().map(|f| text(f.as_ref())))
                .collect(),
        );
    }
    Ok(rows)
}

fn field<'a>(row: &'a HashMap<String, String>, name: &str, file: &str) -> Result<&'a str> {
    row.get(name)
        .map(String::as_str)
        .ok_or_else(|| anyhow!("{file} has no column {name:?}"))
}

/// The areas of sub-ICB location `sub_icb` from the UK reference folder.
pub fn read_areas(reference: &Path, sub_icb: &str) -> Result<AreaInputs> {
    let postcodes_file = "postcodes/trafford_postcodes_onspd_feb2025_with_icb.csv";
    let mut lsoa_index: BTreeMap<String, usize> = BTreeMap::new();
    let mut postcode_rows = Vec::new();
    for row in csv(&reference.join(postcodes_file))? {
        if field(&row, "sicbl24_code_nhs", postcodes_file)? != sub_icb {
            continue;
        }
        let lat: f64 = field(&row, "lat", postcodes_file)?.parse().unwrap_or(0.0);
        let lon: f64 = field(&row, "lon", postcodes_file)?.parse().unwrap_or(0.0);
        postcode_rows.push((
            field(&row, "postcode", postcodes_file)?.to_string(),
            field(&row, "lsoa_code", postcodes_file)?.to_string(),
            (lat, lon),
        ));
    }
    if postcode_rows.is_empty() {
        bail!("no postcode in {postcodes_file} is in sub-ICB location {sub_icb}");
    }
    let deciles: HashMap<String, u8> = csv(&reference.join("imd2025/imd2025_lsoa21_england.csv"))?
        .into_iter()
        .filter_map(|r| {
            Some((
                r.get("lsoa21_code")?.clone(),
                r.get("IMD_decile")?.parse().ok()?,
            ))
        })
        .collect();
    let population_file = "population/trafford_mid-year_2024_population_estimates_lsoa.csv";
    let mut residents: HashMap<String, [[u32; 91]; 2]> = HashMap::new();
    for row in csv(&reference.join(population_file))? {
        let sex = match field(&row, "sex", population_file)? {
            "Females" => 0,
            "Males" => 1,
            _ => continue,
        };
        let entry = residents
            .entry(field(&row, "area_code", population_file)?.to_string())
            .or_insert([[0; 91]; 2]);
        for (age, slot) in entry[sex].iter_mut().enumerate() {
            let col = if age == 90 {
                "90+".to_string()
            } else {
                age.to_string()
            };
            *slot = field(&row, &col, population_file)?.parse().unwrap_or(0);
        }
    }
    let crosswalk_file = "ethnicity/census2021_19cat_to_nhs_ethnic_category_crosswalk_derived.csv";
    let ethnic_groups: Vec<(String, String)> = csv(&reference.join(crosswalk_file))?
        .iter()
        .map(|r| {
            Ok((
                field(r, "census2021_ethnic_group", crosswalk_file)?.to_string(),
                field(r, "nhs_ethnic_category_code", crosswalk_file)?.to_string(),
            ))
        })
        .collect::<Result<_>>()?;
    let ethnicity_file = "ethnicity/census2021_ethnic_group_19cat_lsoa21_trafford.csv";
    let mut ethnicity: HashMap<String, Vec<u32>> = HashMap::new();
    for row in csv(&reference.join(ethnicity_file))? {
        let group = field(&row, "ethnic_group", ethnicity_file)?;
        let Some(g) = ethnic_groups.iter().position(|(name, _)| name == group) else {
            bail!("{ethnicity_file}: ethnic group {group:?} is not in the crosswalk");
        };
        let counts = ethnicity
            .entry(field(&row, "area_code", ethnicity_file)?.to_string())
            .or_insert_with(|| vec![0; ethnic_groups.len()]);
        counts[g] = field(&row, "value", ethnicity_file)?.parse().unwrap_or(0);
    }
    let mut lsoas = Vec::new();
    for (_, code, _) in &postcode_rows {
        if lsoa_index.contains_key(code) {
            continue;
        }
        let (Some(r), Some(d)) = (residents.get(code), deciles.get(code)) else {
            bail!(
                "LSOA {code} has no population estimate or IMD 2025 decile in the reference folder"
            );
        };
        lsoa_index.insert(code.clone(), lsoas.len());
        lsoas.push(LsoaInput {
            code: code.clone(),
            imd_decile: *d,
            residents: *r,
            ethnicity: ethnicity
                .get(code)
                .cloned()
                .unwrap_or_else(|| vec![0; ethnic_groups.len()]),
        });
    }
    let postcodes: Vec<PostcodeInput> = postcode_rows
        .into_iter()
        .map(|(postcode, lsoa, at)| PostcodeInput {
            postcode,
            lsoa: lsoa_index[&lsoa],
            at,
        })
        .collect();
    let where_is: HashMap<String, (f64, f64)> = postcodes
        .iter()
        .map(|p| (p.postcode.replace(' ', ""), p.at))
        .collect();
    let practices_file = "gp_practices/gp_practices_with_pcn.csv";
    let mut practices = Vec::new();
    for row in csv(&reference.join(practices_file))? {
        if field(&row, "sub_icb_location_code", practices_file)? != sub_icb
            || field(&row, "status_code", practices_file)? != "A"
        {
            continue;
        }
        let postcode = field(&row, "practice_postcode", practices_file)?.replace(' ', "");
        let Some(&at) = where_is.get(&postcode) else {
            tracing::warn!(practice = %field(&row, "practice_code", practices_file)?, "practice premises not in the postcode directory: left out");
            continue;
        };
        let pcn = field(&row, "pcn_code", practices_file)?;
        practices.push(PracticeInput {
            code: field(&row, "practice_code", practices_file)?.to_string(),
            pcn: (!pcn.is_empty()).then(|| pcn.to_string()),
            at,
        });
    }
    Ok(AreaInputs {
        lsoas,
        postcodes,
        practices,
        ethnic_groups,
    })
}

/// The records' codes from the shipped cohorts' value sets.
pub fn read_codes(cohorts: &Path) -> Result<Codes> {
    let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in
        std::fs::read_dir(cohorts).with_context(|| format!("reading {}", cohorts.display()))?
    {
        let path = entry?.path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let cohort =
            fdp_cohort::Cohort::from_toml(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        for (name, vs) in cohort.value_sets {
            sets.entry(name).or_insert(vs.codes);
        }
    }
    let get = |name: &str| -> Result<Vec<String>> {
        sets.get(name).cloned().ok_or_else(|| {
            anyhow!(
                "no cohort in {} declares the value set {name}, which the population's records are coded from",
                cohorts.display()
            )
        })
    };
    let mut flu_risk = Vec::new();
    for name in FLU_RISK_SETS {
        flu_risk.extend(get(name)?);
    }
    Ok(Codes {
        diabetes: get("DM_COD")?,
        diabetes_resolved: get("DMRES_COD")?,
        care_processes: CARE_PROCESS_SETS
            .iter()
            .map(|(set, name)| Ok((name.to_string(), get(set)?)))
            .collect::<Result<_>>()?,
        flu_risk,
        pregnancy: get("PREG_COD")?,
        delivery: get("PREGDEL_COD")?,
        flu_vaccination: get("FLUVAX_COD")?,
        mmr_vaccination: get("MMR_COD")?,
    })
}

/// The care processes' value sets and the names the generator knows them by.
pub const CARE_PROCESS_SETS: &[(&str, &str)] = &[
    ("BMI_COD", "BMI"),
    ("BP_COD", "blood pressure"),
    ("HBA1C_COD", "HbA1c"),
    ("CHOL_COD", "cholesterol"),
    ("SMOK_COD", "smoking status"),
    ("FOOT_COD", "foot examination"),
    ("UACR_COD", "urine albumin"),
    ("CRE_COD", "serum creatinine"),
];

/// The flu cohort's clinical risk groups besides diabetes.
pub const FLU_RISK_SETS: &[&str] = &["FLU_RISK_COD"];

struct Tables {
    patient: PatientRows,
    diagnosis: CodedRows,
    observation: CodedRows,
    vaccination: CodedRows,
}

#[derive(Default)]
struct PatientRows {
    person_id: StringBuilder,
    nhs_number: StringBuilder,
    sex: StringBuilder,
    date_of_birth: Date32Builder,
    postcode: StringBuilder,
    registered_gp: StringBuilder,
    ethnic_category_code: StringBuilder,
    date_of_death: Date32Builder,
    rows: usize,
}

#[derive(Default)]
struct CodedRows {
    id: StringBuilder,
    patient_id: StringBuilder,
    code: StringBuilder,
    date: Date32Builder,
    dose: Int32Builder,
    site: StringBuilder,
    rows: usize,
}

fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch")).num_days() as i32
}

/// A batch of `object`'s full schema with the columns given, the rest null.
fn batch(object: &str, given: Vec<(&str, ArrayRef)>) -> Result<(SchemaRef, RecordBatch)> {
    let ot = fdp_model::Model::canonical()
        .object_type(object)
        .ok_or_else(|| anyhow!("{object} is not in the model"))?;
    let schema: SchemaRef = Arc::new(Schema::new(
        ot.arrow_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(Default::default()))
            .collect::<Vec<Field>>(),
    ));
    let rows = given.first().map(|(_, a)| a.len()).unwrap_or(0);
    let mut given: HashMap<&str, ArrayRef> = given.into_iter().collect();
    let columns = schema
        .fields()
        .iter()
        .map(|f| -> Result<ArrayRef> {
            match given.remove(f.name().as_str()) {
                Some(a) if a.data_type() == f.data_type() => Ok(a),
                Some(a) => Ok(fdp_store::arrow::compute::cast(&a, f.data_type())?),
                None => Ok(fdp_store::arrow::array::new_null_array(f.data_type(), rows)),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(left) = given.keys().next() {
        bail!("{object} has no column {left}");
    }
    Ok((schema.clone(), RecordBatch::try_new(schema, columns)?))
}

impl Tables {
    fn new() -> Tables {
        Tables {
            patient: PatientRows::default(),
            diagnosis: CodedRows::default(),
            observation: CodedRows::default(),
            vaccination: CodedRows::default(),
        }
    }

    fn add(&mut self, population: &Population, r: &Resident) {
        let p = &mut self.patient;
        p.person_id.append_value(r.person_id());
        p.nhs_number.append_value(nhs_number(r.id));
        p.sex.append_value(match r.sex {
            fdp_synth::people::Sex::Female => "female",
            fdp_synth::people::Sex::Male => "male",
            fdp_synth::people::Sex::Unknown => "unknown",
        });
        p.date_of_birth.append_value(days(r.date_of_birth));
        p.postcode.append_option(r.postcode.as_deref());
        p.registered_gp.append_option(
            r.practice
                .map(|i| population.inputs().practices[i].code.as_str()),
        );
        p.ethnic_category_code.append_value(&r.ethnic_category_code);
        p.date_of_death.append_option(r.date_of_death.map(days));
        p.rows += 1;
    }

    fn record(
        &mut self,
        population: &Population,
        residents: &HashMap<u64, &Resident>,
        rec: &fdp_synth::population::Record,
    ) {
        let rows = match rec.kind {
            RecordKind::Diagnosis => &mut self.diagnosis,
            RecordKind::Observation => &mut self.observation,
            RecordKind::Vaccination => &mut self.vaccination,
        };
        rows.rows += 1;
        rows.id
            .append_value(format!("PH{}-{}-{}", rec.patient, rows.rows, rec.code));
        let r = residents[&rec.patient];
        rows.patient_id.append_value(r.person_id());
        rows.code.append_value(&rec.code);
        rows.date.append_value(days(rec.date));
        rows.dose.append_option(rec.dose.map(i32::from));
        rows.site.append_option(
            r.practice
                .map(|i| population.inputs().practices[i].code.as_str()),
        );
    }

    /// Take the rows built so far as batches of each table.
    fn finish(&mut self) -> Result<Vec<(&'static str, &'static str, SchemaRef, RecordBatch)>> {
        let mut out = Vec::new();
        let p = &mut self.patient;
        if p.rows > 0 {
            let (s, b) = batch(
                "Patient",
                vec![
                    ("person_id", Arc::new(p.person_id.finish()) as ArrayRef),
                    ("nhs_number", Arc::new(p.nhs_number.finish())),
                    ("sex", Arc::new(p.sex.finish())),
                    ("date_of_birth", Arc::new(p.date_of_birth.finish())),
                    ("postcode", Arc::new(p.postcode.finish())),
                    ("registered_gp", Arc::new(p.registered_gp.finish())),
                    (
                        "ethnic_category_code",
                        Arc::new(p.ethnic_category_code.finish()),
                    ),
                    ("date_of_death", Arc::new(p.date_of_death.finish())),
                ],
            )?;
            p.rows = 0;
            out.push(("patient", "Patient", s, b));
        }
        let micros = |d: &mut Date32Builder| -> Result<ArrayRef> {
            let dates = d.finish();
            let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            for v in dates.iter() {
                ts.append_option(v.map(|d| i64::from(d) * 86_400_000_000));
            }
            Ok(Arc::new(ts.finish()))
        };
        let d = &mut self.diagnosis;
        if d.rows > 0 {
            let (s, b) = batch(
                "PatientDiagnosis",
                vec![
                    ("diagnosis_id", Arc::new(d.id.finish()) as ArrayRef),
                    ("patient_id", Arc::new(d.patient_id.finish())),
                    ("diagnosis_snomed_ct_code", Arc::new(d.code.finish())),
                    ("diagnosis_start_date", Arc::new(d.date.finish())),
                ],
            )?;
            let _ = d.dose.finish();
            let _ = d.site.finish();
            d.rows = 0;
            out.push(("patient_diagnosis", "PatientDiagnosis", s, b));
        }
        let o = &mut self.observation;
        if o.rows > 0 {
            let n = o.rows;
            let (s, b) = batch(
                "Observation",
                vec![
                    ("observation_id", Arc::new(o.id.finish()) as ArrayRef),
                    ("patient_id", Arc::new(o.patient_id.finish())),
                    (
                        "status",
                        Arc::new(fdp_store::arrow::array::StringArray::from(vec!["final"; n])),
                    ),
                    ("code", Arc::new(o.code.finish())),
                    (
                        "code_system",
                        Arc::new(fdp_store::arrow::array::StringArray::from(
                            vec!["http://snomed.info/sct"; n],
                        )),
                    ),
                    ("effective_timestamp", micros(&mut o.date)?),
                ],
            )?;
            let _ = o.dose.finish();
            let _ = o.site.finish();
            o.rows = 0;
            out.push(("observation", "Observation", s, b));
        }
        let v = &mut self.vaccination;
        if v.rows > 0 {
            let n = v.rows;
            let (s, b) = batch(
                "Vaccination",
                vec![
                    ("vaccination_id", Arc::new(v.id.finish()) as ArrayRef),
                    ("patient_id", Arc::new(v.patient_id.finish())),
                    (
                        "status",
                        Arc::new(fdp_store::arrow::array::StringArray::from(vec![
                            "completed";
                            n
                        ])),
                    ),
                    ("vaccination_procedure_code", Arc::new(v.code.finish())),
                    ("occurrence_timestamp", micros(&mut v.date)?),
                    ("dose_number", Arc::new(v.dose.finish())),
                    ("site_ods_code", Arc::new(v.site.finish())),
                    (
                        "primary_source",
                        Arc::new(fdp_store::arrow::array::BooleanArray::from(vec![true; n])),
                    ),
                ],
            )?;
            v.rows = 0;
            out.push(("vaccination", "Vaccination", s, b));
        }
        Ok(out)
    }
}

/// A ten-digit NHS number valid by modulus 11, a different one for each
/// id below 50 million.
fn nhs_number(id: u64) -> String {
    // The 9xx range is not issued to patients. Each id has the even number
    // `2 × id` into it, or the odd one after when the even one's check digit
    // would be 10: the last digit then goes up by one without a carry, which
    // moves the weighted sum by 2 and so the check digit off 10.
    let even = 900_000_000 + (id % 50_000_000) * 2;
    [even, even + 1]
        .into_iter()
        .find_map(|base| {
            let sum: u64 = format!("{base:09}")
                .bytes()
                .enumerate()
                .map(|(i, b)| u64::from(b - b'0') * (10 - i as u64))
                .sum();
            let check = (11 - sum % 11) % 11;
            (check != 10).then(|| format!("{base:09}{check}"))
        })
        .expect("one of two neighbours has a check digit")
}

/// What was written.
#[derive(Debug, Default)]
pub struct Written {
    pub people: u64,
    pub rows: BTreeMap<&'static str, u64>,
}

/// Generate `population` and write it into `data_dir`'s canonical tables,
/// one commit per table; the truth goes to `truth` (CSV) if given.
pub async fn write(
    data_dir: &Path,
    population: &Population,
    truth: Option<&Path>,
) -> Result<Written> {
    let mut tables = Tables::new();
    let mut pending: BTreeMap<&'static str, (SchemaRef, Vec<RecordBatch>)> = BTreeMap::new();
    let mut written = Written::default();
    let mut truth_out = match truth {
        Some(path) => {
            let mut w = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            use std::io::Write;
            writeln!(w, "person_id,lsoa,practice,ethnic_group,on_diabetes_register,foot_examination_probability,foot_examination,flu_eligible,flu_probability,flu_vaccinated,mmr1_probability,mmr1,mmr2")?;
            Some(w)
        }
        None => None,
    };
    let progress = indicatif::ProgressBar::new(population.areas() as u64).with_message("areas");
    for i in 0..population.areas() {
        let area = population.area(i);
        let by_id: HashMap<u64, &Resident> = area.residents.iter().map(|r| (r.id, r)).collect();
        for r in &area.residents {
            tables.add(population, r);
            if let Some(w) = truth_out.as_mut() {
                use std::io::Write;
                let t = &r.truth;
                let inputs = population.inputs();
                writeln!(
                    w,
                    "{},{},{},{},{},{:.4},{},{},{:.4},{},{:.4},{},{}",
                    r.person_id(),
                    inputs.lsoas[r.lsoa].code,
                    r.practice
                        .map(|p| inputs.practices[p].code.as_str())
                        .unwrap_or(""),
                    t.ethnic_group,
                    t.on_diabetes_register,
                    t.foot_examination_probability,
                    t.foot_examination,
                    t.flu_eligible,
                    t.flu_probability,
                    t.flu_vaccinated.map(|d| d.to_string()).unwrap_or_default(),
                    t.mmr1_probability,
                    t.mmr1.map(|d| d.to_string()).unwrap_or_default(),
                    t.mmr2.map(|d| d.to_string()).unwrap_or_default(),
                )?;
            }
        }
        written.people += area.residents.len() as u64;
        for rec in &area.records {
            tables.record(population, &by_id, rec);
        }
        if tables.patient.rows >= 250_000 || i + 1 == population.areas() {
            for (table, _, schema, b) in tables.finish()? {
                *written.rows.entry(table).or_default() += b.num_rows() as u64;
                pending
                    .entry(table)
                    .or_insert_with(|| (schema, Vec::new()))
                    .1
                    .push(b);
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    if let Some(mut w) = truth_out {
        use std::io::Write;
        w.flush()?;
    }
    let lineage = Lineage {
        transform: format!("synth:population ({} people)", written.people),
        ..Lineage::default()
    };
    for (table, (schema, batches)) in pending {
        let path = tables::table_location(
            data_dir,
            Layer::Canonical,
            &tables::part_name(table, WRITER),
        )?;
        let t = tables::open_or_create(&path, schema).await?;
        tables::append_parallel(t, batches, &lineage, "openfdp-synth-population").await?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::nhs_number;

    #[test]
    fn nhs_numbers_are_valid_and_never_repeat() {
        let mut seen = std::collections::BTreeSet::new();
        for id in 0..200_000 {
            let n = nhs_number(id);
            assert!(fdp_model::identifiers::parse_nhs_number(&n).is_ok(), "{n}");
            assert!(seen.insert(n.clone()), "{n} twice");
        }
    }
}
