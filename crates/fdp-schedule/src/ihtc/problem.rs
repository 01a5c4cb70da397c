//! An instance with its names resolved to indices, checked once, and a
//! solution read against it: what evaluation (and search) works on.

use std::collections::HashMap;

use super::files::{AdmissionDay, Instance, NurseRooms, PatientPlacement, ShiftRooms, Solution};
use super::IhtcError;

/// Everyone in a room: occupants first, then the patients to admit, so
/// that person `i` is occupant `i` below [`Problem::occupants`].
#[derive(Debug, Clone)]
pub struct Person {
    /// Gender `A`; the competition reads any other value as `B`.
    pub gender_a: bool,
    pub age_group: usize,
    pub length_of_stay: usize,
    /// Workload and skill needed, from the first shift of the stay.
    pub workload: Vec<i64>,
    pub skill: Vec<i64>,
}

/// A patient to admit.
#[derive(Debug, Clone)]
pub struct ToAdmit {
    pub mandatory: bool,
    pub release_day: usize,
    /// The last day of admission: the due day, or the horizon's last day.
    pub last_day: usize,
    pub duration: i64,
    pub surgeon: usize,
    /// Per room: may not be placed there.
    pub incompatible: Vec<bool>,
    /// The theatres the patient may be operated in, ascending: every one
    /// in the competition's problem, their consultant's lists on a trust's.
    pub theaters: Vec<usize>,
    /// The price of admission on each day of the horizon, where it is not
    /// the competition's one per day after release: a trust weighs each
    /// day by how long the patient has waited and when their wait breaches.
    pub day_cost: Option<Vec<i64>>,
    /// The price of leaving an optional patient out, in units of the
    /// `ElectiveUnscheduledPatients` weight: 1 in the competition.
    pub skip_cost: i64,
}

impl ToAdmit {
    /// The price, before weighting, of admission on `day` (inside the
    /// horizon): `PatientDelay`'s share.
    pub fn delay(&self, day: usize) -> i64 {
        match &self.day_cost {
            Some(cost) => cost.get(day).copied().unwrap_or(0),
            None => day.saturating_sub(self.release_day) as i64,
        }
    }
}

/// An instance resolved.
#[derive(Debug, Clone)]
pub struct Problem {
    pub days: usize,
    pub shift_names: Vec<String>,
    pub weights: [i64; 8],
    /// Occupants, then patients to admit.
    pub people: Vec<Person>,
    pub occupants: usize,
    /// The room of each occupant.
    pub occupant_room: Vec<usize>,
    pub to_admit: Vec<ToAdmit>,
    pub surgeon_minutes: Vec<Vec<i64>>,
    pub theater_minutes: Vec<Vec<i64>>,
    pub room_capacity: Vec<usize>,
    pub nurse_skill: Vec<i64>,
    /// Per nurse and shift of the horizon: the most load, where rostered.
    pub nurse_max_load: Vec<Vec<Option<i64>>>,
    /// Per room, its ward; per nurse, the ward they are rostered to. A nurse
    /// covers only their own ward's rooms. The competition has one ward,
    /// so every room and nurse is on ward 0.
    pub room_ward: Vec<usize>,
    pub nurse_ward: Vec<usize>,
    pub ids: Ids,
}

/// The names of everything, by index, and the way back.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    pub patients: Vec<String>,
    pub rooms: Vec<String>,
    pub theaters: Vec<String>,
    pub nurses: Vec<String>,
    pub occupants: Vec<String>,
    patient_at: HashMap<String, usize>,
    room_at: HashMap<String, usize>,
    theater_at: HashMap<String, usize>,
    nurse_at: HashMap<String, usize>,
}

impl Ids {
    /// The names of a problem built other than from the competition's file.
    pub fn new(
        patients: Vec<String>,
        rooms: Vec<String>,
        theaters: Vec<String>,
        nurses: Vec<String>,
        occupants: Vec<String>,
    ) -> Ids {
        Ids {
            patient_at: index(&patients),
            room_at: index(&rooms),
            theater_at: index(&theaters),
            nurse_at: index(&nurses),
            patients,
            rooms,
            theaters,
            nurses,
            occupants,
        }
    }
}

fn invalid<T>(what: String) -> Result<T, IhtcError> {
    Err(IhtcError::Instance(what))
}

fn misfit<T>(what: String) -> Result<T, IhtcError> {
    Err(IhtcError::Solution(what))
}

