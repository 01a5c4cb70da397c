//! A synthetic acute trust: sites, wards, bays and beds, consultants and PAS
//! users.
//!
//! The default spec gives a mid-size district general trust of about 600
//! beds in some 26 wards over three sites, laid out the way English
//! hospitals are: bays of four to six beds plus side rooms.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::SynthError;
use crate::people::{random_name, Catchment, Cohort, Sex, WARD_NAMES};
use crate::rng::{pick, rng_for, stream};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustSpec {
    /// ODS organisation code, e.g. `RXX`. Site codes are this plus `01`, `02`...
    pub ods_code: String,
    /// Trust name.
    pub name: String,
    /// Site names, main acute site first. One to nine sites.
    pub site_names: Vec<String>,
    /// Approximate number of beds; ward sizes are scaled towards it within
    /// realistic limits, so very small or large targets are only approached.
    pub target_beds: u32,
    /// Prefix of local hospital numbers (MRNs).
    pub mrn_prefix: String,
    /// Share of beds closed (estates work, infection control...).
    pub closed_bed_share: f64,
    /// GP practices in the catchment.
    pub gp_practices: usize,
}

impl Default for TrustSpec {
    fn default() -> Self {
        TrustSpec {
            ods_code: "RXX".to_string(),
            name: "Northshire Hospitals NHS Foundation Trust".to_string(),
            site_names: vec![
                "Northshire General Hospital".to_string(),
                "St Aidan's Hospital".to_string(),
                "Riverside Community Hospital".to_string(),
            ],
            target_beds: 600,
            mrn_prefix: "H".to_string(),
            closed_bed_share: 0.01,
            gp_practices: 40,
        }
    }
}

impl TrustSpec {
    fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: &str| Err(SynthError::InvalidTrustSpec(m.to_string()));
        let ods = self.ods_code.as_bytes();
        if !(3..=5).contains(&ods.len())
            || !ods
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return bad("ods_code must be 3 to 5 upper-case letters or digits");
        }
        if self.site_names.is_empty() || self.site_names.len() > 9 {
            return bad("site_names must hold 1 to 9 names");
        }
        if self.target_beds < 50 {
            return bad("target_beds must be at least 50");
        }
        if !(0.0..=0.5).contains(&self.closed_bed_share) {
            return bad("closed_bed_share must be between 0 and 0.5");
        }
        if !self.mrn_prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return bad("mrn_prefix must be letters or digits");
        }
        Ok(())
    }
}

/// Broad clinical grouping, which decides where patients flow between wards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Division {
    /// Acute medical and surgical assessment units.
    Assessment,
    /// Medical specialties.
    Medicine,
    /// Surgical specialties.
    Surgery,
    /// Intensive care and high dependency.
    CriticalCare,
    /// Maternity, gynaecology and paediatrics.
    WomenAndChildren,
    /// Rehabilitation and intermediate care.
    Rehabilitation,
}

/// The kind of ward, which fixes its specialty and who it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WardKind {
    /// Acute Medical Unit (AMU).
    AcuteMedicalUnit,
    /// Surgical Assessment Unit (SAU).
    SurgicalAssessmentUnit,
    /// Intensive Care Unit.
    IntensiveCare,
    /// High Dependency Unit.
    HighDependency,
    /// General (internal) medicine.
    GeneralMedicine,
    /// Care of the elderly.
    CareOfTheElderly,
    /// Respiratory medicine.
    Respiratory,
    /// Cardiology and coronary care.
    Cardiology,
    /// Hyper-acute and acute stroke.
    Stroke,
    /// Gastroenterology.
    Gastroenterology,
    /// Emergency general surgery.
    GeneralSurgery,
    /// Elective surgery.
    ElectiveSurgery,
    /// Trauma and orthopaedics.
    TraumaOrthopaedics,
    /// Elective orthopaedics.
    ElectiveOrthopaedics,
    /// Urology.
    Urology,
    /// Gynaecology.
    Gynaecology,
    /// Children's ward.
    Paediatrics,
    /// Antenatal and postnatal ward.
    Maternity,
    /// Delivery suite.
    LabourWard,
    /// Rehabilitation and intermediate care.
    Rehabilitation,
}

