//! Admission and theatre scheduling problems in the IHTC-2024 competition's
//! own format, each with a planted schedule as known truth.
//!
//! The competition's instances may be used but not passed on, so tests
//! and the quick benchmark schedule these instead. They are drawn to look
//! like the published ones (rooms of two to four beds, three shifts, three
//! age groups, stays of about five days, theatres closed at weekends,
//! surgeons on some days only) from small to competition size.
//!
//! The planted truth is a schedule breaking none of the hard rules, built
//! first; the instance's windows, minutes and rosters are then drawn round
//! it. So every instance is feasible, and the planted schedule's cost is a
//! figure any scheduler must match or beat, and no lower bound may pass.
//!
//! ```
//! use fdp_synth::ihtc::{generate, IhtcSize};
//!
//! let drawn = generate(7, &IhtcSize::small());
//! assert_eq!(drawn.instance.patients.len(), IhtcSize::small().patients);
//! assert_eq!(drawn.planted.patients.len(), drawn.instance.patients.len());
//! ```

use fdp_schedule::ihtc::files::{
    AdmissionDay, Instance, Nurse, NurseRooms, Occupant, OperatingTheater, Patient,
    PatientPlacement, Room, ShiftRooms, Solution, Surgeon, Weights, WorkingShift,
};
use rand::Rng;

use crate::rng::{pick, rng_for, stream, SynthRng};

/// How big an instance to draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IhtcSize {
    /// Days in the horizon.
    pub days: usize,
    /// Patients to admit.
    pub patients: usize,
    /// Patients in a room on the first day (fewer if the rooms fill).
    pub occupants: usize,
    /// Rooms, of two to four beds.
    pub rooms: usize,
    /// Operating theatres.
    pub theaters: usize,
    /// Surgeons.
    pub surgeons: usize,
    /// Nurses.
    pub nurses: usize,
}

impl IhtcSize {
    /// About the size of the competition's first public instance.
    pub fn small() -> IhtcSize {
        IhtcSize {
            days: 14,
            patients: 30,
            occupants: 3,
            rooms: 4,
            theaters: 2,
            surgeons: 2,
            nurses: 12,
        }
    }

    /// About the size of its tenth.
    pub fn medium() -> IhtcSize {
        IhtcSize {
            days: 21,
            patients: 150,
            occupants: 8,
            rooms: 10,
            theaters: 3,
            surgeons: 3,
            nurses: 24,
        }
    }

    /// About the size of its thirtieth, among the largest.
    pub fn competition() -> IhtcSize {
        IhtcSize {
            days: 21,
            patients: 400,
            occupants: 40,
            rooms: 25,
            theaters: 7,
            surgeons: 7,
            nurses: 50,
        }
    }

    /// A size by name: `small`, `medium` or `competition`.
    pub fn named(name: &str) -> Option<IhtcSize> {
        match name {
            "small" => Some(IhtcSize::small()),
            "medium" => Some(IhtcSize::medium()),
            "competition" => Some(IhtcSize::competition()),
            _ => None,
        }
    }
}

/// An instance and the schedule planted in it.
#[derive(Debug, Clone)]
pub struct PlantedInstance {
    /// The instance, as the competition's files hold one.
    pub instance: Instance,
    /// Feasible by construction: every mandatory patient admitted in their
    /// window, no room over its beds or of mixed sex, no theatre or surgeon
    /// over their minutes, every occupied room covered by a rostered nurse.
    pub planted: Solution,
}

const SHIFTS: [&str; 3] = ["early", "late", "night"];
const AGES: [&str; 3] = ["infant", "adult", "elderly"];
const DURATIONS: [i64; 6] = [60, 90, 120, 180, 240, 300];
/// The most load a nurse carries in a shift, as the published rosters give it.
const MAX_LOADS: [i64; 4] = [5, 10, 12, 15];

/// Who is in each room each day, as the plant fills it.
struct Wards {
    days: usize,
    capacity: Vec<usize>,
    beds: Vec<Vec<usize>>,
    gender_a: Vec<Vec<Option<bool>>>,
}

impl Wards {
    fn fits(&self, room: usize, day: usize, stay: usize, a: bool) -> bool {
        (day..(day + stay).min(self.days)).all(|d| {
            self.beds[room][d] < self.capacity[room]
                && self.gender_a[room][d].is_none_or(|g| g == a)
        })
    }

