//! The real reference files load whole, and patients' areas come out as an
//! independent reading of the same files says they should.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fdp_govern::{Governance, Policy};
use fdp_model::Model;
use fdp_reference::areas::{self, AreaOptions, ImdEdition};
use fdp_store::arrow::array::{new_null_array, Array, ArrayRef, AsArray, RecordBatch, StringArray};
use fdp_store::arrow::compute::cast;
use fdp_store::arrow::datatypes::{DataType, Field, Schema};
use fdp_store::tables::{self, Layer, Lineage};
use fdp_store::StoredTables;

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/uk_reference")
}

fn governance(dir: &Path) -> Governance {
    Governance::open(dir, Policy::demo(Model::canonical()), "RXX", None).unwrap()
}

/// Rows of a query over the named tables, as text.
async fn rows(dir: &Path, tables_read: &[&str], sql: &str) -> Vec<Vec<Option<String>>> {
    let g = governance(dir);
    let tables = StoredTables::new(dir);
    let s = g
        .derivation_session(&tables, "test", tables_read)
        .await
        .unwrap();
    let r = s.query(sql).await.unwrap();
    let mut out = Vec::new();
    for b in &r.batches {
        let cols: Vec<StringArray> = b
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Utf8).unwrap().as_string::<i32>().clone())
            .collect();
        for i in 0..b.num_rows() {
            out.push(
                cols.iter()
                    .map(|c| (!c.is_null(i)).then(|| c.value(i).to_string()))
                    .collect(),
            );
        }
    }
    out
}

/// Write patients (id, postcode) into the canonical patient table.
async fn write_patients(dir: &Path, patients: &[(&str, Option<&str>)]) {
    let object = Model::canonical().object_type("Patient").unwrap();
    let schema = Arc::new(Schema::new(
        object
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(Default::default()))
            .collect::<Vec<Field>>(),
    ));
    let n = patients.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "person_id" => {
                    Arc::new(StringArray::from_iter_values(patients.iter().map(|p| p.0)))
                }
                "postcode" => Arc::new(StringArray::from_iter(patients.iter().map(|p| p.1))),
                _ => new_null_array(f.data_type(), n),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let path = tables::table_location(
        dir,
        Layer::Canonical,
        &tables::part_name("patient", "test-pas"),
    )
    .unwrap();
    let table = tables::open_or_create(&path, schema).await.unwrap();
    let lineage = Lineage {
        transform: "test".into(),
        ..Lineage::default()
    };
    tables::replace(
        table,
        vec![batch],
        tables::commit_properties(&lineage, "test", 0),
    )
    .await
    .unwrap();
}

async fn derive(dir: &Path, edition: ImdEdition) -> areas::Derived {
    let options = AreaOptions {
        imd_edition: edition,
        ..AreaOptions::default()
    };
    areas::derive(dir, &governance(dir), &StoredTables::new(dir), &options)
        .await
        .unwrap()
}

