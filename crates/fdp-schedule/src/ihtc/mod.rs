//! The Integrated Healthcare Timetabling problem of IHTC-2024, exactly as
//! the competition published it.
//!
//! Elective patients are admitted on a day inside their window (mandatory
//! ones within the horizon, optional ones as capacity allows), each to a
//! room and, on the day of admission, to an operating theatre; every
//! occupied room is covered by a nurse in every shift. [`files`] holds the
//! instance and solution formats, [`Problem`] an instance resolved to
//! indices, and [`evaluate`] prices a solution: the violations of the nine
//! hard constraints and the eight soft costs, printed in the validator's
//! own layout, so that a figure here can be set beside a published one.
//! [`construct`] builds a first schedule greedily and [`search`] improves
//! it by simulated annealing; [`lower_bound`] says how far from the best
//! possible it may still be.

pub mod bound;
pub mod construct;
pub mod evaluate;
pub mod files;
pub mod problem;
pub mod search;

pub use bound::{lower_bound, Bound};
pub use construct::construct;
pub use evaluate::{price, Evaluation, COSTS, VIOLATIONS};
pub use files::{AdmissionDay, Instance, Solution, Weights};
pub use problem::{Admission, Problem, Schedule};
pub use search::{search, SearchOptions, SearchOutcome};

/// What is wrong with an instance or a solution, by name.
#[derive(Debug, thiserror::Error)]
pub enum IhtcError {
    #[error("the instance is not usable: {0}")]
    Instance(String),
    #[error("the solution does not fit its instance: {0}")]
    Solution(String),
}

/// Price `solution` against `instance`.
pub fn evaluate(instance: &Instance, solution: &Solution) -> Result<Evaluation, IhtcError> {
    let problem = Problem::new(instance)?;
    let schedule = problem.read(solution)?;
    Ok(price(&problem, &schedule))
}

#[cfg(test)]
mod tests;