impl WardKind {
    /// Specialty name as it appears in the bed register.
    pub fn specialty(self) -> &'static str {
        use WardKind::*;
        match self {
            AcuteMedicalUnit => "Acute Internal Medicine",
            SurgicalAssessmentUnit | GeneralSurgery | ElectiveSurgery => "General Surgery",
            IntensiveCare | HighDependency => "Critical Care Medicine",
            GeneralMedicine => "General Internal Medicine",
            CareOfTheElderly => "Geriatric Medicine",
            Respiratory => "Respiratory Medicine",
            Cardiology => "Cardiology",
            Stroke => "Stroke Medicine",
            Gastroenterology => "Gastroenterology",
            TraumaOrthopaedics | ElectiveOrthopaedics => "Trauma and Orthopaedics",
            Urology => "Urology",
            Gynaecology => "Gynaecology",
            Paediatrics => "Paediatrics",
            Maternity | LabourWard => "Obstetrics",
            Rehabilitation => "Rehabilitation Service",
        }
    }

    /// NHS Data Dictionary treatment function code (PV1-10).
    pub fn treatment_function_code(self) -> &'static str {
        use WardKind::*;
        match self {
            AcuteMedicalUnit => "326",
            SurgicalAssessmentUnit | GeneralSurgery | ElectiveSurgery => "100",
            IntensiveCare | HighDependency => "192",
            GeneralMedicine => "300",
            CareOfTheElderly => "430",
            Respiratory => "340",
            Cardiology => "320",
            Stroke => "328",
            Gastroenterology => "301",
            TraumaOrthopaedics | ElectiveOrthopaedics => "110",
            Urology => "101",
            Gynaecology => "502",
            Paediatrics => "420",
            Maternity | LabourWard => "501",
            Rehabilitation => "314",
        }
    }

    /// Clinical division.
    pub fn division(self) -> Division {
        use WardKind::*;
        match self {
            AcuteMedicalUnit | SurgicalAssessmentUnit => Division::Assessment,
            IntensiveCare | HighDependency => Division::CriticalCare,
            GeneralMedicine | CareOfTheElderly | Respiratory | Cardiology | Stroke
            | Gastroenterology => Division::Medicine,
            GeneralSurgery | ElectiveSurgery | TraumaOrthopaedics | ElectiveOrthopaedics
            | Urology => Division::Surgery,
            Gynaecology | Paediatrics | Maternity | LabourWard => Division::WomenAndChildren,
            Rehabilitation => Division::Rehabilitation,
        }
    }

    /// Type of the ward's bay beds.
    pub fn bed_type(self) -> BedType {
        use WardKind::*;
        match self {
            IntensiveCare | HighDependency => BedType::CriticalCare,
            Maternity | LabourWard => BedType::Maternity,
            Paediatrics => BedType::Paediatric,
            _ => BedType::General,
        }
    }

    /// The population new patients for this ward are drawn from.
    pub fn cohort(self) -> Cohort {
        use WardKind::*;
        match self {
            Paediatrics => Cohort::Paediatric,
            Maternity | LabourWard => Cohort::Obstetric,
            Gynaecology => Cohort::Gynaecology,
            CareOfTheElderly | Rehabilitation => Cohort::Elderly,
            _ => Cohort::AdultAcute,
        }
    }

    /// Whether a patient of this sex and age may be placed on the ward.
    pub fn accepts(self, sex: Sex, age: u32) -> bool {
        use WardKind::*;
        match self {
            Paediatrics => age < 16,
            Maternity | LabourWard => sex == Sex::Female && (15..=50).contains(&age),
            Gynaecology => sex == Sex::Female && age >= 16,
            CareOfTheElderly | Rehabilitation => age >= 65,
            _ => age >= 16,
        }
    }

    /// Short stay units whose patients move on within a couple of days.
    pub fn is_short_stay(self) -> bool {
        matches!(
            self,
            WardKind::AcuteMedicalUnit | WardKind::SurgicalAssessmentUnit | WardKind::LabourWard
        )
    }
}

