//! The competition's instance and solution files, field for field as it
//! spells them (`nurse_eccessive_workload` included).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instance: the horizon, the weights of the soft costs, the patients
/// already in (occupants) and to admit, and the surgeons, theatres, rooms
/// and nurses.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Instance {
    /// Days in the horizon.
    pub days: usize,
    pub skill_levels: usize,
    /// The shifts of a day in order (`early`, `late`, `night`).
    pub shift_types: Vec<String>,
    /// Age groups in order: a room's age mix is the spread of these indices.
    pub age_groups: Vec<String>,
    pub weights: Weights,
    pub occupants: Vec<Occupant>,
    pub patients: Vec<Patient>,
    pub surgeons: Vec<Surgeon>,
    pub operating_theaters: Vec<OperatingTheater>,
    pub rooms: Vec<Room>,
    pub nurses: Vec<Nurse>,
}

/// The weight of each soft cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Weights {
    pub room_mixed_age: i64,
    pub room_nurse_skill: i64,
    pub continuity_of_care: i64,
    #[serde(rename = "nurse_eccessive_workload")]
    pub nurse_excessive_workload: i64,
    pub open_operating_theater: i64,
    pub surgeon_transfer: i64,
    pub patient_delay: i64,
    pub unscheduled_optional: i64,
}

impl Weights {
    /// In the order the costs are printed.
    pub fn in_order(&self) -> [i64; 8] {
        [
            self.room_mixed_age,
            self.room_nurse_skill,
            self.continuity_of_care,
            self.nurse_excessive_workload,
            self.open_operating_theater,
            self.surgeon_transfer,
            self.patient_delay,
            self.unscheduled_optional,
        ]
    }
}

/// A patient in a room on the first day, staying `length_of_stay` days.
/// Its per-shift figures are indexed by the horizon's shift.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Occupant {
    pub id: String,
    pub gender: String,
    pub age_group: String,
    pub length_of_stay: usize,
    pub workload_produced: Vec<i64>,
    pub skill_level_required: Vec<i64>,
    pub room_id: String,
}

/// A patient to admit, operated on the day of admission. Its per-shift
/// figures are indexed from the first shift of its admission day.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Patient {
    pub id: String,
    /// Must be admitted within the horizon; an optional patient may wait.
    pub mandatory: bool,
    pub gender: String,
    pub age_group: String,
    pub length_of_stay: usize,
    /// The first day the patient may be admitted.
    pub surgery_release_day: usize,
    /// The last day a mandatory patient may be admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surgery_due_day: Option<usize>,
    /// Minutes in theatre.
    pub surgery_duration: i64,
    pub surgeon_id: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub incompatible_room_ids: Vec<String>,
    pub workload_produced: Vec<i64>,
    pub skill_level_required: Vec<i64>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Surgeon {
    pub id: String,
    /// Minutes the surgeon may operate each day (0: not operating).
    pub max_surgery_time: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct OperatingTheater {
    pub id: String,
    /// Minutes the theatre is open each day (0: closed).
    pub availability: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Room {
    pub id: String,
    /// Beds.
    pub capacity: usize,
}

/// A nurse and the shifts the roster gives them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Nurse {
    pub id: String,
    pub skill_level: i64,
    pub working_shifts: Vec<WorkingShift>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct WorkingShift {
    pub day: usize,
    pub shift: String,
    /// The most workload the nurse should carry in the shift.
    pub max_load: i64,
}

/// A solution: each patient's admission, room and theatre, and each
/// nurse's rooms in each shift.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Solution {
    #[serde(default)]
    pub patients: Vec<PatientPlacement>,
    #[serde(default)]
    pub nurses: Vec<NurseRooms>,
}

/// One patient's line: admitted on a day to a room and a theatre, or not
/// scheduled (`"admission_day": "none"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct PatientPlacement {
    /// Needed unless the patient is not scheduled.
    #[serde(default)]
    pub id: String,
    pub admission_day: AdmissionDay,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_theater: Option<String>,
}

/// The day a patient is admitted, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionDay {
    Day(i64),
    None,
}

impl Serialize for AdmissionDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AdmissionDay::Day(d) => s.serialize_i64(*d),
            AdmissionDay::None => s.serialize_str("none"),
        }
    }
}

impl<'de> Deserialize<'de> for AdmissionDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Day(i64),
            Text(String),
        }
        match Given::deserialize(d)? {
            Given::Day(n) => Ok(AdmissionDay::Day(n)),
            Given::Text(t) if t == "none" => Ok(AdmissionDay::None),
            Given::Text(t) => Err(serde::de::Error::custom(format!(
                "admission_day {t:?} is neither a day nor \"none\""
            ))),
        }
    }
}

/// One nurse's rooms, shift by shift.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct NurseRooms {
    pub id: String,
    #[serde(default)]
    pub assignments: Vec<ShiftRooms>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ShiftRooms {
    pub day: usize,
    pub shift: String,
    #[serde(default)]
    pub rooms: Vec<String>,
}