fn index(names: &[String]) -> HashMap<String, usize> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect()
}

impl Problem {
    pub fn shifts_per_day(&self) -> usize {
        self.shift_names.len()
    }

    pub fn shifts(&self) -> usize {
        self.days * self.shifts_per_day()
    }

    /// Whether nurse `n` may cover room `r` in shift `s`: rostered then,
    /// on the room's ward.
    pub fn may_cover(&self, n: usize, r: usize, s: usize) -> bool {
        self.nurse_max_load[n][s].is_some() && self.nurse_ward[n] == self.room_ward[r]
    }

    /// How many wards the rooms and nurses are on.
    pub fn wards(&self) -> usize {
        self.room_ward
            .iter()
            .chain(&self.nurse_ward)
            .max()
            .map_or(1, |&w| w + 1)
    }

    /// Resolve `instance`, refusing one that names what it does not hold
    /// or whose figures do not fit its horizon.
    pub fn new(instance: &Instance) -> Result<Problem, IhtcError> {
        let days = instance.days;
        let spd = instance.shift_types.len();
        if days == 0 || spd == 0 {
            return invalid("the horizon has no days or no shifts".into());
        }
        let names = |v: Vec<&String>| v.into_iter().cloned().collect::<Vec<_>>();
        let mut ids = Ids {
            patients: names(instance.patients.iter().map(|p| &p.id).collect()),
            rooms: names(instance.rooms.iter().map(|r| &r.id).collect()),
            theaters: names(instance.operating_theaters.iter().map(|t| &t.id).collect()),
            nurses: names(instance.nurses.iter().map(|n| &n.id).collect()),
            occupants: names(instance.occupants.iter().map(|o| &o.id).collect()),
            ..Ids::default()
        };
        ids.patient_at = index(&ids.patients);
        ids.room_at = index(&ids.rooms);
        ids.theater_at = index(&ids.theaters);
        ids.nurse_at = index(&ids.nurses);
        let surgeon_at = index(
            &instance
                .surgeons
                .iter()
                .map(|s| s.id.clone())
                .collect::<Vec<_>>(),
        );
        let age_at = index(&instance.age_groups);
        let shift_at = index(&instance.shift_types);
        let age = |who: &str, g: &str| {
            age_at.get(g).copied().ok_or_else(|| {
                IhtcError::Instance(format!("{who}: age group {g:?} is not one of age_groups"))
            })
        };
        let per_shift = |who: &str, los: usize, w: &[i64], s: &[i64]| {
            let Some(need) = los.checked_mul(spd) else {
                return invalid(format!("{who}: a stay of {los} days is past counting"));
            };
            if w.len() != need || s.len() != need {
                return invalid(format!(
                    "{who}: workload_produced and skill_level_required need {need} values (a stay of {los} days), not {} and {}",
                    w.len(),
                    s.len()
                ));
            }
            Ok(())
        };
        let mut people = Vec::new();
        let mut occupant_room = Vec::new();
        for o in &instance.occupants {
            per_shift(
                &o.id,
                o.length_of_stay,
                &o.workload_produced,
                &o.skill_level_required,
            )?;
            let Some(&room) = ids.room_at.get(&o.room_id) else {
                return invalid(format!(
                    "occupant {}: room {:?} is not a room",
                    o.id, o.room_id
                ));
            };
            occupant_room.push(room);
            people.push(Person {
                gender_a: o.gender == "A",
                age_group: age(&o.id, &o.age_group)?,
                length_of_stay: o.length_of_stay,
                workload: o.workload_produced.clone(),
                skill: o.skill_level_required.clone(),
            });
        }
        let mut to_admit = Vec::new();
        for p in &instance.patients {
            per_shift(
                &p.id,
                p.length_of_stay,
                &p.workload_produced,
                &p.skill_level_required,
            )?;
            let Some(&surgeon) = surgeon_at.get(&p.surgeon_id) else {
                return invalid(format!(
                    "patient {}: surgeon {:?} is not a surgeon",
                    p.id, p.surgeon_id
                ));
            };
            let mut incompatible = vec![false; ids.rooms.len()];
            for r in &p.incompatible_room_ids {
                let Some(&room) = ids.room_at.get(r) else {
                    return invalid(format!(
                        "patient {}: incompatible room {r:?} is not a room",
                        p.id
                    ));
                };
                incompatible[room] = true;
            }
            let last_day = match (p.mandatory, p.surgery_due_day) {
                (true, Some(due)) => due,
                (true, None) => {
                    return invalid(format!(
                        "patient {}: mandatory but no surgery_due_day",
                        p.id
                    ))
                }
                (false, _) => days - 1,
            };
            to_admit.push(ToAdmit {
                mandatory: p.mandatory,
                release_day: p.surgery_release_day,
                last_day,
                duration: p.surgery_duration,
                surgeon,
                incompatible,
                theaters: (0..instance.operating_theaters.len()).collect(),
                day_cost: None,
                skip_cost: 1,
            });
            people.push(Person {
                gender_a: p.gender == "A",
                age_group: age(&p.id, &p.age_group)?,
                length_of_stay: p.length_of_stay,
                workload: p.workload_produced.clone(),
                skill: p.skill_level_required.clone(),
            });
        }
        let by_day = |who: &str, v: &[i64]| {
            if v.len() != days {
                return invalid(format!(
                    "{who}: {} daily figures for a horizon of {days} days",
                    v.len()
                ));
            }
            Ok(v.to_vec())
        };
        let surgeon_minutes = instance
            .surgeons
            .iter()
            .map(|s| by_day(&s.id, &s.max_surgery_time))
            .collect::<Result<Vec<_>, _>>()?;
        let theater_minutes = instance
            .operating_theaters
            .iter()
            .map(|t| by_day(&t.id, &t.availability))
            .collect::<Result<Vec<_>, _>>()?;
        let mut nurse_max_load = Vec::new();
        for n in &instance.nurses {
            let mut loads = vec![None; days * spd];
            for w in &n.working_shifts {
                let Some(&k) = shift_at.get(&w.shift) else {
                    return invalid(format!(
                        "nurse {}: shift {:?} is not a shift type",
                        n.id, w.shift
                    ));
                };
                if w.day >= days {
                    return invalid(format!(
                        "nurse {}: works on day {}, past the horizon",
                        n.id, w.day
                    ));
                }
                loads[w.day * spd + k] = Some(w.max_load);
            }
            nurse_max_load.push(loads);
        }
        Ok(Problem {
            days,
            shift_names: instance.shift_types.clone(),
            weights: instance.weights.in_order(),
            people,
            occupants: instance.occupants.len(),
            occupant_room,
            to_admit,
            surgeon_minutes,
            theater_minutes,
            room_capacity: instance.rooms.iter().map(|r| r.capacity).collect(),
            nurse_skill: instance.nurses.iter().map(|n| n.skill_level).collect(),
            nurse_max_load,
            room_ward: vec![0; instance.rooms.len()],
            nurse_ward: vec![0; instance.nurses.len()],
            ids,
        })
    }

