//! `fdp demo`: a federation on loopback. Three acute trusts (each fed by
//! its own simulated PAS), their ICB, a care-home group, a virtual-ward
//! service and the national instance, each an instance with its own data
//! directory, keys and configuration under the demo's directory.
//!
//! The first run makes a federation authority, certifies every instance,
//! writes each one's `instance.toml` (peers, ports) and records the trusts'
//! IG leads' approval of the national daily operational return. Later runs
//! start from what is there. While it runs:
//! - each trust's PAS sends ADT, and a simulated discharge coordinator
//!   marks the longest-staying patient medically optimised now and then;
//! - each trust carries an elective waiting list, the four weeks of theatre
//!   lists that have run with their case times (so utilisation shows), and
//!   six weeks of lists to come with their patients' pre-operative
//!   assessments (so 6-4-2 shows), all from `fdp-synth`; it publishes the
//!   free time on the lists inside its two-week lock to the ICB;
//! - the care providers publish free places to the ICB, changing a figure
//!   every minute;
//! - mutual aid: the first trust's waiting-list manager sends its
//!   longest-waiting suitable patient for a slot the second trust offers,
//!   and the second trust's theatre scheduler accepts, moving the pathway;
//! - each trust's supplies lead publishes its supplies position (what it
//!   can spare and what it must order, item by item) to the ICB, which
//!   shows where spare stock sits across the area (`/supplies/area`);
//! - the national instance collects the daily return from each trust, for
//!   a census instant every `--return-every-minutes`;
//! - the first trust's own declared product (a discharge-delays summary)
//!   is offered to the ICB through the marketplace, and the second trust's
//!   IG lead, finding it listed there, approves and installs it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use fdp_federation::capacity::{Offer, OwnCapacity};
use fdp_federation::questions::{Approvals, Reach, ValueRange};
use fdp_federation::returns::ReturnDefinition;
use fdp_federation::{FederationCa, InstanceIdentity, OrgRole};
use fdp_ingest::adt::census::DischargeReadiness;
use fdp_ingest::live::StaffAction;
use tokio::sync::watch;

use fdp_server::mutual_aid::MutualAid;
use fdp_server::supplies::Supplies;

use crate::demo::DemoArgs;
use crate::instance::{self, InstanceConfig, Running};

/// The product the first trust wrote, as declared in `examples/products`:
/// published under its own ODS code.
const AUTHORED: [(&str, &str); 3] = [
    (
        "product.toml",
        include_str!("../../../examples/products/discharge-delays-summary/product.toml"),
    ),
    (
        "by-ward.sql",
        include_str!("../../../examples/products/discharge-delays-summary/by-ward.sql"),
    ),
    (
        "delayed-by-ward.sql",
        include_str!("../../../examples/products/discharge-delays-summary/delayed-by-ward.sql"),
    ),
];

/// The mappings the trusts' elective and theatre extracts are loaded with,
/// as `mappings/` holds them.
const MAPPINGS: [(&str, &str); 16] = [
    (
        "waiting-list.toml",
        include_str!("../../../mappings/waiting-list.toml"),
    ),
    (
        "waiting-list-pathways.toml",
        include_str!("../../../mappings/waiting-list-pathways.toml"),
    ),
    (
        "waiting-list-procedures.toml",
        include_str!("../../../mappings/waiting-list-procedures.toml"),
    ),
    (
        "rtt-activity.toml",
        include_str!("../../../mappings/rtt-activity.toml"),
    ),
    (
        "theatre-sessions.toml",
        include_str!("../../../mappings/theatre-sessions.toml"),
    ),
    (
        "theatre-bookings.toml",
        include_str!("../../../mappings/theatre-bookings.toml"),
    ),
    (
        "theatre-case-times.toml",
        include_str!("../../../mappings/theatre-case-times.toml"),
    ),
    (
        "pre-op-assessments.toml",
        include_str!("../../../mappings/pre-op-assessments.toml"),
    ),
    (
        "pharmacy-vaccine-stock.toml",
        include_str!("../../../mappings/pharmacy-vaccine-stock.toml"),
    ),
    (
        "vaccination-bookings.toml",
        include_str!("../../../mappings/vaccination-bookings.toml"),
    ),
    (
        "vaccinations-given.toml",
        include_str!("../../../mappings/vaccinations-given.toml"),
    ),
    (
        "vaccine-movements.toml",
        include_str!("../../../mappings/vaccine-movements.toml"),
    ),
    (
        "supplies-catalogue.toml",
        include_str!("../../../mappings/supplies-catalogue.toml"),
    ),
    (
        "supplies-ward-stock.toml",
        include_str!("../../../mappings/supplies-ward-stock.toml"),
    ),
    (
        "supplies-transactions.toml",
        include_str!("../../../mappings/supplies-transactions.toml"),
    ),
    (
        "supplies-batch-stock.toml",
        include_str!("../../../mappings/supplies-batch-stock.toml"),
    ),
];