/// What a bed is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BedType {
    /// General adult bed in a bay.
    General,
    /// Single room, often used for infection control.
    SideRoom,
    /// Level 2 or 3 critical care bed.
    CriticalCare,
    /// Maternity bed or delivery room.
    Maternity,
    /// Paediatric bed or cot.
    Paediatric,
}

impl BedType {
    /// The value used in the bed register.
    pub fn as_str(self) -> &'static str {
        match self {
            BedType::General => "general",
            BedType::SideRoom => "side_room",
            BedType::CriticalCare => "critical_care",
            BedType::Maternity => "maternity",
            BedType::Paediatric => "paediatric",
        }
    }
}

/// Whether a bed can take a patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum BedStatus {
    /// Available for patients.
    Open,
    /// Out of use.
    Closed {
        /// Why, in a few words.
        reason: String,
    },
}

impl BedStatus {
    /// `open` or `closed`, as in the bed register.
    pub fn as_str(&self) -> &'static str {
        match self {
            BedStatus::Open => "open",
            BedStatus::Closed { .. } => "closed",
        }
    }
}

/// One bed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bed {
    /// Stable identifier: `<site>-<ward>-<bay>-<bed number in bay>`, e.g.
    /// `RXX01-W07-B03-2` or `RXX01-W07-SR01-1`.
    pub id: String,
    /// Human label, as sent in PV1-3.3: `Bay 3 Bed 2`, `Side Room 1`.
    pub label: String,
    /// Bay code, as sent in PV1-3.2: `B03`, `SR01` (side room), `DR01`
    /// (delivery room).
    pub bay: String,
    /// What the bed is for.
    pub bed_type: BedType,
    /// Open or closed.
    pub status: BedStatus,
}

/// A ward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ward {
    /// Ward code, unique in the trust, as sent in PV1-3.1 (`AMU`, `W07`).
    pub code: String,
    /// Ward name.
    pub name: String,
    /// Ward kind, which fixes specialty and division.
    pub kind: WardKind,
    /// Beds in bay order.
    pub beds: Vec<Bed>,
}

/// A non-bedded department where attendances are registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    /// Department code, unique on its site (`ED`, `OPD`).
    pub code: String,
    /// Department name.
    pub name: String,
    /// Emergency care or clinics.
    pub kind: DepartmentKind,
}

/// What a department does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepartmentKind {
    /// Type 1 emergency department, urgent treatment centre or minor
    /// injuries unit: attendances are emergency patients (PV1-2 `E`).
    Emergency,
    /// Outpatient clinics (PV1-2 `O`).
    Outpatients,
}

/// A hospital site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// ODS site code, e.g. `RXX01`.
    pub code: String,
    /// Site name.
    pub name: String,
    /// Emergency and outpatient departments.
    pub departments: Vec<Department>,
    /// Inpatient wards.
    pub wards: Vec<Ward>,
}

/// A hospital consultant, the responsible clinician for a spell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consultant {
    /// Consultant code: `C` and the seven-digit GMC number.
    pub code: String,
    /// Title (surgeons are traditionally Mr, Miss or Ms).
    pub title: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Treatment function code of the consultant's main specialty.
    pub treatment_function_code: String,
}

/// A PAS user who records events (EVN-5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffMember {
    /// Login id.
    pub user_id: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
}

/// A synthetic NHS acute trust.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trust {
    /// ODS organisation code.
    pub ods_code: String,
    /// Trust name.
    pub name: String,
    /// Prefix of local hospital numbers (MRNs).
    pub mrn_prefix: String,
    /// Sites, main acute site first.
    pub sites: Vec<Site>,
    /// Consultants across all specialties.
    pub consultants: Vec<Consultant>,
    /// Ward clerks and admissions staff who use the PAS.
    pub clerks: Vec<StaffMember>,
    /// The population the trust serves.
    pub catchment: Catchment,
}