    fn take(&mut self, room: usize, day: usize, stay: usize, a: bool) {
        for d in day..(day + stay).min(self.days) {
            self.beds[room][d] += 1;
            self.gender_a[room][d] = Some(a);
        }
    }

    /// A room with a bed for the whole stay, looked for in random order.
    fn room_for(&self, rng: &mut SynthRng, day: usize, stay: usize, a: bool) -> Option<usize> {
        let rooms = self.capacity.len();
        let first = rng.random_range(0..rooms);
        (0..rooms)
            .map(|k| (first + k) % rooms)
            .find(|&r| self.fits(r, day, stay, a))
    }
}

fn stay(rng: &mut SynthRng, longest: usize) -> usize {
    // About five days on average, a few up to a fortnight, as published.
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    (1 + (-u.ln() * 3.7) as usize).min(longest)
}

fn skill(rng: &mut SynthRng) -> i64 {
    match rng.random_range(0..20) {
        0..=9 => 0,
        10..=16 => 1,
        _ => 2,
    }
}

struct PersonDraw {
    gender_a: bool,
    age_group: &'static str,
    stay: usize,
    workload: Vec<i64>,
    skill: Vec<i64>,
}

fn person(rng: &mut SynthRng, longest: usize) -> PersonDraw {
    let stay = stay(rng, longest);
    let age_group = match rng.random_range(0..100) {
        0..=2 => AGES[0],
        3..=22 => AGES[1],
        _ => AGES[2],
    };
    PersonDraw {
        gender_a: rng.random_bool(0.5),
        age_group,
        stay,
        workload: (0..stay * 3).map(|_| rng.random_range(1..=3)).collect(),
        skill: (0..stay * 3).map(|_| skill(rng)).collect(),
    }
}

fn gender(a: bool) -> String {
    if a { "A" } else { "B" }.to_string()
}