/// Entries on each trust's waiting list.
const PATHWAYS: usize = 3_000;

/// Where the first trust keeps the product it wrote.
fn authored_dir(root: &Path) -> PathBuf {
    root.join("RXA")
        .join("authored")
        .join("discharge-delays-summary")
}

/// One organisation in the demo.
struct Member {
    ods: &'static str,
    role: OrgRole,
    name: &'static str,
    /// The page its link opens.
    landing: &'static str,
}

const MEMBERS: &[Member] = &[
    Member {
        ods: "RXA",
        role: OrgRole::Trust,
        name: "Aire Valley Hospitals NHS Trust",
        landing: "/bed-board",
    },
    Member {
        ods: "RXB",
        role: OrgRole::Trust,
        name: "Calder General NHS Trust",
        landing: "/bed-board",
    },
    Member {
        ods: "RXC",
        role: OrgRole::Trust,
        name: "Wharfe Royal NHS Trust",
        landing: "/bed-board",
    },
    Member {
        ods: "QXA",
        role: OrgRole::Icb,
        name: "Three Rivers Integrated Care Board",
        landing: "/federation",
    },
    Member {
        ods: "VCH",
        role: OrgRole::CareProvider,
        name: "Hillside Care Homes",
        landing: "/capacity",
    },
    Member {
        ods: "VVW",
        role: OrgRole::CareProvider,
        name: "Three Rivers Virtual Wards",
        landing: "/capacity",
    },
    Member {
        ods: "X24",
        role: OrgRole::National,
        name: "National instance",
        landing: "/returns",
    },
];

/// Who each member exchanges messages with.
fn peers_of(m: &Member) -> Vec<&'static Member> {
    let of = |roles: &[OrgRole]| -> Vec<&'static Member> {
        MEMBERS
            .iter()
            .filter(|p| p.ods != m.ods && roles.contains(&p.role))
            .collect()
    };
    match m.role {
        // Trusts exchange booking requests for mutual aid.
        OrgRole::Trust => of(&[
            OrgRole::Trust,
            OrgRole::Icb,
            OrgRole::National,
            OrgRole::CareProvider,
        ]),
        OrgRole::Icb => of(&[OrgRole::Trust, OrgRole::CareProvider]),
        OrgRole::CareProvider => of(&[OrgRole::Trust, OrgRole::Icb]),
        OrgRole::National => of(&[OrgRole::Trust]),
    }
}

fn roles_of(role: OrgRole) -> &'static str {
    match role {
        OrgRole::Trust => {
            r#"["clinician", "bed-manager", "waiting-list-manager", "theatre-scheduler", "vaccination-lead", "supplies-lead", "analyst", "information-governance-lead"]"#
        }
        OrgRole::CareProvider => r#"["clinician", "bed-manager", "analyst"]"#,
        OrgRole::Icb | OrgRole::National => r#"["analyst", "information-governance-lead"]"#,
    }
}