/// A minimal CSV reader for the test's own reading of the files: fields
/// split on commas outside double quotes.
fn csv_rows(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.trim_start_matches('\u{feff}');
    let split = |line: &str| -> Vec<String> {
        let mut out = vec![String::new()];
        let mut quoted = false;
        for ch in line.trim_end_matches('\r').chars() {
            match ch {
                '"' => quoted = !quoted,
                ',' if !quoted => out.push(String::new()),
                c => out.last_mut().unwrap().push(c),
            }
        }
        out
    };
    let mut lines = text.lines();
    let header = split(lines.next().unwrap());
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| header.iter().cloned().zip(split(l)).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reference_files_load_whole_and_patients_get_their_areas() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let folder = reference_dir();
    let loaded = fdp_reference::load(dir, &folder, "reference-test")
        .await
        .unwrap();
    let refused: Vec<String> = loaded
        .files
        .iter()
        .flat_map(|f| {
            f.rejected
                .iter()
                .map(move |(l, r)| format!("{} line {l}: {r}", f.file))
        })
        .collect();
    assert!(refused.is_empty(), "lines refused:\n{}", refused.join("\n"));
    assert_eq!(
        loaded.files.len(),
        fdp_reference::MAPPINGS.len() + 1,
        "{:?}",
        loaded.files.iter().map(|f| &f.file).collect::<Vec<_>>()
    );

    // Every published row is there, each edition naming its own vintage.
    let counts = rows(
        dir,
        &["area_deprivation"],
        "SELECT imd_edition, lsoa_vintage, count(*), count(DISTINCT lsoa_code), \
                min(imd_decile), max(imd_decile) \
         FROM area_deprivation GROUP BY 1, 2 ORDER BY 1",
    )
    .await;
    let s = |v: &[&str]| v.iter().map(|x| Some(x.to_string())).collect::<Vec<_>>();
    assert_eq!(
        counts,
        vec![
            s(&["IoD2019", "2011", "32844", "32844", "1", "10"]),
            s(&["IoD2025", "2021", "33755", "33755", "1", "10"]),
        ]
    );
    let one = |sql: &'static str, table: &'static str| async move {
        rows(dir, &[table], sql).await[0][0].clone().unwrap()
    };
    assert_eq!(
        one("SELECT count(*) FROM lsoa_change", "lsoa_change").await,
        "35795"
    );
    assert_eq!(
        one(
            "SELECT count(*) FROM lsoa_change WHERE change_code = 'M'",
            "lsoa_change"
        )
        .await,
        "239"
    );
    assert_eq!(
        one("SELECT count(*) FROM postcode_lookup", "postcode_lookup").await,
        "11264"
    );
    assert_eq!(
        one("SELECT count(*) FROM general_practice", "general_practice").await,
        "8655"
    );
    assert_eq!(
        one(
            "SELECT count(*) FROM ethnic_category_code",
            "ethnic_category_code"
        )
        .await,
        "18"
    );
    assert_eq!(
        one(
            "SELECT count(*) FROM area_health_geography",
            "area_health_geography"
        )
        .await,
        (32844 + 33755).to_string()
    );
    // The wide Trafford estimates became one row per area, sex and age,
    // and still add up to the published total for all ages.
    let trafford = rows(
        dir,
        &["population_estimate"],
        "SELECT count(*), sum(count), count(DISTINCT age), max(age_from) \
         FROM population_estimate \
         WHERE dataset = 'ONS mid-2024 estimates' AND area_code = 'E08000009' AND sex = 'persons'",
    )
    .await;
    assert_eq!(trafford, vec![s(&["91", "241025", "91", "90"])]);
    assert_eq!(
        one(
            "SELECT count(*) FROM population_estimate WHERE dataset = 'ONS mid-2024 estimates'",
            "population_estimate"
        )
        .await,
        ((139 + 1) * 3 * 91).to_string()
    );

    // Loading again changes nothing.
    let again = fdp_reference::load(dir, &folder, "reference-test-2")
        .await
        .unwrap();
    assert!(again.files.iter().all(|f| f.already_loaded));

    // Patients: real postcodes written as people write them, none, and one
    // that is no postcode at all.
    write_patients(
        dir,
        &[
            ("P1", Some("M15 4AB")),
            ("P2", Some("m154ad")),
            ("P3", None),
            ("P4", Some("ZZ99 9ZZ")),
            ("P5", Some(" wa14  2dt")),
            ("P6", Some("")),
        ],
    )
    .await;
    let d = derive(dir, ImdEdition::IoD2025).await;
    assert_eq!(d.patients, 6);
    assert_eq!(d.count("matched"), 3);
    assert_eq!(d.count("no postcode"), 2);
    assert_eq!(d.count("postcode not found"), 1);
    let areas_sql = "SELECT patient_id, area_status, lsoa_code, lsoa_vintage, imd_edition, \
                     imd_decile, sub_icb_location_code FROM patient_area ORDER BY patient_id";
    let got = rows(dir, &["patient_area"], areas_sql).await;
    let r = |v: [Option<&str>; 7]| v.iter().map(|x| x.map(str::to_string)).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            r([
                Some("P1"),
                Some("matched"),
                Some("E01034001"),
                Some("2021"),
                Some("IoD2025"),
                Some("2"),
                Some("02A")
            ]),
            r([
                Some("P2"),
                Some("matched"),
                Some("E01006112"),
                Some("2021"),
                Some("IoD2025"),
                Some("2"),
                Some("02A")
            ]),
            r([
                Some("P3"),
                Some("no postcode"),
                None,
                None,
                None,
                None,
                None
            ]),
            r([
                Some("P4"),
                Some("postcode not found"),
                None,
                None,
                None,
                None,
                None
            ]),
            r([
                Some("P5"),
                Some("matched"),
                Some("E01006076"),
                Some("2021"),
                Some("IoD2025"),
                Some("10"),
                Some("02A")
            ]),
            r([
                Some("P6"),
                Some("no postcode"),
                None,
                None,
                None,
                None,
                None
            ]),
        ]
    );

    // Under IoD2019 the 2021 LSOA reaches the 2011 index through the ONS
    // lookup: P1's area was split from E01006185 in 2021 and so has no
    // code of its own in IoD2019, yet it has its parent's decile; P5's
    // unchanged area has its 2019 decile, which differs from 2025's.
    let d = derive(dir, ImdEdition::IoD2019).await;
    assert_eq!(d.count("matched"), 3);
    let got = rows(dir, &["patient_area"], areas_sql).await;
    assert_eq!(got[0][4].as_deref(), Some("IoD2019"));
    assert_eq!(got[0][5].as_deref(), Some("2"));
    assert_eq!(got[4][5].as_deref(), Some("9"));
    assert_eq!(
        got[4][3].as_deref(),
        Some("2021"),
        "the area stays a 2021 LSOA"
    );
}