/// A bed together with the ward and site it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct BedRef<'a> {
    /// The site.
    pub site: &'a Site,
    /// The ward.
    pub ward: &'a Ward,
    /// The bed.
    pub bed: &'a Bed,
}

/// Ward template: kind, site rank (0 = main acute site), base size.
const WARD_TEMPLATE: &[(WardKind, usize, u32)] = {
    use WardKind::*;
    &[
        (AcuteMedicalUnit, 0, 32),
        (SurgicalAssessmentUnit, 0, 16),
        (IntensiveCare, 0, 12),
        (HighDependency, 0, 10),
        (Cardiology, 0, 24),
        (Respiratory, 0, 28),
        (Stroke, 0, 24),
        (GeneralMedicine, 0, 28),
        (GeneralMedicine, 0, 28),
        (Gastroenterology, 0, 26),
        (CareOfTheElderly, 0, 28),
        (CareOfTheElderly, 0, 28),
        (GeneralSurgery, 0, 28),
        (GeneralSurgery, 0, 26),
        (Urology, 0, 22),
        (Gynaecology, 0, 16),
        (Paediatrics, 0, 22),
        (Maternity, 0, 28),
        (LabourWard, 0, 12),
        (TraumaOrthopaedics, 0, 28),
        (ElectiveOrthopaedics, 1, 24),
        (ElectiveSurgery, 1, 20),
        (CareOfTheElderly, 1, 28),
        (GeneralMedicine, 1, 26),
        (Rehabilitation, 2, 24),
        (Rehabilitation, 2, 20),
    ]
};

/// Wards added, in turn, when the target exceeds the template.
const EXTRA_WARDS: &[WardKind] = &[
    WardKind::GeneralMedicine,
    WardKind::CareOfTheElderly,
    WardKind::GeneralSurgery,
    WardKind::Respiratory,
];

fn size_limits(kind: WardKind) -> (u32, u32) {
    match kind {
        WardKind::IntensiveCare | WardKind::HighDependency | WardKind::LabourWard => (8, 20),
        _ => (12, 32),
    }
}

fn special_ward(kind: WardKind) -> Option<(&'static str, &'static str)> {
    match kind {
        WardKind::AcuteMedicalUnit => Some(("AMU", "Acute Medical Unit")),
        WardKind::SurgicalAssessmentUnit => Some(("SAU", "Surgical Assessment Unit")),
        WardKind::IntensiveCare => Some(("ICU", "Intensive Care Unit")),
        WardKind::HighDependency => Some(("HDU", "High Dependency Unit")),
        WardKind::LabourWard => Some(("LW", "Labour Ward")),
        _ => None,
    }
}

/// Rooms of a ward: (bay code, beds, is single room).
fn layout(size: u32, kind: WardKind) -> Vec<(String, u32, bool)> {
    if kind == WardKind::LabourWard {
        return (1..=size).map(|i| (format!("DR{i:02}"), 1, true)).collect();
    }
    let mut singles = match kind {
        WardKind::IntensiveCare | WardKind::HighDependency => (size / 4).max(2),
        WardKind::Paediatrics => size / 3,
        _ => ((size as f64 * 0.18).round() as u32).clamp(2, 8),
    };
    let mut rest = size - singles.min(size);
    // Bays hold four to six beds; a remainder no split can take (1-3 or 7)
    // becomes extra side rooms.
    if rest < 4 {
        singles += rest;
        rest = 0;
    } else if rest == 7 {
        singles += 1;
        rest = 6;
    }
    let mut rooms = Vec::new();
    if rest > 0 {
        let bays = rest.div_ceil(6);
        let (base, extra) = (rest / bays, rest % bays);
        for b in 0..bays {
            let n = base + u32::from(b < extra);
            rooms.push((format!("B{:02}", b + 1), n, false));
        }
    }
    for s in 0..singles {
        rooms.push((format!("SR{:02}", s + 1), 1, true));
    }
    rooms
}