    /// Read `solution` against this problem: who is admitted when and
    /// where, and which nurse covers each room in each shift. A name it
    /// does not know, or a patient placed twice, is refused by name, as
    /// the competition's validator refuses them.
    pub fn read(&self, solution: &Solution) -> Result<Schedule, IhtcError> {
        let spd = self.shifts_per_day();
        let mut schedule = Schedule::empty(self);
        for p in &solution.patients {
            // A line saying "none" is not read further, as the competition
            // reads it.
            let AdmissionDay::Day(day) = p.admission_day else {
                continue;
            };
            let Some(&i) = self.ids.patient_at.get(&p.id) else {
                return misfit(format!("patient {:?} is not in the instance", p.id));
            };
            if schedule.admission[i].is_some() {
                return misfit(format!("patient {} is placed twice", p.id));
            }
            let room = p
                .room
                .as_ref()
                .and_then(|r| self.ids.room_at.get(r))
                .copied();
            let Some(room) = room else {
                return misfit(format!("patient {}: room {:?} is not a room", p.id, p.room));
            };
            let theater = p
                .operating_theater
                .as_ref()
                .and_then(|t| self.ids.theater_at.get(t))
                .copied();
            let Some(theater) = theater else {
                return misfit(format!(
                    "patient {}: operating theater {:?} is not a theater",
                    p.id, p.operating_theater
                ));
            };
            schedule.admission[i] = Some(Admission { day, room, theater });
        }
        for n in &solution.nurses {
            let Some(&nurse) = self.ids.nurse_at.get(&n.id) else {
                return misfit(format!("nurse {:?} is not in the instance", n.id));
            };
            for a in &n.assignments {
                let Some(k) = self.shift_names.iter().position(|s| *s == a.shift) else {
                    return misfit(format!(
                        "nurse {}: shift {:?} is not a shift type",
                        n.id, a.shift
                    ));
                };
                if a.day >= self.days {
                    return misfit(format!("nurse {}: day {} is past the horizon", n.id, a.day));
                }
                let shift = a.day * spd + k;
                for r in &a.rooms {
                    let Some(&room) = self.ids.room_at.get(r) else {
                        return misfit(format!("nurse {}: room {r:?} is not a room", n.id));
                    };
                    // As the competition reads it: a later nurse on the same
                    // room and shift is the one who covers it, and each pays
                    // the room's workload.
                    schedule.cover[room][shift] = Some(nurse);
                    schedule.nurse_rooms[nurse][shift].push(room);
                }
            }
        }
        Ok(schedule)
    }
}