/// Every Trafford postcode as a patient: each one's IoD2019 decile equals
/// the one this test reads from the files itself (postcode to 2021 LSOA,
/// the ONS lookup to 2011, File 2's decile), including the postcodes of
/// the two 2021 LSOAs whose codes IoD2019 does not have.
#[tokio::test(flavor = "multi_thread")]
async fn every_postcode_has_the_decile_the_published_files_give_it() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let folder = reference_dir();
    fdp_reference::load(dir, &folder, "reference-test")
        .await
        .unwrap();
    let postcodes =
        csv_rows(&folder.join("postcodes/trafford_postcodes_onspd_feb2025_with_icb.csv"));
    let imd19: HashMap<String, String> =
        csv_rows(&folder.join("imd2019/File_2_-_IoD2019_Domains_of_Deprivation.csv"))
            .into_iter()
            .map(|r| {
                (
            r["LSOA code (2011)"].clone(),
            r["Index of Multiple Deprivation (IMD) Decile (where 1 is most deprived 10% of LSOAs)"]
                .clone(),
        )
            })
            .collect();
    let mut parents: HashMap<String, Vec<String>> = HashMap::new();
    for r in csv_rows(&folder.join("geography_lookups/lsoa11_lsoa21_lad22.csv")) {
        parents
            .entry(r["lsoa21_code"].clone())
            .or_default()
            .push(r["lsoa11_code"].clone());
    }
    let ids: Vec<String> = (0..postcodes.len()).map(|i| format!("T{i:05}")).collect();
    let patients: Vec<(&str, Option<&str>)> = ids
        .iter()
        .zip(&postcodes)
        .map(|(id, p)| (id.as_str(), Some(p["postcode"].as_str())))
        .collect();
    write_patients(dir, &patients).await;
    let d = derive(dir, ImdEdition::IoD2019).await;
    assert_eq!(d.patients as usize, postcodes.len());
    let got: HashMap<String, Option<String>> = rows(
        dir,
        &["patient_area"],
        "SELECT patient_id, imd_decile FROM patient_area",
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone().unwrap(), r[1].clone()))
    .collect();
    let mut split_children = 0;
    for (id, p) in ids.iter().zip(&postcodes) {
        let lsoa = &p["lsoa_code"];
        let deciles: Vec<&String> = parents[lsoa].iter().map(|l| &imd19[l]).collect();
        let expected = deciles
            .iter()
            .all(|d| *d == deciles[0])
            .then(|| deciles[0].clone());
        if !imd19.contains_key(lsoa) {
            split_children += 1;
        }
        assert_eq!(got[id], expected, "{id} at {} in {lsoa}", p["postcode"]);
    }
    assert!(
        split_children > 0,
        "the file has postcodes in split 2021 LSOAs"
    );
}
