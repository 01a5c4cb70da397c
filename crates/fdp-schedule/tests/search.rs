//! The search and the lower bound on instances drawn with a planted
//! feasible schedule, from small to competition size.
//!
//! In a debug build the search also checks, at its end, that the costs it
//! kept move by move equal the schedule priced afresh.

use std::time::Duration;

use fdp_schedule::ihtc::{
    construct, evaluate, lower_bound, price, search, Problem, Schedule, SearchOptions,
};
use fdp_synth::ihtc::{generate, IhtcSize};

fn options(moves: u64, seed: u64) -> SearchOptions {
    SearchOptions {
        // The move budget ends each run; the time limit is a backstop.
        time_limit: Duration::from_secs(600),
        threads: 1,
        max_moves: Some(moves),
        seed,
    }
}

#[test]
fn the_search_is_feasible_and_beats_the_planted_schedule_at_every_size() {
    for (size, moves) in [
        (IhtcSize::small(), 100_000),
        (IhtcSize::medium(), 200_000),
        (IhtcSize::competition(), 300_000),
    ] {
        let drawn = generate(11, &size);
        let planted = evaluate(&drawn.instance, &drawn.planted).unwrap();
        let problem = Problem::new(&drawn.instance).unwrap();
        let first = construct(&problem);
        let greedy = price(&problem, &first);
        let found = search(&problem, &first, &options(moves, 1));
        let cost = found.evaluation.total_cost();
        assert!(
            found.evaluation.is_feasible(),
            "{size:?}:\n{}",
            found.evaluation
        );
        assert!(
            cost <= planted.total_cost(),
            "{size:?}: the search's {cost} is dearer than the planted {}",
            planted.total_cost()
        );
        assert!(
            cost <= greedy.total_cost() || !greedy.is_feasible(),
            "{size:?}: the search's {cost} is dearer than its start {}",
            greedy.total_cost()
        );
        // No schedule can beat the bound: not the plant, not the search.
        let bound = lower_bound(&problem).total();
        assert!(bound > 0, "{size:?}: an empty bound");
        assert!(
            bound <= cost,
            "{size:?}: bound {bound} above a schedule costing {cost}"
        );
        assert!(
            bound <= planted.total_cost(),
            "{size:?}: bound {bound} above the plant"
        );
    }
}

#[test]
fn every_mandatory_patient_is_admitted_from_a_start_that_leaves_all_out() {
    let drawn = generate(5, &IhtcSize::medium());
    let problem = Problem::new(&drawn.instance).unwrap();
    let nobody = Schedule::empty(&problem);
    let start = price(&problem, &nobody);
    assert!(start.violations[4] > 20, "{start}");
    let found = search(&problem, &nobody, &options(200_000, 3));
    assert!(found.evaluation.is_feasible(), "{}", found.evaluation);
}

#[test]
fn the_same_seed_and_move_budget_find_the_same_schedule() {
    let drawn = generate(2, &IhtcSize::small());
    let problem = Problem::new(&drawn.instance).unwrap();
    let first = construct(&problem);
    let a = search(&problem, &first, &options(50_000, 9));
    let b = search(&problem, &first, &options(50_000, 9));
    assert_eq!(a.schedule.admission, b.schedule.admission);
    assert_eq!(a.evaluation, b.evaluation);
    assert_eq!(a.moves, b.moves);
}

#[test]
fn several_threads_keep_the_best_run() {
    let drawn = generate(4, &IhtcSize::small());
    let problem = Problem::new(&drawn.instance).unwrap();
    let first = construct(&problem);
    let one = search(&problem, &first, &options(40_000, 1));
    let two = search(
        &problem,
        &first,
        &SearchOptions {
            threads: 2,
            ..options(40_000, 1)
        },
    );
    // The first of the two runs has the same seed as the single run.
    assert!(two.evaluation.total_cost() <= one.evaluation.total_cost());
    assert_eq!(two.moves, 2 * one.moves);
}

#[test]
fn a_written_schedule_prices_the_same_read_back() {
    let drawn = generate(8, &IhtcSize::medium());
    let problem = Problem::new(&drawn.instance).unwrap();
    let found = search(&problem, &construct(&problem), &options(100_000, 2));
    let solution = problem.write(&found.schedule);
    let text = serde_json::to_string(&solution).unwrap();
    let back = evaluate(&drawn.instance, &serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(back, found.evaluation);
}

/// Hostile figures in an instance file: a skill need in the billions, a
/// stay past counting, no rooms and no theatres at all. Each is refused by
/// name or searched without a panic, and what is searched still prices as
/// the validator prices it.
#[test]
fn hostile_figures_are_refused_by_name_or_searched_without_a_panic() {
    let drawn = generate(6, &IhtcSize::small());

    let mut huge_skill = drawn.instance.clone();
    huge_skill.patients[0].skill_level_required[0] = 1_000_000_000_000;
    huge_skill.patients[0].mandatory = true;
    huge_skill.patients[0].surgery_due_day = Some(huge_skill.days - 1);
    let problem = Problem::new(&huge_skill).unwrap();
    let found = search(&problem, &construct(&problem), &options(20_000, 1));
    // No nurse can meet the need: admitting the patient would cost more
    // than leaving a mandatory patient out, so the search leaves them out.
    assert!(
        found.schedule.admission[0].is_none(),
        "{}",
        found.evaluation
    );
    assert_eq!(found.evaluation.violations[4], 1, "{}", found.evaluation);
    assert!(found.evaluation.costs[1] < 1_000, "{}", found.evaluation);

    let mut endless = drawn.instance.clone();
    endless.patients[1].length_of_stay = usize::MAX / 2;
    let e = Problem::new(&endless).unwrap_err().to_string();
    assert!(e.contains("p001") && e.contains("past counting"), "{e}");

    let mut nowhere = drawn.instance.clone();
    nowhere.rooms.clear();
    nowhere.occupants.clear();
    nowhere.operating_theaters.clear();
    for p in &mut nowhere.patients {
        p.incompatible_room_ids.clear();
    }
    let problem = Problem::new(&nowhere).unwrap();
    let found = search(&problem, &construct(&problem), &options(20_000, 1));
    let mandatory = nowhere.patients.iter().filter(|p| p.mandatory).count() as i64;
    assert_eq!(
        found.evaluation.violations[4], mandatory,
        "{}",
        found.evaluation
    );
    assert!(found.schedule.admission.iter().all(Option::is_none));
}
