//! The e-rostering system's "Assigned Duties by Person" export: every duty
//! worked on the trust's wards and in its theatres.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime};
use rand::seq::SliceRandom;
use rand::Rng;

use super::sheet::{Encoding, Sheet};
use super::theatre::theatres;
use super::{dmy, impossible_day, stamp, ExtractFile, ExtractSpec, FaultKind};
use crate::people::{random_name, Sex};
use crate::rng::SynthRng;
use crate::trust::{Division, Trust, WardKind};

/// A duty: code, start, end (before the start means the next day), unpaid
/// break in minutes.
#[derive(Clone, Copy)]
struct Duty {
    code: &'static str,
    start: (u32, u32),
    end: (u32, u32),
    break_mins: i64,
}

const EARLY: Duty = Duty {
    code: "E",
    start: (7, 0),
    end: (15, 0),
    break_mins: 30,
};
const LATE: Duty = Duty {
    code: "L",
    start: (13, 30),
    end: (21, 30),
    break_mins: 30,
};
const LONG_DAY: Duty = Duty {
    code: "LD",
    start: (7, 30),
    end: (20, 0),
    break_mins: 60,
};
const NIGHT: Duty = Duty {
    code: "N",
    start: (19, 30),
    end: (8, 0),
    break_mins: 60,
};
const TWILIGHT: Duty = Duty {
    code: "TW",
    start: (17, 0),
    end: (23, 0),
    break_mins: 0,
};
const THEATRE_DAY: Duty = Duty {
    code: "D",
    start: (8, 0),
    end: (18, 0),
    break_mins: 60,
};

impl Duty {
    fn times(self, day: NaiveDate) -> (NaiveDateTime, NaiveDateTime) {
        let at = |(h, m): (u32, u32)| NaiveTime::from_hms_opt(h, m, 0).expect("a time");
        let start = day.and_time(at(self.start));
        let mut end = day.and_time(at(self.end));
        if end <= start {
            end += Duration::days(1);
        }
        (start, end)
    }
}

/// Which pool a duty is filled from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    /// Registered nurses and midwives; scrub practitioners in theatres.
    Registered,
    /// Healthcare assistants; theatre support workers.
    Support,
    /// Anaesthetic practitioners.
    Anaesthetic,
}

struct Staff {
    number: String,
    surname: String,
    forename: String,
    group: &'static str,
    role: &'static str,
    grade: &'static str,
    fill: &'static str,
    /// When the last duty ended, and how many duties so far.
    free_from: Option<NaiveDateTime>,
    worked: u32,
    last_day: Option<NaiveDate>,
}

struct Unit {
    site: usize,
    code: String,
    name: String,
    /// (duty, pool, how many) on weekdays and at weekends.
    weekday: Vec<(Duty, Pool, u32)>,
    weekend: Vec<(Duty, Pool, u32)>,
    staff: Vec<Staff>,
    kind: Option<WardKind>,
}

fn ward_needs(kind: WardKind, beds: u32, long_days: bool) -> Vec<(Duty, Pool, u32)> {
    use Pool::*;
    if kind.division() == Division::CriticalCare {
        // One nurse to one or two patients, day and night.
        let rn = beds.div_ceil(2).max(2);
        return vec![
            (LONG_DAY, Registered, rn),
            (LONG_DAY, Support, 1),
            (NIGHT, Registered, rn),
        ];
    }
    let (rn_day, hca_day) = ((beds / 7).max(2), (beds / 10).max(1));
    let (rn_night, hca_night) = ((beds / 9).max(2), (beds / 14).max(1));
    if long_days {
        vec![
            (LONG_DAY, Registered, rn_day),
            (LONG_DAY, Support, hca_day),
            (NIGHT, Registered, rn_night),
            (NIGHT, Support, hca_night),
        ]
    } else {
        vec![
            (EARLY, Registered, rn_day),
            (EARLY, Support, hca_day),
            (LATE, Registered, rn_day),
            (LATE, Support, hca_day),
            (TWILIGHT, Support, 1),
            (NIGHT, Registered, rn_night),
            (NIGHT, Support, hca_night),
        ]
    }
}