/// Loopback ports for the members' federation listeners, chosen below the
/// kernel's ephemeral range. A port taken from that range and released again
/// can be handed straight back to any listener bound to port 0 (the demo's own
/// HTTP and MLLP listeners) or to an outgoing connection before its member
/// starts, and that member then fails to listen. Below the range, only
/// another program can take it.
fn federation_ports(count: usize) -> Result<Vec<u16>> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (
        10_000u16,
        ephemeral_low.saturating_sub(1).max(10_000 + 1_000),
    );
    // Start somewhere different on each machine and run, so that two demos
    // set up side by side do not probe the same ports in the same order.
    let span = u32::from(high - low);
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    let mut ports = Vec::with_capacity(count);
    for step in 0..span {
        if ports.len() == count {
            break;
        }
        let port = low + ((seed.wrapping_add(step)) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    anyhow::ensure!(
        ports.len() == count,
        "no {count} free loopback ports between {low} and {high} for the members' federation listeners"
    );
    Ok(ports)
}

/// The question the ICB asks its trusts about flu uptake.
pub const FLU_UPTAKE: &str = "population-health/flu-2026-27-uptake";

/// A trust's synthetic registered population (4,000 people on Trafford's
/// real areas, ids apart from the other trusts'), the UK reference data
/// with every patient's area, and its IG lead's approval of the ICB's
/// flu uptake question for any date from a year back to today. Skipped,
/// saying so, where there is no reference folder.
async fn population(
    root: &Path,
    dir: &Path,
    config: &InstanceConfig,
    reference: &Path,
    trust_no: u64,
    today: chrono::NaiveDate,
) -> Result<()> {
    if !reference.is_dir() {
        println!(
            "no UK reference folder at {}: the trusts have no registered population (give --reference)",
            reference.display()
        );
        return Ok(());
    }
    let cohorts = root.join("cohorts");
    std::fs::create_dir_all(&cohorts)?;
    for (name, text) in fdp_products::population_health::COHORTS {
        std::fs::write(cohorts.join(name), text)?;
    }
    crate::synth::population(crate::synth::PopulationArgs {
        data_dir: dir.to_path_buf(),
        people: 4_000,
        reference: reference.to_path_buf(),
        sub_icb: "02A".into(),
        cohorts,
        as_at: today,
        seed: 7 + trust_no,
        first_id: 1 + trust_no * 1_000_000,
        truth: None,
    })
    .await?;
    crate::reference::run(crate::reference::ReferenceCommand::Load {
        at: crate::product::Instance {
            data_dir: dir.to_path_buf(),
            config: Some(dir.join("instance.toml")),
        },
        folder: reference.to_path_buf(),
        areas: crate::reference::AreaArgs::default(),
    })
    .await?;
    use fdp_products::platform::Product;
    let governance = config.governance(dir)?;
    let spec = fdp_products::population_health::PopulationHealth
        .manifest()
        .offers
        .questions
        .into_iter()
        .find(|q| q.name == FLU_UPTAKE)
        .context("the population-health product offers the flu uptake question")?;
    let question =
        fdp_federation::questions::Question::from_spec(&spec).map_err(anyhow::Error::msg)?;
    Approvals::open(dir)
        .approve(
            &governance,
            "QXA",
            &question,
            "demo information-governance lead",
            "the ICB's flu uptake by group replaces the practices' monthly spreadsheets",
            Reach {
                ranges: [(
                    "as_at".to_string(),
                    ValueRange {
                        min: "now-365d".into(),
                        max: "now".into(),
                    },
                )]
                .into(),
                as_of_days: None,
            },
        )
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// How far the demo's IG leads approve the daily return: its census
/// instant, and the tables as they stood then, up to a week back.
fn daily_return_reach() -> Reach {
    Reach {
        ranges: [(
            "census_at".to_string(),
            ValueRange {
                min: "now-7d".into(),
                max: "now".into(),
            },
        )]
        .into(),
        as_of_days: Some(7),
    }
}

/// A trust's elective waiting list, its theatre lists of the four weeks
/// to `today` (with their case times) and the six weeks from it (with
/// their patients' assessments), its vaccine stock counted today with
/// the clinics' bookings, doses given and stock movements, and the year of
/// ward supplies to today (catalogue, counts, movements, batches), made by
/// `fdp-synth` from `seed` and loaded through the extract mappings like any
/// trust's files (their planted faults go to quarantine).
async fn elective_extracts(
    root: &Path,
    dir: &Path,
    seed: u64,
    today: chrono::NaiveDate,
) -> Result<()> {
    use fdp_ingest::extract;
    let trust = fdp_synth::Trust::generate(seed, fdp_synth::TrustSpec::default())?;
    let list = fdp_synth::ElectiveList::generate(
        &trust,
        seed,
        &fdp_synth::ElectiveSpec {
            as_at: today,
            pathways: PATHWAYS,
            problem_share: 0.01,
        },
    )?;
    // Six weeks of lists to come, so that 6-4-2 has every stage.
    let spec = fdp_synth::extracts::ExtractSpec {
        start: today,
        days: 42,
        ..Default::default()
    };
    let theatre = fdp_synth::extracts::generate(&trust, seed, &spec)?
        .into_iter()
        .filter(|f| {
            [
                "theatre_sessions",
                "theatre_bookings",
                "theatre_case_times",
                "pre_op_assessments",
                "vaccine_stock",
                "vaccination_bookings",
                "vaccinations_given",
                "vaccine_movements",
            ]
            .iter()
            .any(|p| f.name.starts_with(p))
        });
    let drop = dir.join("extracts");
    std::fs::create_dir_all(&drop)?;
    let day = today.format("%Y%m%d");
    let mut files = vec![
        (
            format!("waiting_list_{day}.csv"),
            list.waiting_list_csv().into_bytes(),
        ),
        (
            format!("rtt_activity_{day}.csv"),
            list.rtt_activity_csv().into_bytes(),
        ),
    ];
    files.extend(theatre.map(|f| (f.name, f.bytes)));
    let supplies = fdp_synth::extracts::supply_year(
        &trust,
        seed,
        &fdp_synth::extracts::SupplyYearSpec {
            end: today,
            days: 365,
        },
    );
    files.extend(supplies.files.into_iter().map(|f| (f.name, f.bytes)));
    let mappings = extract::read_mappings(&root.join("mappings"))
        .map_err(|e| anyhow::anyhow!("reading the demo's mappings: {e}"))?;
    let run_id = format!("demo-{}", Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    for (name, bytes) in files {
        let path = drop.join(&name);
        std::fs::write(&path, bytes)?;
        crate::ingest::load_extract(dir, &mappings, &path, &run_id).await?;
    }
    Ok(())
}

/// Make the authority, the identities, the configurations and the
/// approvals: once, on the first run.
async fn set_up(root: &Path, return_every_minutes: u32, seed: u64, reference: &Path) -> Result<()> {
    let ca = FederationCa::create(&root.join("ca"), "Three Rivers demo federation")?;
    let mut free = federation_ports(MEMBERS.len())?.into_iter();
    let mappings = root.join("mappings");
    std::fs::create_dir_all(&mappings)?;
    for (name, text) in MAPPINGS {
        std::fs::write(mappings.join(name), text)?;
    }
    let today = Utc::now().date_naive();
    let mut trust_no = 0u64;
    let mut ports = std::collections::BTreeMap::new();
    for m in MEMBERS {
        let dir = root.join(m.ods);
        std::fs::create_dir_all(&dir)?;
        InstanceIdentity::init(&dir, m.ods, m.role, &ca)
            .with_context(|| format!("certifying {}", m.ods))?;
        ports.insert(m.ods, free.next().context("federation port")?);
    }
    for m in MEMBERS {
        let dir = root.join(m.ods);
        let mut toml = format!(
            "# {name} ({role}) in the demo federation\nods = \"{ods}\"\n\n[principal.demo]\nroles = {roles}\n\n[federation]\nlisten = \"127.0.0.1:{port}\"\n",
            name = m.name,
            role = m.role,
            ods = m.ods,
            roles = roles_of(m.role),
            port = ports[m.ods],
        );
        if m.role == OrgRole::National {
            toml.push_str(&format!(
                "\n[federation.returns]\nevery_minutes = {return_every_minutes}\ngrace_secs = 20\n"
            ));
        }
        for p in peers_of(m) {
            toml.push_str(&format!(
                "\n[[federation.peer]]\nods = \"{}\"\nrole = \"{}\"\naddress = \"127.0.0.1:{}\"\ncertificate = {:?}\n",
                p.ods,
                p.role,
                ports[p.ods],
                fdp_federation::identity::dir_in(&root.join(p.ods)).join("instance.pem"),
            ));
        }
        std::fs::write(dir.join("instance.toml"), toml)?;
        let config = InstanceConfig::load(&dir.join("instance.toml"))?;
        if m.role == OrgRole::Trust {
            elective_extracts(root, &dir, seed + trust_no, today)
                .await
                .with_context(|| {
                    format!(
                        "making {}'s waiting list, theatre lists and vaccine stock",
                        m.ods
                    )
                })?;
            trust_no += 1;
            let governance = config.governance(&dir)?;
            let approvals = Approvals::open(&dir);
            for q in ReturnDefinition::daily_operational().questions {
                approvals
                    .approve(
                        &governance,
                        "X24",
                        &q,
                        "demo information-governance lead",
                        "the daily operational return replaces the keyed situation report",
                        daily_return_reach(),
                    )
                    .map_err(anyhow::Error::msg)?;
            }
        }
        if m.role == OrgRole::Trust {
            population(root, &dir, &config, reference, trust_no - 1, today)
                .await
                .with_context(|| format!("giving {} its registered population", m.ods))?;
        }
        OwnCapacity::open(&dir)
            .set(None, first_offers(m))
            .map_err(anyhow::Error::msg)?;
    }
    let authored = authored_dir(root);
    std::fs::create_dir_all(&authored)?;
    for (name, text) in AUTHORED {
        let text = text.replace("publisher = \"RXX\"", "publisher = \"RXA\"");
        std::fs::write(authored.join(name), text)?;
    }
    Ok(())
}

/// The marketplace at work: the first trust (RXA) offers the product it
/// wrote to the ICB; the second (RXB) finds it listed there and its IG
/// lead approves it, which installs it. Skipped once RXB has it.
async fn marketplace_tour(root: &Path, running: &[(&Member, Running)]) -> Result<String> {
    use fdp_federation::marketplace::Marketplace;
    let id = "discharge-delays-summary";
    let fed_of = |ods: &str| {
        running
            .iter()
            .find(|(m, _)| m.ods == ods)
            .and_then(|(_, r)| r.federation.clone())
            .with_context(|| format!("{ods} is not in the federation"))
    };
    let (rxa, rxb) = (root.join("RXA"), root.join("RXB"));
    if fdp_products::installed::Installed::open(&rxb)
        .all()?
        .contains_key(id)
    {
        return Ok(format!(
            "{id}, written at RXA, is installed at RXB through the marketplace"
        ));
    }
    let config = InstanceConfig::load(&rxa.join("instance.toml"))?;
    let gov = config.governance(&rxa)?;
    let who = config.local_principal("demo");
    let product = fdp_products::declared::DeclaredProduct::load(&authored_dir(root), gov.policy())?;
    let fed = fed_of("RXA")?;
    crate::marketplace::offer_to_peers(
        &gov,
        &who,
        &fed,
        &Marketplace::open(&rxa),
        &product,
        &["QXA".to_string()],
    )
    .await?;

    let config = InstanceConfig::load(&rxb.join("instance.toml"))?;
    let gov = config.governance(&rxb)?;
    let who = config.local_principal("demo");
    let fed = fed_of("RXB")?;
    crate::marketplace::refresh(&gov, &fed, &Marketplace::open(&rxb)).await;
    crate::marketplace::Decide {
        data_dir: &rxb,
        gov: &gov,
        who: &who,
        identity: &fed.identity,
        fed: Some(&*fed),
    }
    .decide(
        id,
        None,
        true,
        "reviewed by the demo's IG lead: reads no identifying columns",
    )
    .await?;
    Ok(format!(
        "{id}, written at RXA, was offered to QXA and installed at RXB by its IG lead"
    ))
}

/// A trust's parts, owned, as mutual aid works with them.
struct AidParts {
    governance: Arc<fdp_govern::Governance>,
    tables: fdp_store::StoredTables,
    federation: Option<Arc<fdp_federation::Federation>>,
    requests: Arc<fdp_federation::mutual_aid::BookingRequests>,
    offers: Arc<fdp_federation::supplies::SupplyOffers>,
    fhir: Arc<fdp_server::fhir::FhirService>,
    dir: PathBuf,
}

impl AidParts {
    fn of(running: &[(&Member, Running)], root: &Path, ods: &str) -> Result<AidParts> {
        let (_, r) = running
            .iter()
            .find(|(m, _)| m.ods == ods)
            .with_context(|| format!("{ods} is not running"))?;
        Ok(AidParts {
            governance: r.governance.clone(),
            tables: r.tables.clone(),
            federation: r.federation.clone(),
            requests: r.booking_requests.clone(),
            offers: r.supply_offers.clone(),
            fhir: r.fhir.clone(),
            dir: root.join(ods),
        })
    }

    fn aid(&self) -> MutualAid<'_> {
        MutualAid {
            governance: &self.governance,
            tables: &self.tables,
            registry: fdp_products::platform::Registry::builtin(),
            federation: self.federation.as_ref(),
            requests: &self.requests,
            intake: self.fhir.as_ref(),
            data_dir: &self.dir,
        }
    }

    fn supplies(&self) -> Supplies<'_> {
        Supplies {
            governance: &self.governance,
            tables: &self.tables,
            registry: fdp_products::platform::Registry::builtin(),
            federation: self.federation.as_ref(),
            offers: &self.offers,
            intake: self.fhir.as_ref(),
            data_dir: &self.dir,
        }
    }
}

/// The demo principal at `ods`, acting in `role` for direct care.
fn demo_as(root: &Path, ods: &str, role: &str) -> Result<fdp_govern::SessionRequest> {
    demo_for(root, ods, role, fdp_govern::Purpose::DirectCare)
}

/// The demo principal at `ods`, acting in `role` for `purpose`.
fn demo_for(
    root: &Path,
    ods: &str,
    role: &str,
    purpose: fdp_govern::Purpose,
) -> Result<fdp_govern::SessionRequest> {
    let config = InstanceConfig::load(&root.join(ods).join("instance.toml"))?;
    let mut req =
        fdp_govern::SessionRequest::new(config.local_principal("demo"), purpose, "instance");
    req.role = Some(role.to_string());
    Ok(req)
}

/// Every trust's supplies lead publishes its supplies position to the ICB,
/// so that the ICB sees where spare stock sits across the area. Run after
/// mutual aid, so that working out the positions does not slow the
/// simulated PASes as they fill the hospitals.
async fn supplies_tour(root: PathBuf, trusts: &[(&'static str, AidParts)]) -> Result<String> {
    let mut said = Vec::new();
    for (ods, parts) in trusts {
        let req = demo_for(&root, ods, "supplies-lead", fdp_govern::Purpose::Operations)?;
        let (_, items, _) = parts
            .supplies()
            .publish(&req)
            .await
            .with_context(|| format!("publishing {ods}'s supplies position"))?;
        let spare = items.iter().filter(|i| i.critical && i.spare > 0.0).count();
        let short = items
            .iter()
            .filter(|i| i.critical && i.to_order > 0.0)
            .count();
        said.push(format!(
            "{ods} has {spare} critical items to spare and {short} to order"
        ));
    }
    Ok(said.join("; "))
}

/// Whether `secs` from `since` are up, after a half-second wait if not.
async fn gave_up(since: std::time::Instant, secs: u64) -> bool {
    if since.elapsed() > Duration::from_secs(secs) {
        return true;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    false
}

/// Mutual aid at work: every trust publishes the free time on its locked
/// lists; the first trust (RXA) sends its longest-waiting suitable patient
/// for a slot the second (RXB) offers, and RXB's theatre scheduler accepts.
/// Once RXA has sent one, later runs say where it has got to.
async fn mutual_aid_tour(root: PathBuf, trusts: &[(&'static str, AidParts)]) -> Result<String> {
    let root = root.as_path();
    let today = Utc::now().date_naive();
    for (ods, parts) in trusts {
        parts
            .aid()
            .publish_theatre_slots(&demo_as(root, ods, "theatre-scheduler")?, today)
            .await
            .with_context(|| format!("publishing {ods}'s theatre slots"))?;
    }
    let at = |ods: &str| {
        trusts
            .iter()
            .find(|(o, _)| *o == ods)
            .map(|(_, p)| p.aid())
            .with_context(|| format!("{ods} is not running"))
    };
    let (rxa, rxb) = (at("RXA")?, at("RXB")?);
    let fed = rxa
        .federation
        .context("RXA is not in the federation")?
        .clone();
    if let Some(r) = rxa.requests.current(&fed)?.into_iter().next() {
        return Ok(format!(
            "RXA's request for pathway {} on RXB's session {} ({}) is {}",
            r.pathway_id,
            r.slot.session_id,
            r.slot.date,
            r.status.as_str()
        ));
    }
    let wlm = demo_as(root, "RXA", "waiting-list-manager")?;
    // RXB's slots reach the ICB through the outbox; then RXA asks for them.
    let started = std::time::Instant::now();
    let (fit, feed) = loop {
        if let Ok(feed) = fdp_federation::capacity::fetch(&fed).await {
            let fit = rxa
                .fits(&wlm, &feed)
                .await?
                .into_iter()
                .find(|f| f.publisher == "RXB" && !f.candidates.is_empty());
            if let Some(fit) = fit {
                break (fit, feed);
            }
        }
        anyhow::ensure!(
            !gave_up(started, 30).await,
            "no slot at RXB suits a patient on RXA's list"
        );
    };
    let patient = fit.candidates[0].clone();
    let sent = rxa
        .send(
            &wlm,
            "demo waiting-list manager",
            fdp_server::mutual_aid::AskedBooking {
                to: "RXB".into(),
                session_id: fit.slot.session_id.clone(),
                eal_id: patient.eal_id.clone(),
                patient_choice: "agreed by phone to travel to Calder General".into(),
                lawful_basis: "UK GDPR 6(1)(e) and 9(2)(h): direct care".into(),
            },
            &feed,
        )
        .await?;
    let started = std::time::Instant::now();
    while !rxb.requests.list()?.iter().any(|r| r.id == sent.id) {
        anyhow::ensure!(
            !gave_up(started, 30).await,
            "the booking request did not reach RXB"
        );
    }
    rxb.decide(
        &demo_as(root, "RXB", "theatre-scheduler")?,
        "demo theatre scheduler",
        &sent.id,
        true,
        None,
    )
    .await?;
    let started = std::time::Instant::now();
    while !rxa
        .requests
        .list()?
        .iter()
        .any(|r| r.id == sent.id && r.status == fdp_federation::mutual_aid::Status::Accepted)
    {
        anyhow::ensure!(
            !gave_up(started, 30).await,
            "RXB's acceptance did not reach RXA"
        );
    }
    Ok(format!(
        "RXB offered {} usable minutes on {} ({}, {}); RXA sent its longest-waiting suitable patient (pathway {}, {} weeks, {}), and RXB accepted: the pathway is on both PTLs, transferred (RTT 21)",
        fit.slot.usable_minutes,
        fit.location,
        fit.slot.date,
        fit.specialty.as_deref().unwrap_or("no specialty"),
        patient.pathway_id.as_deref().unwrap_or("?"),
        patient.rtt_weeks_waiting.unwrap_or(0),
        patient.priority_type.as_deref().unwrap_or("no priority"),
    ))
}

fn offer(kind: &str, location: &str, specialty: Option<&str>, free: u32, total: u32) -> Offer {
    Offer {
        kind: kind.into(),
        location: location.into(),
        specialty: specialty.map(str::to_string),
        free,
        total: Some(total),
        detail: None,
        updated_at: Utc::now(),
        slot: None,
    }
}

/// What each member offers when the demo is first made.
fn first_offers(m: &Member) -> Vec<Offer> {
    match (m.role, m.ods) {
        (OrgRole::CareProvider, "VCH") => vec![
            offer("residential", "Hillside House", None, 2, 30),
            offer("nursing", "Hillside Nursing Home", None, 1, 40),
            offer("dementia", "Rowan Lodge", None, 0, 24),
            offer("residential", "Beech Court", None, 3, 28),
        ],
        (OrgRole::CareProvider, _) => vec![
            offer(
                "virtual-ward",
                "Respiratory virtual ward",
                Some("respiratory"),
                6,
                40,
            ),
            offer(
                "virtual-ward",
                "Frailty virtual ward",
                Some("frailty"),
                4,
                35,
            ),
            offer(
                "virtual-ward",
                "Heart failure virtual ward",
                Some("cardiology"),
                2,
                20,
            ),
        ],
        // A trust's theatre slots are derived from its lists once it runs.
        _ => Vec::new(),
    }
}

fn port_after(base: std::net::SocketAddr, i: usize) -> std::net::SocketAddr {
    if base.port() == 0 {
        base
    } else {
        std::net::SocketAddr::new(base.ip(), base.port() + i as u16)
    }
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let root = std::path::absolute(&args.data_dir)?;
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    if !root.join("ca").join("ca.pem").exists() {
        set_up(&root, args.return_every_minutes, args.seed, &args.reference)
            .await
            .context("setting up the demo federation")?;
    }
    let started = std::time::Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut running: Vec<(&Member, Running)> = Vec::new();
    let mut pas = Vec::new();
    let mut sims = Vec::new();
    let mut trust_no = 0;
    for (i, m) in MEMBERS.iter().enumerate() {
        let dir = root.join(m.ods);
        let is_trust = m.role == OrgRole::Trust;
        let config = InstanceConfig {
            data_dir: Some(dir.clone()),
            http: Some(port_after(args.http, i)),
            mllp: is_trust.then(|| port_after(args.mllp, trust_no)),
            canonical_interval_secs: Some(5.0),
            ..InstanceConfig::load(&dir.join("instance.toml"))?
        };
        let r = instance::start(&config)
            .await
            .with_context(|| format!("starting {} ({})", m.ods, m.name))?;
        if is_trust {
            let seed = args.seed + trust_no as u64;
            let task = crate::demo::start_pas(&r, &dir, seed, args.rate, stop_rx.clone()).await?;
            pas.push(task);
            sims.push(tokio::spawn(discharge_coordinator(
                r.store.committer(),
                r.live.clone(),
                stop_rx.clone(),
            )));
            trust_no += 1;
        }
        if let Some(fed) = &r.federation {
            let own = OwnCapacity::open(&dir);
            let offers = own.offers().map_err(anyhow::Error::msg)?;
            if !offers.is_empty() {
                own.set(Some(fed), offers).map_err(anyhow::Error::msg)?;
            }
            if m.role == OrgRole::CareProvider {
                sims.push(tokio::spawn(care_home_manager(
                    fed.clone(),
                    dir.clone(),
                    stop_rx.clone(),
                )));
            }
        }
        running.push((m, r));
    }
    let tour = match marketplace_tour(&root, &running).await {
        Ok(said) => said,
        Err(e) => format!("the product tour did not finish: {e:#}"),
    };
    // Mutual aid waits on messages between instances: it runs beside the
    // demo and says how it went when it has.
    let trusts = MEMBERS
        .iter()
        .filter(|m| m.role == OrgRole::Trust)
        .map(|m| Ok((m.ods, AidParts::of(&running, &root, m.ods)?)))
        .collect::<Result<Vec<_>>>()?;
    sims.push(tokio::spawn({
        let root = root.clone();
        async move {
            match mutual_aid_tour(root.clone(), &trusts).await {
                Ok(said) => println!("Mutual aid: {said}."),
                Err(e) => println!("Mutual aid: the tour did not finish: {e:#}."),
            }
            match supplies_tour(root.clone(), &trusts).await {
                Ok(said) => println!("Supplies, published to the ICB: {said}."),
                Err(e) => println!("Supplies: the positions were not published: {e:#}."),
            }
        }
    }));
    println!(
        "OpenFDP demo: a federation of {} instances on loopback, data in {} (started in {:.1} s)",
        running.len(),
        root.display(),
        started.elapsed().as_secs_f64()
    );
    for (m, r) in &running {
        let token = r.tokens.create("demo")?;
        let http = r.http_addr.context("HTTP listener")?;
        print!(
            "  {:<4} {:<14} http://{http}{}  token {token}",
            m.ods,
            m.role.as_str(),
            m.landing
        );
        match r.mllp_addr {
            Some(mllp) => println!("  (PAS sends to MLLP {mllp})"),
            None => println!(),
        }
    }
    println!(
        "Each trust's PAS sends {:.1} ADT messages/s; the national instance collects the daily return for a census instant every {} min.",
        args.rate, args.return_every_minutes
    );
    println!("Marketplace: {tour}.");
    println!("Press Ctrl-C to stop.");

    crate::wait_for_signal().await;
    println!("Stopping…");
    let _ = stop_tx.send(true);
    for task in pas {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("a simulated PAS stopped: {e:#}"),
            Err(e) => eprintln!("a simulated PAS failed: {e}"),
        }
    }
    for s in sims {
        s.abort();
    }
    for (m, r) in running.into_iter().rev() {
        r.stop()
            .await
            .with_context(|| format!("stopping {}", m.ods))?;
    }
    Ok(())
}

/// Now and then, the longest-staying patient not yet medically optimised
/// is recorded as medically optimised, with a discharge pathway.
async fn discharge_coordinator(
    committer: fdp_store::Committer,
    live: Arc<fdp_ingest::live::Live>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(15)) => {},
            _ = stop.changed() => return,
        }
        let chosen = {
            let census = live.read().await;
            census
                .admitted()
                .filter(|s| {
                    !census
                        .readiness
                        .get(&s.admission_id)
                        .is_some_and(|r| r.medically_optimised)
                })
                .filter_map(|s| s.admitted_at_us.map(|at| (at, s.admission_id.clone())))
                .min()
        };
        let Some((_, admission_id)) = chosen else {
            continue;
        };
        // Pathways 1 to 3 mostly: those are the ones that need a place.
        let pathway = [1u8, 2, 3, 1, 0, 3][admission_id.len() % 6];
        let now = Utc::now();
        let action = StaffAction::DischargeReadiness {
            readiness: DischargeReadiness {
                admission_id,
                medically_optimised: true,
                medically_optimised_date: Some(now.format("%Y-%m-%d").to_string()),
                discharge_pathway: Some(pathway),
                waiting_for: vec![],
                expected_discharge_date: None,
                updated_by: "demo discharge coordinator".into(),
                updated_at_us: now.timestamp_micros(),
            },
        };
        if let Err(e) = fdp_ingest::live::record_action(
            &committer,
            &live,
            &action,
            "demo discharge coordinator",
        )
        .await
        {
            tracing::warn!(error = %e, "the demo discharge coordinator could not record readiness");
        }
    }
}

/// Every minute, one of the provider's figures goes up or down by one and
/// the feed is published again.
async fn care_home_manager(
    fed: Arc<fdp_federation::Federation>,
    dir: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let own = OwnCapacity::open(&dir);
    let mut turn = 0usize;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {},
            _ = stop.changed() => return,
        }
        let Ok(mut offers) = own.offers() else {
            continue;
        };
        if offers.is_empty() {
            continue;
        }
        turn += 1;
        let i = turn % offers.len();
        let o = &mut offers[i];
        let total = o.total.unwrap_or(o.free + 1);
        o.free = if turn.is_multiple_of(3) && o.free > 0 {
            o.free - 1
        } else {
            (o.free + 1).min(total)
        };
        o.updated_at = Utc::now();
        if let Err(e) = own.set(Some(&fed), offers) {
            tracing::warn!(error = %e, "the demo care home could not publish its places");
        }
    }
}

#[cfg(test)]
mod tests {
    /// The demo's copy of the example product is the whole example: a file
    /// added to the folder and not here would leave the product unloadable
    /// in the demo.
    #[test]
    fn the_authored_product_is_the_whole_example() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/products/discharge-delays-summary");
        let mut files: Vec<String> = std::fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut authored: Vec<String> =
            super::AUTHORED.iter().map(|(n, _)| n.to_string()).collect();
        authored.sort();
        assert_eq!(authored, files);
    }
}
