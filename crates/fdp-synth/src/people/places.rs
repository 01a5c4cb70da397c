//! Where synthetic people live: towns with UK postcode districts, and the GP
//! practices they are registered with.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::names::{LOCALITIES, PRACTICE_STEMS, STREETS, STREET_TYPES};
use crate::rng::{pick, pick_weighted_by};

/// A town in a catchment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Town {
    /// Post town, as written on the last address line.
    pub name: String,
    /// Outward codes (e.g. `WF1`) of the districts covering the town.
    pub postcode_districts: Vec<String>,
    /// Landline prefix leaving three digits to draw. These are Ofcom ranges
    /// reserved for fiction, so a generated number never rings anyone.
    pub landline_prefix: String,
    /// Relative share of the catchment population.
    pub weight: f64,
}

/// A GP practice (primary care organisation) patients are registered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpPractice {
    /// ODS practice code, shaped like `B82005`.
    pub code: String,
    /// Practice name.
    pub name: String,
}

/// The population area a trust serves. Later several trusts of one ICB will
/// share a catchment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catchment {
    /// Towns people live in.
    pub towns: Vec<Town>,
    /// GP practices people are registered with.
    pub gp_practices: Vec<GpPractice>,
}

/// A UK postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// House number and street.
    pub line1: String,
    /// Locality or flat, often absent.
    pub line2: Option<String>,
    /// Post town.
    pub town: String,
    /// Full postcode with a single space, e.g. `WF1 4QT`.
    pub postcode: String,
}

/// Letters allowed in the inward part of a postcode (no C, I, K, M, O, V).
const INWARD_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";
const DRAMA_MOBILE: &str = "07700900";
const DRAMA_NO_AREA: &str = "01632960";

/// Real West and North Yorkshire towns and postcode districts. The trust
/// itself is fictional; real districts make maps and postcode validation in
/// demos behave as they would with real data.
fn default_towns() -> Vec<Town> {
    let t = |name: &str, districts: &[&str], landline: &str, weight: f64| Town {
        name: name.to_string(),
        postcode_districts: districts.iter().map(|d| d.to_string()).collect(),
        landline_prefix: landline.to_string(),
        weight,
    };
    vec![
        t(
            "WAKEFIELD",
            &["WF1", "WF2", "WF3", "WF4"],
            DRAMA_NO_AREA,
            3.0,
        ),
        t("PONTEFRACT", &["WF8", "WF9"], DRAMA_NO_AREA, 1.0),
        t("CASTLEFORD", &["WF10"], DRAMA_NO_AREA, 1.0),
        t("DEWSBURY", &["WF12", "WF13"], DRAMA_NO_AREA, 1.5),
        t("BATLEY", &["WF17"], DRAMA_NO_AREA, 1.0),
        t(
            "HUDDERSFIELD",
            &["HD1", "HD2", "HD3", "HD4", "HD5"],
            DRAMA_NO_AREA,
            2.5,
        ),
        t("HALIFAX", &["HX1", "HX2", "HX3"], DRAMA_NO_AREA, 2.0),
        t(
            "BRADFORD",
            &[
                "BD1", "BD2", "BD3", "BD4", "BD5", "BD6", "BD7", "BD8", "BD9", "BD10",
            ],
            DRAMA_NO_AREA,
            3.0,
        ),
        t("KEIGHLEY", &["BD20", "BD21"], DRAMA_NO_AREA, 1.0),
        t(
            "LEEDS",
            &[
                "LS1", "LS2", "LS3", "LS4", "LS5", "LS6", "LS7", "LS8", "LS9", "LS10", "LS11",
                "LS12", "LS13", "LS14", "LS15", "LS16", "LS17",
            ],
            // Ofcom's drama range for Leeds: 0113 496 0000 to 0999.
            "01134960",
            3.0,
        ),
        t("HARROGATE", &["HG1", "HG2"], DRAMA_NO_AREA, 1.0),
        t("YORK", &["YO1", "YO10", "YO24", "YO31"], DRAMA_NO_AREA, 1.0),
    ]
}

impl Catchment {
    /// The default catchment with `practices` GP practices.
    pub fn generate<R: Rng + ?Sized>(rng: &mut R, practices: usize) -> Self {
        let mut gp_practices: Vec<GpPractice> = Vec::with_capacity(practices);
        while gp_practices.len() < practices {
            let code = format!("B8{:04}", rng.random_range(1000..10_000));
            if gp_practices.iter().any(|p| p.code == code) {
                continue;
            }
            let stem = pick(rng, PRACTICE_STEMS);
            let kind = pick(
                rng,
                &[
                    "Surgery",
                    "Medical Practice",
                    "Health Centre",
                    "Medical Centre",
                ],
            );
            gp_practices.push(GpPractice {
                code,
                name: format!("{stem} {kind}"),
            });
        }
        Catchment {
            towns: default_towns(),
            gp_practices,
        }
    }

    /// A random address in the catchment.
    pub fn random_address<R: Rng + ?Sized>(&self, rng: &mut R) -> Address {
        let town = pick_weighted_by(rng, &self.towns, |t| t.weight);
        let district = pick(rng, &town.postcode_districts);
        let inward = [
            b'0' + rng.random_range(0..10u8),
            *pick(rng, INWARD_LETTERS),
            *pick(rng, INWARD_LETTERS),
        ];
        let mut postcode = String::with_capacity(8);
        postcode.push_str(district);
        postcode.push(' ');
        postcode.extend(inward.iter().map(|b| char::from(*b)));
        let number: u16 = if rng.random_bool(0.8) {
            rng.random_range(1..120)
        } else {
            rng.random_range(120..400)
        };
        let line1 = if rng.random_bool(0.06) {
            format!(
                "Flat {} {} House",
                rng.random_range(1..40),
                pick(rng, STREETS)
            )
        } else {
            format!(
                "{number} {} {}",
                pick(rng, STREETS),
                pick(rng, STREET_TYPES)
            )
        };
        let line2 = rng
            .random_bool(0.3)
            .then(|| pick(rng, LOCALITIES).to_string());
        Address {
            line1,
            line2,
            town: town.name.clone(),
            postcode,
        }
    }

    /// A phone number from Ofcom's ranges reserved for fiction: mostly
    /// mobiles, otherwise a landline for the town.
    pub fn random_phone<R: Rng + ?Sized>(&self, rng: &mut R, address: &Address) -> String {
        let prefix = if rng.random_bool(0.65) {
            DRAMA_MOBILE
        } else {
            self.towns
                .iter()
                .find(|t| t.name == address.town)
                .map_or(DRAMA_NO_AREA, |t| t.landline_prefix.as_str())
        };
        format!("{prefix}{:03}", rng.random_range(0..1000))
    }

    /// A random GP practice code from the catchment.
    pub fn random_gp_practice<R: Rng + ?Sized>(&self, rng: &mut R) -> String {
        if self.gp_practices.is_empty() {
            // Data Dictionary default for "practice code not known".
            return "V81999".to_string();
        }
        pick(rng, &self.gp_practices).code.clone()
    }
}