impl Problem {
    /// `schedule` as a solution file: every patient (`"none"` for one not
    /// admitted) and every nurse with the rooms of each shift they work.
    pub fn write(&self, schedule: &Schedule) -> Solution {
        let patients = self
            .ids
            .patients
            .iter()
            .zip(&schedule.admission)
            .map(|(id, a)| match a {
                Some(a) => PatientPlacement {
                    id: id.clone(),
                    admission_day: AdmissionDay::Day(a.day),
                    room: Some(self.ids.rooms[a.room].clone()),
                    operating_theater: Some(self.ids.theaters[a.theater].clone()),
                },
                None => PatientPlacement {
                    id: id.clone(),
                    admission_day: AdmissionDay::None,
                    room: None,
                    operating_theater: None,
                },
            })
            .collect();
        let spd = self.shifts_per_day();
        let nurses = self
            .ids
            .nurses
            .iter()
            .enumerate()
            .map(|(n, id)| NurseRooms {
                id: id.clone(),
                assignments: (0..self.shifts())
                    .filter(|&s| {
                        self.nurse_max_load[n][s].is_some()
                            || !schedule.nurse_rooms[n][s].is_empty()
                    })
                    .map(|s| ShiftRooms {
                        day: s / spd,
                        shift: self.shift_names[s % spd].clone(),
                        rooms: schedule.nurse_rooms[n][s]
                            .iter()
                            .map(|&r| self.ids.rooms[r].clone())
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        Solution { patients, nurses }
    }
}

/// A patient's admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// As given; a day outside the horizon is a violation, not an error.
    pub day: i64,
    pub room: usize,
    pub theater: usize,
}

/// A solution read against its problem.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Per patient to admit.
    pub admission: Vec<Option<Admission>>,
    /// Per room and shift: the nurse covering it.
    pub cover: Vec<Vec<Option<usize>>>,
    /// Per nurse and shift: the rooms listed (a room listed twice twice).
    pub nurse_rooms: Vec<Vec<Vec<usize>>>,
}

/// Someone in a room on a day: the person, and the first shift of their
/// stay, from which their per-shift figures run.
#[derive(Debug, Clone, Copy)]
pub struct InRoom {
    pub person: usize,
    pub first_shift: usize,
}

impl Schedule {
    /// Who is in each room each day: occupants, and the patients admitted
    /// on a day inside the horizon, each stay cut at its end.
    pub fn presence(&self, problem: &Problem) -> Vec<Vec<Vec<InRoom>>> {
        let days = problem.days;
        let spd = problem.shifts_per_day();
        let mut present = vec![vec![Vec::new(); days]; problem.room_capacity.len()];
        let stays = problem
            .occupant_room
            .iter()
            .enumerate()
            .map(|(o, &room)| (o, room, 0));
        let admitted = self.admission.iter().enumerate().filter_map(|(i, a)| {
            let a = a.as_ref()?;
            let day = usize::try_from(a.day).ok().filter(|&d| d < days)?;
            Some((problem.occupants + i, a.room, day))
        });
        for (person, room, day) in stays.chain(admitted) {
            let last = (day + problem.people[person].length_of_stay).min(days);
            for in_room in &mut present[room][day..last] {
                in_room.push(InRoom {
                    person,
                    first_shift: day * spd,
                });
            }
        }
        present
    }

    /// Nobody admitted, no room covered.
    pub fn empty(problem: &Problem) -> Schedule {
        let shifts = problem.shifts();
        Schedule {
            admission: vec![None; problem.to_admit.len()],
            cover: vec![vec![None; shifts]; problem.room_capacity.len()],
            nurse_rooms: vec![vec![Vec::new(); shifts]; problem.nurse_skill.len()],
        }
    }
}