/// Role, grade and staff group of the `i`th member of a pool.
fn role(
    pool: Pool,
    theatre: bool,
    kind: Option<WardKind>,
    i: usize,
) -> (&'static str, &'static str, &'static str) {
    const REGISTERED: &str = "Nursing and Midwifery Registered";
    const SUPPORT: &str = "Additional Clinical Services";
    const AHP: &str = "Allied Health Professionals";
    let midwifery = matches!(kind, Some(WardKind::Maternity | WardKind::LabourWard));
    match (pool, theatre) {
        (Pool::Registered, true) => match i {
            0 => ("Theatre Team Leader", "Band 7", REGISTERED),
            _ if i % 3 == 1 => ("Operating Department Practitioner", "Band 5", AHP),
            _ => ("Scrub Practitioner", "Band 5", REGISTERED),
        },
        (Pool::Anaesthetic, _) => ("Anaesthetic Practitioner", "Band 6", AHP),
        (Pool::Support, true) => ("Theatre Support Worker", "Band 3", SUPPORT),
        (Pool::Registered, false) if midwifery => match i {
            0 => ("Midwifery Manager", "Band 7", REGISTERED),
            _ => ("Midwife", "Band 6", REGISTERED),
        },
        (Pool::Registered, false) => match i {
            0 => ("Ward Manager", "Band 7", REGISTERED),
            1 | 2 => ("Sister/Charge Nurse", "Band 6", REGISTERED),
            _ => ("Staff Nurse", "Band 5", REGISTERED),
        },
        (Pool::Support, false) => match i % 5 {
            0 => ("Nursing Associate", "Band 4", REGISTERED),
            1 | 2 => ("Healthcare Assistant", "Band 3", SUPPORT),
            _ => ("Healthcare Assistant", "Band 2", SUPPORT),
        },
    }
}

