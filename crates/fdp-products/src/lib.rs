//! # fdp-products: what staff use the instance for
//!
//! [`platform`] is the one extension point every product plugs into: a
//! [`platform::Product`] declares what it reads and for which purposes,
//! takes only governed input and returns output whose every column says
//! where it comes from; [`platform::run_view`] is the one path from a
//! request to its answer, and [`built_in`] lists the products built in,
//! one line each at the foot of this file. A product never opens a table
//! itself.
//!
//! - [`bed_board`]: the live bed board (care coordination), over the live
//!   census, with discharge readiness and bed status as its actions.
//! - [`discharge_delays`]: patients medically optimised and still in a bed,
//!   by ward and one by one.
//! - [`capacity`]: places free across the ICB, and where each medically
//!   optimised patient on the bed board could go today.
//! - [`daily_return`]: the daily operational return, as the federated
//!   questions a collecting instance asks of every member.
//! - [`referrals`]: discharge referrals to care providers, the record they
//!   carry, and what a policy lets be seen of them.
//! - [`waiting_list`]: the patient tracking list under the national RTT
//!   rules (elective recovery), its breach forecast and its shape.
//! - [`theatre_sessions`]: for the theatre scheduler, how much of each
//!   planned theatre session was spent with a patient in theatre, capped
//!   and uncapped, per session and per theatre or specialty and week.
//! - [`theatre_planner`]: the lists of the coming weeks filled from the
//!   PTL by the scheduling engine under priority limits, 6-4-2 and
//!   pre-operative readiness, each patient with why; the planner accepts
//!   proposals as booking requests.
//! - [`mutual_aid`]: theatre time a trust will not use, offered across
//!   the ICB, and the patients on another trust's list each slot suits.
//! - [`population_health`]: cohorts as data (the QOF diabetes register,
//!   the eight care processes, flu 2026/27, MMR), their uptake by every
//!   demographic cut and pair with intervals, the groups falling behind,
//!   and invitation lists for direct care.
//! - [`vaccine_stock`]: each site's vaccine stock by dm+d product and
//!   batch against the coming days' bookings: days of cover, doses at risk
//!   of expiry, and wastage with its reasons.
//! - [`supply_chain`]: every supplies item at every ward from counts and
//!   movements, AMC corrected for stock-outs, forecasts by demand pattern,
//!   the shortages coming, and transfers suggested before orders.
//! - [`declared`]: products declared as data (a folder with `product.toml`
//!   and SQL, no Rust), checked against the model and the policy.

pub mod capacity;
pub mod declared;
pub mod installed;
pub mod mutual_aid;
pub mod platform;
mod query_rows;
pub mod referrals;
#[cfg(test)]
mod testing;

/// Declares each built-in product's module and registers the product: a
/// coded product is its folder under `src/` and its line in the list below.
macro_rules! built_in {
    ($($module:ident :: $product:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// The products built into OpenFDP, in the order listed.
        pub fn built_in() -> Vec<std::sync::Arc<dyn platform::Product>> {
            vec![$(std::sync::Arc::new(<$module::$product>::default())),*]
        }
    };
}

built_in! {
    bed_board::LiveBoard,
    discharge_delays::DischargeDelays,
    long_stays::LongStays,
    daily_return::DailyReturn,
    waiting_list::WaitingList,
    theatre_sessions::TheatreSessions,
    theatre_planner::TheatrePlanner,
    population_health::PopulationHealth,
    vaccine_stock::VaccineStock,
    supply_chain::SupplyChain,
}