/// Draw an instance of `size` for `seed`, with its planted schedule.
pub fn generate(seed: u64, size: &IhtcSize) -> PlantedInstance {
    let mut rng = rng_for(seed, stream::IHTC);
    let rng = &mut rng;
    let days = size.days.max(1);
    let weights = Weights {
        room_mixed_age: *pick(rng, &[1, 5, 10]),
        room_nurse_skill: *pick(rng, &[1, 5, 10]),
        continuity_of_care: *pick(rng, &[1, 5]),
        nurse_excessive_workload: *pick(rng, &[1, 5, 10]),
        open_operating_theater: *pick(rng, &[20, 30, 40, 50]),
        surgeon_transfer: *pick(rng, &[1, 5, 10]),
        patient_delay: *pick(rng, &[5, 10, 15]),
        unscheduled_optional: *pick(rng, &[200, 300, 350, 500]),
    };
    let rooms = size.rooms.max(1);
    let room_ids: Vec<String> = (0..rooms).map(|r| format!("r{r:02}")).collect();
    let mut wards = Wards {
        days,
        capacity: (0..rooms).map(|_| rng.random_range(2..=4)).collect(),
        beds: vec![vec![0; days]; rooms],
        gender_a: vec![vec![None; days]; rooms],
    };
    // Theatres mostly shut at weekends; surgeons operate on some days.
    let theaters = size.theaters.max(1);
    let theater_minutes: Vec<Vec<i64>> = (0..theaters)
        .map(|_| {
            (0..days)
                .map(|d| {
                    if d % 7 >= 5 && rng.random_bool(0.7) {
                        0
                    } else {
                        *pick(rng, &[480, 600, 720])
                    }
                })
                .collect()
        })
        .collect();
    let surgeons = size.surgeons.max(1);
    let surgeon_minutes: Vec<Vec<i64>> = (0..surgeons)
        .map(|_| {
            (0..days)
                .map(|_| {
                    if rng.random_bool(0.35) {
                        0
                    } else {
                        *pick(rng, &[360, 480, 600])
                    }
                })
                .collect()
        })
        .collect();
    let mut theater_used = vec![vec![0i64; days]; theaters];
    let mut surgeon_used = vec![vec![0i64; days]; surgeons];

    // Everyone in a room: (room, first day, days), for the nurses' plan.
    let mut stays: Vec<(usize, usize, usize)> = Vec::new();
    let mut occupants = Vec::new();
    for k in 0..size.occupants {
        let mut who = person(rng, 5.min(days));
        let Some(room) = wards.room_for(rng, 0, who.stay, who.gender_a) else {
            continue;
        };
        who.stay = who.stay.min(days);
        who.workload.truncate(who.stay * 3);
        who.skill.truncate(who.stay * 3);
        wards.take(room, 0, who.stay, who.gender_a);
        stays.push((room, 0, who.stay));
        occupants.push(Occupant {
            id: format!("a{k:03}"),
            gender: gender(who.gender_a),
            age_group: who.age_group.to_string(),
            length_of_stay: who.stay,
            workload_produced: who.workload,
            skill_level_required: who.skill,
            room_id: room_ids[room].clone(),
        });
    }

    let mut patients = Vec::new();
    let mut placements = Vec::new();
    for k in 0..size.patients {
        let who = person(rng, 13);
        let surgeon = rng.random_range(0..surgeons);
        let duration = *pick(rng, &DURATIONS);
        let wanted = rng.random_range(0..days);
        // The first day from the one wanted on when the surgeon, a theatre
        // and a room all have room.
        let mut placed = None;
        for day in wanted..days {
            if surgeon_used[surgeon][day] + duration > surgeon_minutes[surgeon][day] {
                continue;
            }
            let Some(theater) =
                (0..theaters).find(|&t| theater_used[t][day] + duration <= theater_minutes[t][day])
            else {
                continue;
            };
            let Some(room) = wards.room_for(rng, day, who.stay, who.gender_a) else {
                continue;
            };
            placed = Some((day, room, theater));
            break;
        }
        let id = format!("p{k:03}");
        let mut incompatible: Vec<String> = Vec::new();
        if rng.random_bool(0.4) {
            for _ in 0..rng.random_range(1..=2) {
                let r = rng.random_range(0..rooms);
                if placed.is_none_or(|(_, room, _)| room != r)
                    && !incompatible.contains(&room_ids[r])
                {
                    incompatible.push(room_ids[r].clone());
                }
            }
        }
        let (mandatory, release, due) = match placed {
            Some((day, room, theater)) => {
                surgeon_used[surgeon][day] += duration;
                theater_used[theater][day] += duration;
                wards.take(room, day, who.stay, who.gender_a);
                stays.push((room, day, who.stay));
                placements.push(PatientPlacement {
                    id: id.clone(),
                    admission_day: AdmissionDay::Day(day as i64),
                    room: Some(room_ids[room].clone()),
                    operating_theater: Some(format!("t{theater}")),
                });
                let release = day - rng.random_range(0..=day.min(3));
                let mandatory = rng.random_bool(0.55);
                let due = mandatory.then(|| (day + rng.random_range(0..=6)).min(days - 1));
                (mandatory, release, due)
            }
            None => {
                placements.push(PatientPlacement {
                    id: id.clone(),
                    admission_day: AdmissionDay::None,
                    room: None,
                    operating_theater: None,
                });
                (false, wanted, None)
            }
        };
        patients.push(Patient {
            id,
            mandatory,
            gender: gender(who.gender_a),
            age_group: who.age_group.to_string(),
            length_of_stay: who.stay,
            surgery_release_day: release,
            surgery_due_day: due,
            surgery_duration: duration,
            surgeon_id: format!("s{surgeon}"),
            incompatible_room_ids: incompatible,
            workload_produced: who.workload,
            skill_level_required: who.skill,
        });
    }

    // Rosters: each nurse keeps to one shift of the day and works five
    // days in seven. A shift nobody works gets someone.
    let shifts = days * 3;
    let nurses = size.nurses.max(1);
    let mut rostered: Vec<Vec<Option<i64>>> = (0..nurses)
        .map(|_| {
            let kind = match rng.random_range(0..20) {
                0..=7 => 0,
                8..=14 => 1,
                _ => 2,
            };
            let off = rng.random_range(0..7);
            let max_load = *pick(rng, &MAX_LOADS);
            (0..shifts)
                .map(|s| {
                    let d = s / 3;
                    let works = s % 3 == kind && d % 7 != off && (d + 1) % 7 != off;
                    works.then_some(max_load)
                })
                .collect()
        })
        .collect();
    for s in 0..shifts {
        if rostered.iter().all(|n| n[s].is_none()) {
            let n = rng.random_range(0..nurses);
            rostered[n][s] = Some(*pick(rng, &MAX_LOADS));
        }
    }
    // Each occupied room, each shift: a nurse rostered then.
    let mut occupied = vec![vec![false; shifts]; rooms];
    for &(room, first, days_in) in &stays {
        let end = ((first + days_in) * 3).min(shifts);
        for busy in &mut occupied[room][first * 3..end] {
            *busy = true;
        }
    }
    let mut covers: Vec<Vec<Vec<String>>> = vec![vec![Vec::new(); shifts]; nurses];
    for (room, by_shift) in occupied.iter().enumerate() {
        for (s, &busy) in by_shift.iter().enumerate() {
            if !busy {
                continue;
            }
            let on: Vec<usize> = (0..nurses).filter(|&n| rostered[n][s].is_some()).collect();
            let n = *pick(rng, &on);
            covers[n][s].push(room_ids[room].clone());
        }
    }
    let skills: Vec<i64> = (0..nurses).map(|_| rng.random_range(0..=2)).collect();
    let nurse_list = (0..nurses)
        .map(|n| Nurse {
            id: format!("n{n:03}"),
            skill_level: skills[n],
            working_shifts: (0..shifts)
                .filter_map(|s| {
                    rostered[n][s].map(|max_load| WorkingShift {
                        day: s / 3,
                        shift: SHIFTS[s % 3].to_string(),
                        max_load,
                    })
                })
                .collect(),
        })
        .collect();
    let nurse_plans = (0..nurses)
        .map(|n| NurseRooms {
            id: format!("n{n:03}"),
            assignments: (0..shifts)
                .filter(|&s| rostered[n][s].is_some())
                .map(|s| ShiftRooms {
                    day: s / 3,
                    shift: SHIFTS[s % 3].to_string(),
                    rooms: covers[n][s].clone(),
                })
                .collect(),
        })
        .collect();

    let instance = Instance {
        days,
        skill_levels: 3,
        shift_types: SHIFTS.iter().map(|s| s.to_string()).collect(),
        age_groups: AGES.iter().map(|s| s.to_string()).collect(),
        weights,
        occupants,
        patients,
        surgeons: surgeon_minutes
            .into_iter()
            .enumerate()
            .map(|(u, max_surgery_time)| Surgeon {
                id: format!("s{u}"),
                max_surgery_time,
            })
            .collect(),
        operating_theaters: theater_minutes
            .into_iter()
            .enumerate()
            .map(|(t, availability)| OperatingTheater {
                id: format!("t{t}"),
                availability,
            })
            .collect(),
        rooms: room_ids
            .iter()
            .zip(&wards.capacity)
            .map(|(id, &capacity)| Room {
                id: id.clone(),
                capacity,
            })
            .collect(),
        nurses: nurse_list,
    };
    PlantedInstance {
        instance,
        planted: Solution {
            patients: placements,
            nurses: nurse_plans,
        },
    }
}

