//! The synthetic population keeps its areas' structure at any size, is the
//! same for the same seed, and its records say what its truth says.

use chrono::NaiveDate;
use fdp_synth::population::{
    AreaInputs, Codes, GapGroup, LsoaInput, Population, PopulationSpec, PostcodeInput,
    PracticeInput, Programme, RecordKind,
};

fn inputs() -> AreaInputs {
    let mut lsoas = Vec::new();
    for (i, decile) in [1u8, 5, 10].into_iter().enumerate() {
        let mut residents = [[0u32; 91]; 2];
        for (sex, by_age) in residents.iter_mut().enumerate() {
            for (age, n) in by_age.iter_mut().enumerate() {
                *n = if age < 80 { 10 + sex as u32 } else { 3 };
            }
        }
        lsoas.push(LsoaInput {
            code: format!("E0100000{i}"),
            imd_decile: decile,
            residents,
            // White British, Pakistani, Black African.
            ethnicity: vec![70, 20 + 10 * i as u32, 10],
        });
    }
    let postcodes = (0..3)
        .flat_map(|l| {
            (0..5).map(move |k| PostcodeInput {
                postcode: format!("M{l}{k} 1AA"),
                lsoa: l,
                at: (53.4 + l as f64 * 0.01, -2.3 + k as f64 * 0.001),
            })
        })
        .collect();
    let practices = (0..5)
        .map(|p| PracticeInput {
            code: format!("P8{p}000"),
            pcn: Some(format!("U{p}")),
            at: (53.4 + p as f64 * 0.005, -2.3),
        })
        .collect();
    AreaInputs {
        lsoas,
        postcodes,
        practices,
        ethnic_groups: vec![
            ("White: British".into(), "A".into()),
            ("Asian: Pakistani".into(), "J".into()),
            ("Black: African".into(), "N".into()),
        ],
    }
}

fn codes() -> Codes {
    let one = |c: &str| vec![c.to_string()];
    Codes {
        diabetes: one("44054006"),
        diabetes_resolved: one("315051004"),
        care_processes: vec![
            ("HbA1c".into(), one("1049301000000100")),
            ("foot examination".into(), one("401191002")),
        ],
        flu_risk: one("195967001"),
        pregnancy: one("77386006"),
        delivery: one("236973005"),
        flu_vaccination: one("822851000000102"),
        mmr_vaccination: one("38598009"),
    }
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
}

fn population(people: u64, seed: u64) -> Population {
    let inputs = inputs();
    let spec = PopulationSpec::with_default_gaps(&inputs, people, day());
    Population::new(seed, inputs, codes(), spec).unwrap()
}

#[test]
fn the_same_seed_makes_the_same_people_and_the_size_asked_for() {
    let a = population(60_000, 7);
    let b = population(60_000, 7);
    let mut total = 0;
    for i in 0..a.areas() {
        let (x, y) = (a.area(i), b.area(i));
        assert_eq!(x.residents.len(), y.residents.len());
        assert_eq!(x.records.len(), y.records.len());
        for (p, q) in x.residents.iter().zip(&y.residents) {
            assert_eq!(
                (p.id, p.date_of_birth, &p.postcode, p.practice),
                (q.id, q.date_of_birth, &q.postcode, q.practice)
            );
        }
        total += x.residents.len();
    }
    assert!((59_000..61_000).contains(&total), "{total}");
    let c = population(60_000, 8);
    assert_ne!(
        c.area(0)
            .residents
            .iter()
            .map(|r| r.date_of_birth)
            .collect::<Vec<_>>(),
        a.area(0)
            .residents
            .iter()
            .map(|r| r.date_of_birth)
            .collect::<Vec<_>>()
    );
}

#[test]
fn records_say_what_the_truth_says() {
    let pop = population(60_000, 3);
    let mut ids = std::collections::HashSet::new();
    let (mut on_register, mut flu_eligible, mut vaccinated) = (0, 0, 0);
    for i in 0..pop.areas() {
        let area = pop.area(i);
        for r in &area.residents {
            assert!(ids.insert(r.id), "id {} twice", r.id);
            let mine: Vec<_> = area.records.iter().filter(|x| x.patient == r.id).collect();
            let t = &r.truth;
            if t.on_diabetes_register {
                on_register += 1;
                let latest = mine
                    .iter()
                    .filter(|x| x.code == "44054006")
                    .map(|x| x.date)
                    .max()
                    .unwrap();
                assert!(mine
                    .iter()
                    .filter(|x| x.code == "315051004")
                    .all(|x| x.date < latest));
                assert!(r.practice.is_some() && r.date_of_death.is_none());
            }
            if t.flu_eligible {
                flu_eligible += 1;
            }
            match t.flu_vaccinated {
                Some(d) => {
                    vaccinated += 1;
                    assert!(t.flu_eligible);
                    assert!(mine.iter().any(|x| x.kind == RecordKind::Vaccination
                        && x.date == d
                        && x.code == "822851000000102"));
                }
                None => assert!(!mine.iter().any(|x| x.code == "822851000000102")),
            }
            assert!(mine.iter().all(|x| x.date <= day()), "{:?}", mine);
        }
    }
    assert!(on_register > 1500, "{on_register}");
    assert!(
        vaccinated * 100 / flu_eligible > 40,
        "{vaccinated} of {flu_eligible}"
    );
}

#[test]
fn a_planted_gap_lowers_that_group_only() {
    let pop = population(120_000, 5);
    let (mut gap, mut gap_n, mut rest, mut rest_n) = (0.0, 0, 0.0, 0);
    let pakistani = pop
        .spec()
        .gaps
        .iter()
        .find(|g| g.programme == Programme::Flu && g.group == GapGroup::Ethnic("J".into()))
        .expect("the default gaps plant one in Pakistani people")
        .factor;
    for i in 0..pop.areas() {
        for r in pop.area(i).residents {
            // Adults 65 and over, away from the other planted groups.
            if !r.truth.flu_eligible
                || r.date_of_birth > NaiveDate::from_ymd_opt(1962, 3, 31).unwrap()
            {
                continue;
            }
            if pop.inputs().lsoas[r.lsoa].imd_decile == 1 || r.practice == Some(3) {
                continue;
            }
            if r.ethnic_category_code == "J" {
                gap += r.truth.flu_probability;
                gap_n += 1;
            } else {
                rest += r.truth.flu_probability;
                rest_n += 1;
            }
        }
    }
    let (gap, rest) = (gap / gap_n as f64, rest / rest_n as f64);
    assert!(
        (gap / rest - pakistani).abs() < 1e-9,
        "{gap} against {rest}"
    );
}