fn new_staff(
    rng: &mut SynthRng,
    number: String,
    (role, grade, group): (&'static str, &'static str, &'static str),
    fill: &'static str,
) -> Staff {
    let sex = if rng.random_bool(0.82) {
        Sex::Female
    } else {
        Sex::Male
    };
    let age = rng.random_range(22..62);
    let name = random_name(rng, sex, age);
    Staff {
        number,
        surname: name.family.to_string(),
        forename: name.given.to_string(),
        group,
        role,
        grade,
        fill,
        free_from: None,
        worked: 0,
        last_day: None,
    }
}

/// Can `s` work a duty from `start` on `day`: eleven hours' rest since the
/// last duty, one duty a day, and no more than four in any seven days
/// (approximated by their share of the days so far).
fn can_work(s: &Staff, day: NaiveDate, start: NaiveDateTime, days_so_far: u32) -> bool {
    s.last_day != Some(day)
        && s.free_from.is_none_or(|t| t + Duration::hours(11) <= start)
        && s.worked * 7 < (days_so_far + 1) * 4
}

pub(crate) fn generate(trust: &Trust, spec: &ExtractSpec, rng: &mut SynthRng) -> ExtractFile {
    let mut number: u32 = rng.random_range(20_000_000..28_000_000);
    let mut next_number = |rng: &mut SynthRng| {
        number += rng.random_range(1..900);
        number.to_string()
    };
    let mut units: Vec<Unit> = Vec::new();
    for (si, site) in trust.sites.iter().enumerate() {
        for (wi, ward) in site.wards.iter().enumerate() {
            let needs = ward_needs(ward.kind, ward.beds.len() as u32, (si + wi) % 2 == 0);
            units.push(Unit {
                site: si,
                code: ward.code.clone(),
                name: ward.name.clone(),
                weekday: needs.clone(),
                weekend: needs,
                staff: Vec::new(),
                kind: Some(ward.kind),
            });
        }
    }
    let all_theatres = theatres(trust);
    for (si, site) in trust.sites.iter().enumerate() {
        let n = all_theatres.iter().filter(|t| t.site == si).count() as u32;
        if n == 0 {
            continue;
        }
        let weekend = if si == 0 {
            vec![
                (LONG_DAY, Pool::Registered, 2),
                (LONG_DAY, Pool::Anaesthetic, 1),
                (NIGHT, Pool::Registered, 1),
                (NIGHT, Pool::Anaesthetic, 1),
            ]
        } else {
            Vec::new()
        };
        let mut weekday = vec![
            (THEATRE_DAY, Pool::Registered, 2 * n),
            (THEATRE_DAY, Pool::Anaesthetic, n),
            (THEATRE_DAY, Pool::Support, n.div_ceil(2)),
        ];
        weekday.extend(weekend.iter().filter(|w| w.0.code == "N").copied());
        units.push(Unit {
            site: si,
            code: "THR".into(),
            name: if si == 0 {
                "Main Theatres".into()
            } else {
                format!("Theatres - {}", site.name)
            },
            weekday,
            weekend,
            staff: Vec::new(),
            kind: None,
        });
    }
    // Pools sized to cover a week at about three and a half duties each, so
    // that some duties go to the bank or an agency, as they do.
    for u in &mut units {
        let theatre = u.kind.is_none();
        for pool in [Pool::Registered, Pool::Support, Pool::Anaesthetic] {
            let week: u32 = u
                .weekday
                .iter()
                .filter(|n| n.1 == pool)
                .map(|n| n.2 * 5)
                .chain(u.weekend.iter().filter(|n| n.1 == pool).map(|n| n.2 * 2))
                .sum();
            let size = (week * 2).div_ceil(7);
            for i in 0..size as usize {
                let number = next_number(rng);
                let r = role(pool, theatre, u.kind, i);
                u.staff.push(new_staff(rng, number, r, "Substantive"));
            }
        }
    }
    let mut bank: Vec<(Pool, Staff)> = Vec::new();
    for pool in [Pool::Registered, Pool::Support, Pool::Anaesthetic] {
        for i in 0..12 {
            let number = next_number(rng);
            let r = role(pool, false, None, 3 + i);
            bank.push((pool, new_staff(rng, number, r, "Bank")));
        }
    }
    let mut agency_number: u32 = rng.random_range(10_000..60_000);

    let mut sheet = Sheet::new(',', true, Encoding::Utf8Bom);
    let end = spec.start + Duration::days(i64::from(spec.days) - 1);
    sheet.title("Assigned Duties by Person");
    sheet.title(format!(
        "{},{} to {}",
        trust.name,
        dmy(spec.start),
        dmy(end)
    ));
    sheet.header(&[
        "Staff Number",
        "Surname",
        "Forename",
        "Staff Group",
        "Role",
        "Grade",
        "Site Code",
        "Unit Code",
        "Unit",
        "Duty Date",
        "Duty",
        "Start",
        "End",
        "Unpaid Break (mins)",
        "Paid Hours",
        "Fill Type",
    ]);
    let stamp_of = |t: NaiveDateTime| t.format("%d/%m/%Y %H:%M").to_string();
    let mut last = Vec::new();
    for (d, day) in spec.start.iter_days().take(spec.days as usize).enumerate() {
        let weekend = day.weekday().num_days_from_monday() >= 5;
        for u in &mut units {
            let needs = if weekend { &u.weekend } else { &u.weekday };
            let mut needs = needs.clone();
            needs.sort_by_key(|n| n.0.start);
            for (duty, pool, count) in needs {
                let (start, finish) = duty.times(day);
                for _ in 0..count {
                    let theatre = u.kind.is_none();
                    let mut order: Vec<usize> = (0..u.staff.len()).collect();
                    order.shuffle(rng);
                    order.sort_by_key(|&i| u.staff[i].worked);
                    let own = order.into_iter().find(|&i| {
                        pool_of(&u.staff[i]) == pool && can_work(&u.staff[i], day, start, d as u32)
                    });
                    let staff: &mut Staff = match own {
                        Some(i) if !rng.random_bool(0.03) => &mut u.staff[i],
                        _ => {
                            let mut order: Vec<usize> = (0..bank.len()).collect();
                            order.shuffle(rng);
                            match order.into_iter().find(|&i| {
                                bank[i].0 == pool && can_work(&bank[i].1, day, start, d as u32)
                            }) {
                                Some(i) => &mut bank[i].1,
                                None => {
                                    agency_number += rng.random_range(1..50);
                                    let r = role(pool, theatre, u.kind, 5);
                                    bank.push((
                                        pool,
                                        new_staff(rng, format!("AGY{agency_number}"), r, "Agency"),
                                    ));
                                    &mut bank.last_mut().expect("just pushed").1
                                }
                            }
                        }
                    };
                    staff.free_from = Some(finish);
                    staff.last_day = Some(day);
                    staff.worked += 1;
                    let paid = ((finish - start).num_minutes() - duty.break_mins) as f64 / 60.0;
                    let fields = vec![
                        staff.number.clone(),
                        staff.surname.clone(),
                        staff.forename.clone(),
                        staff.group.to_string(),
                        staff.role.to_string(),
                        staff.grade.to_string(),
                        trust.sites[u.site].code.clone(),
                        u.code.clone(),
                        u.name.clone(),
                        dmy(day),
                        duty.code.to_string(),
                        stamp_of(start),
                        stamp_of(finish),
                        duty.break_mins.to_string(),
                        format!("{paid:.2}"),
                        staff.fill.to_string(),
                    ];
                    sheet.record(&fields);
                    last = fields;
                }
            }
        }
    }
    if !last.is_empty() {
        let mut f = last.clone();
        f[0] = next_number(rng);
        let (d, m, y) = impossible_day(spec.start);
        f[11] = format!("{d:02}/{m:02}/{y} 07:30");
        let line = sheet.join(&f);
        sheet.fault(
            rng,
            line,
            FaultKind::ImpossibleDate,
            format!("Start {}", f[11]),
        );
        let mut f = last.clone();
        f[0] = next_number(rng);
        f[10] = "E1".into();
        let line = sheet.join(&f);
        sheet.fault(
            rng,
            line,
            FaultKind::UnknownCode,
            "Duty E1, a variant the mapping does not list",
        );
        let mut f = last;
        f[0] = next_number(rng);
        f.pop();
        let line = sheet.join(&f);
        sheet.fault(rng, line, FaultKind::FieldCount, "Fill Type missing");
    }
    sheet.finish(format!("roster_duties_{}.csv", stamp(spec.start)))
}

/// Which pool a member of staff fills duties from, by role.
fn pool_of(s: &Staff) -> Pool {
    match s.role {
        "Anaesthetic Practitioner" => Pool::Anaesthetic,
        "Healthcare Assistant" | "Nursing Associate" | "Theatre Support Worker" => Pool::Support,
        _ => Pool::Registered,
    }
}