fn build_beds(site_code: &str, ward_code: &str, kind: WardKind, size: u32) -> Vec<Bed> {
    let mut beds = Vec::with_capacity(size as usize);
    for (bay, n, single) in layout(size, kind) {
        for i in 1..=n {
            let label = if !single {
                format!("Bay {} Bed {i}", bay[1..].trim_start_matches('0'))
            } else if kind == WardKind::LabourWard {
                format!("Delivery Room {}", bay[2..].trim_start_matches('0'))
            } else {
                format!("Side Room {}", bay[2..].trim_start_matches('0'))
            };
            let bed_type = match kind.bed_type() {
                BedType::General if single => BedType::SideRoom,
                t => t,
            };
            beds.push(Bed {
                id: format!("{site_code}-{ward_code}-{bay}-{i}"),
                label,
                bay: bay.clone(),
                bed_type,
                status: BedStatus::Open,
            });
        }
    }
    beds
}

fn departments(rank: usize) -> Vec<Department> {
    let (code, name) = match rank {
        0 => ("ED", "Emergency Department"),
        1 => ("UTC", "Urgent Treatment Centre"),
        _ => ("MIU", "Minor Injuries Unit"),
    };
    vec![
        Department {
            code: code.to_string(),
            name: name.to_string(),
            kind: DepartmentKind::Emergency,
        },
        Department {
            code: "OPD".to_string(),
            name: "Outpatients Department".to_string(),
            kind: DepartmentKind::Outpatients,
        },
    ]
}

fn consultant_title<R: Rng + ?Sized>(rng: &mut R, tfc: &str, sex: Sex) -> &'static str {
    if rng.random_bool(0.06) {
        return "Prof";
    }
    // UK surgeons drop "Dr" on passing the surgical fellowship.
    let surgical = matches!(tfc, "100" | "101" | "110" | "502");
    match (surgical, sex) {
        (false, _) => "Dr",
        (true, Sex::Male) => "Mr",
        (true, _) => {
            if rng.random_bool(0.5) {
                "Ms"
            } else {
                "Miss"
            }
        }
    }
}

fn user_id(family: &str, given: &str, n: usize) -> String {
    let mut id: String = family
        .chars()
        .filter(char::is_ascii_alphabetic)
        .take(6)
        .collect::<String>()
        .to_ascii_uppercase();
    if let Some(c) = given.chars().find(char::is_ascii_alphabetic) {
        id.push(c.to_ascii_uppercase());
    }
    id.push_str(&format!("{:02}", n % 100));
    id
}