#[cfg(test)]
mod tests {
    use fdp_schedule::ihtc::evaluate;

    use super::*;

    #[test]
    fn the_planted_schedule_breaks_no_hard_rule_at_every_size() {
        for size in [
            IhtcSize::small(),
            IhtcSize::medium(),
            IhtcSize::competition(),
        ] {
            for seed in 0..3 {
                let drawn = generate(seed, &size);
                let priced = evaluate(&drawn.instance, &drawn.planted).unwrap();
                assert!(priced.is_feasible(), "{size:?} seed {seed}:\n{priced}");
                let mandatory = drawn
                    .instance
                    .patients
                    .iter()
                    .filter(|p| p.mandatory)
                    .count();
                assert!(
                    mandatory * 4 > size.patients,
                    "{size:?} seed {seed}: only {mandatory} mandatory patients"
                );
                // Capacity is tight enough that some are left out.
                assert!(priced.costs[7] > 0 || size == IhtcSize::small());
            }
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_instance() {
        let a = generate(3, &IhtcSize::medium());
        let b = generate(3, &IhtcSize::medium());
        assert_eq!(a.instance, b.instance);
        assert_eq!(a.planted, b.planted);
        assert_ne!(a.instance, generate(4, &IhtcSize::medium()).instance);
    }

    #[test]
    fn instances_read_back_in_the_competition_format() {
        let drawn = generate(1, &IhtcSize::small());
        let text = serde_json::to_string(&drawn.instance).unwrap();
        let back: Instance = serde_json::from_str(&text).unwrap();
        assert_eq!(back, drawn.instance);
        let text = serde_json::to_string(&drawn.planted).unwrap();
        assert!(text.contains("\"admission_day\""), "{text}");
    }
}
