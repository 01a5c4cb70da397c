//! Scheduling elective patients into beds and theatres, and nurses onto
//! the rooms they fill.
//!
//! The problem is the one the Integrated Healthcare Timetabling
//! Competition 2024 (IHTC-2024) published, so that a schedule's quality is
//! measured against the results of the teams that took part rather than
//! claimed. [`ihtc`] reads the competition's instance and solution files
//! and prices a solution exactly as the competition did: the violations of
//! its nine hard constraints and its eight soft costs.
//!
//! ```
//! use fdp_schedule::ihtc::{evaluate, Instance, Solution};
//!
//! let instance: Instance = serde_json::from_str(r#"{
//!   "days": 2, "skill_levels": 2, "shift_types": ["early", "late", "night"],
//!   "age_groups": ["adult", "elderly"],
//!   "weights": {"room_mixed_age": 1, "room_nurse_skill": 1, "continuity_of_care": 1,
//!               "nurse_eccessive_workload": 1, "open_operating_theater": 1,
//!               "surgeon_transfer": 1, "patient_delay": 1, "unscheduled_optional": 10},
//!   "occupants": [],
//!   "patients": [{"id": "p0", "mandatory": false, "gender": "A", "age_group": "adult",
//!                 "length_of_stay": 1, "surgery_release_day": 0, "surgery_duration": 60,
//!                 "surgeon_id": "s0", "incompatible_room_ids": [],
//!                 "workload_produced": [1, 1, 1], "skill_level_required": [0, 0, 0]}],
//!   "surgeons": [{"id": "s0", "max_surgery_time": [480, 480]}],
//!   "operating_theaters": [{"id": "t0", "availability": [480, 480]}],
//!   "rooms": [{"id": "r0", "capacity": 2}],
//!   "nurses": []
//! }"#).unwrap();
//! // Leaving the one optional patient unscheduled costs its weight.
//! let nobody: Solution = serde_json::from_str(r#"{"patients": [], "nurses": []}"#).unwrap();
//! let priced = evaluate(&instance, &nobody).unwrap();
//! assert!(priced.is_feasible());
//! assert_eq!(priced.total_cost(), 10);
//! ```

pub mod ihtc;
pub mod plan;