impl Trust {
    /// Generates a trust. The same seed and spec always give the same trust.
    pub fn generate(seed: u64, spec: TrustSpec) -> Result<Trust, SynthError> {
        spec.validate()?;
        let mut rng = rng_for(seed, stream::TRUST);
        let n_sites = spec.site_names.len();

        // Decide ward kinds and sizes first so extra wards can be appended.
        let base_total: u32 = WARD_TEMPLATE.iter().map(|w| w.2).sum();
        let scale = f64::from(spec.target_beds) / f64::from(base_total);
        let mut plan: Vec<(WardKind, usize, u32)> = WARD_TEMPLATE
            .iter()
            .map(|&(kind, rank, base)| {
                let (lo, hi) = size_limits(kind);
                let jitter = rng.random_range(-2i64..=2);
                let size = ((f64::from(base) * scale).round() as i64 + jitter)
                    .clamp(i64::from(lo), i64::from(hi)) as u32;
                (kind, rank.min(n_sites - 1), size)
            })
            .collect();
        let mut total: u32 = plan.iter().map(|w| w.2).sum();
        let mut extra = 0;
        while total + 10 < spec.target_beds {
            let kind = EXTRA_WARDS[extra % EXTRA_WARDS.len()];
            let size = (spec.target_beds - total).clamp(12, 28);
            plan.push((kind, 0, size));
            total += size;
            extra += 1;
        }

        let mut names: Vec<&str> = WARD_NAMES.to_vec();
        names.shuffle(&mut rng);
        let mut sites: Vec<Site> = spec
            .site_names
            .iter()
            .enumerate()
            .map(|(i, name)| Site {
                code: format!("{}{:02}", spec.ods_code, i + 1),
                name: name.clone(),
                departments: departments(i),
                wards: Vec::new(),
            })
            .collect();
        let mut numbered = 0;
        let mut used_special: Vec<&str> = Vec::new();
        for (kind, site, size) in plan {
            let (code, name) = match special_ward(kind) {
                Some((code, name)) if !used_special.contains(&code) => {
                    used_special.push(code);
                    (code.to_string(), name.to_string())
                }
                _ => {
                    numbered += 1;
                    let stem = names[(numbered - 1) % names.len()];
                    let name = if numbered > names.len() {
                        format!("{stem} Ward {}", numbered / names.len() + 1)
                    } else {
                        format!("{stem} Ward")
                    };
                    (format!("W{numbered:02}"), name)
                }
            };
            let beds = build_beds(&sites[site].code, &code, kind, size);
            sites[site].wards.push(Ward {
                code,
                name,
                kind,
                beds,
            });
        }

        // Close a few beds, never in critical care where closures are rare
        // and would distort small units.
        let all: Vec<(usize, usize, usize)> = sites
            .iter()
            .enumerate()
            .flat_map(|(s, site)| {
                site.wards
                    .iter()
                    .enumerate()
                    .flat_map(move |(w, ward)| (0..ward.beds.len()).map(move |b| (s, w, b)))
            })
            .filter(|&(s, w, _)| sites[s].wards[w].kind.division() != Division::CriticalCare)
            .collect();
        let total_beds: usize = sites
            .iter()
            .flat_map(|s| &s.wards)
            .map(|w| w.beds.len())
            .sum();
        let to_close = (total_beds as f64 * spec.closed_bed_share).round() as usize;
        let mut chosen: Vec<(usize, usize, usize)> = all
            .choose_multiple(&mut rng, to_close.min(all.len()))
            .copied()
            .collect();
        chosen.sort_unstable();
        for (s, w, b) in chosen {
            let reason = *pick(
                &mut rng,
                &[
                    "estates work",
                    "infection control",
                    "staffing",
                    "equipment fault",
                ],
            );
            sites[s].wards[w].beds[b].status = BedStatus::Closed {
                reason: reason.to_string(),
            };
        }

        // Consultants: enough per specialty to spread the beds around.
        let mut tfcs: Vec<(&'static str, usize)> = Vec::new();
        for ward in sites.iter().flat_map(|s| &s.wards) {
            let tfc = ward.kind.treatment_function_code();
            match tfcs.iter_mut().find(|t| t.0 == tfc) {
                Some(t) => t.1 += ward.beds.len(),
                None => tfcs.push((tfc, ward.beds.len())),
            }
        }
        let mut consultants = Vec::new();
        let mut gmc_used = Vec::new();
        for (tfc, beds) in tfcs {
            let n = (beds / 20 + 2).clamp(2, 8);
            for _ in 0..n {
                let sex = if rng.random_bool(0.45) {
                    Sex::Female
                } else {
                    Sex::Male
                };
                let name = random_name(&mut rng, sex, 45);
                let gmc = loop {
                    let g: u32 = rng.random_range(2_000_000..7_999_999);
                    if !gmc_used.contains(&g) {
                        gmc_used.push(g);
                        break g;
                    }
                };
                consultants.push(Consultant {
                    code: format!("C{gmc}"),
                    title: consultant_title(&mut rng, tfc, sex).to_string(),
                    given_name: name.given.to_string(),
                    family_name: name.family.to_string(),
                    treatment_function_code: tfc.to_string(),
                });
            }
        }

        let clerks = (0..12)
            .map(|i| {
                let sex = if rng.random_bool(0.7) {
                    Sex::Female
                } else {
                    Sex::Male
                };
                let name = random_name(&mut rng, sex, 40);
                StaffMember {
                    user_id: user_id(name.family, name.given, i + 1),
                    given_name: name.given.to_string(),
                    family_name: name.family.to_string(),
                }
            })
            .collect();

        let catchment = Catchment::generate(&mut rng, spec.gp_practices);
        Ok(Trust {
            ods_code: spec.ods_code,
            name: spec.name,
            mrn_prefix: spec.mrn_prefix,
            sites,
            consultants,
            clerks,
            catchment,
        })
    }

    /// Every bed with its ward and site, in register order.
    pub fn beds(&self) -> impl Iterator<Item = BedRef<'_>> + '_ {
        self.sites.iter().flat_map(|site| {
            site.wards
                .iter()
                .flat_map(move |ward| ward.beds.iter().map(move |bed| BedRef { site, ward, bed }))
        })
    }

    /// Every ward with its site.
    pub fn wards(&self) -> impl Iterator<Item = (&Site, &Ward)> + '_ {
        self.sites
            .iter()
            .flat_map(|site| site.wards.iter().map(move |ward| (site, ward)))
    }

    /// Number of beds, open or closed.
    pub fn bed_count(&self) -> usize {
        self.beds().count()
    }

    /// Number of open beds.
    pub fn open_bed_count(&self) -> usize {
        self.beds()
            .filter(|b| b.bed.status == BedStatus::Open)
            .count()
    }

    /// Looks a bed up by its id.
    pub fn bed(&self, id: &str) -> Option<BedRef<'_>> {
        self.beds().find(|b| b.bed.id == id)
    }

    /// Looks a bed up by the parts of an HL7 PV1-3 location: site code
    /// (PV1-3.4), ward code (PV1-3.1), bay (PV1-3.2) and bed label (PV1-3.3).
    pub fn bed_at(&self, site: &str, ward: &str, bay: &str, label: &str) -> Option<BedRef<'_>> {
        self.beds().find(|b| {
            b.site.code == site && b.ward.code == ward && b.bed.bay == bay && b.bed.label == label
        })
    }

    /// The bed register as CSV with header
    /// `site_code,site_name,ward_code,ward_name,specialty,bay,bed_id,bed_label,bed_type,status`
    /// and one line per bed, `\n` line endings.
    pub fn bed_register_csv(&self) -> String {
        let mut out = String::with_capacity(self.bed_count() * 120);
        out.push_str(
            "site_code,site_name,ward_code,ward_name,specialty,bay,bed_id,bed_label,bed_type,status\n",
        );
        for b in self.beds() {
            let fields = [
                b.site.code.as_str(),
                b.site.name.as_str(),
                b.ward.code.as_str(),
                b.ward.name.as_str(),
                b.ward.kind.specialty(),
                b.bed.bay.as_str(),
                b.bed.id.as_str(),
                b.bed.label.as_str(),
                b.bed.bed_type.as_str(),
                b.bed.status.as_str(),
            ];
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_csv_field(&mut out, f);
            }
            out.push('\n');
        }
        out
    }
}

/// RFC 4180 quoting, only when needed.
fn push_csv_field(out: &mut String, f: &str) {
    if f.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&f.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_use_bays_of_four_to_six() {
        for kind in [
            WardKind::GeneralMedicine,
            WardKind::IntensiveCare,
            WardKind::Paediatrics,
        ] {
            for size in 8..=32 {
                let rooms = layout(size, kind);
                assert_eq!(rooms.iter().map(|r| r.1).sum::<u32>(), size);
                for (bay, n, single) in rooms {
                    if single {
                        assert_eq!(n, 1);
                        assert!(bay.starts_with("SR"));
                    } else {
                        assert!((4..=6).contains(&n), "{kind:?} {size} {bay} {n}");
                    }
                }
            }
        }
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        let mut s = String::new();
        push_csv_field(&mut s, "St Aidan's, \"East\"");
        assert_eq!(s, "\"St Aidan's, \"\"East\"\"\"");
    }
}
