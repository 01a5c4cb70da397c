//! Supplies across an ICB: what each trust publishes to its ICB, how the
//! ICB puts the trusts together, and the records a transfer between two
//! trusts leaves at each.
//!
//! A trust publishes its `demand` view, item by item: use a month, on
//! hand, and, once its own short wards are met from its other wards, what
//! it has left to spare and what it must still order ([`ItemPosition`]).
//! The ICB keeps each trust's latest ([`Published`]) and shows, per item,
//! where spare stock sits, where it is needed, and what the area must buy
//! once spare stock elsewhere has been used ([`area`]). No patient is in
//! any of it.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// One item across one trust's locations, as its `demand` view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemPosition {
    pub item_code: String,
    #[serde(default)]
    pub item_name: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub critical: bool,
    pub locations: u32,
    pub forecast_per_month: f64,
    pub on_hand: f64,
    /// Held above the locations' maxima, before any transfer.
    pub surplus: f64,
    /// Below the locations' reorder points, before any transfer.
    pub shortfall: f64,
    /// Left to spare once the trust's short locations are met.
    pub spare: f64,
    /// Still to order once the trust's short locations are met.
    pub to_order: f64,
}

impl ItemPosition {
    /// The `demand` view's rows as positions; a row that is not one is
    /// named.
    pub fn from_rows(rows: &[Map<String, Value>]) -> Result<Vec<ItemPosition>, String> {
        rows.iter()
            .map(|r| {
                serde_json::from_value(Value::Object(r.clone())).map_err(|e| {
                    format!(
                        "a demand row ({}) is not an item's position: {e}",
                        r.get("item_code").and_then(Value::as_str).unwrap_or("no item code")
                    )
                })
            })
            .collect()
    }

    /// Why the figures cannot be a position, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.item_code.trim().is_empty() {
            return Err("an item's position names no item code".into());
        }
        let figures = [
            ("forecast_per_month", self.forecast_per_month),
            ("on_hand", self.on_hand),
            ("surplus", self.surplus),
            ("shortfall", self.shortfall),
            ("spare", self.spare),
            ("to_order", self.to_order),
        ];
        for (name, x) in figures {
            // On hand may be below nought where the books say so; the rest
            // are amounts.
            if !x.is_finite() || (name != "on_hand" && x < 0.0) {
                return Err(format!("{}: {name} {x} is not a quantity", self.item_code));
            }
        }
        Ok(())
    }
}

/// One trust's supplies position as its ICB holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The trust (ODS code).
    pub publisher: String,
    /// The day the position is for.
    pub as_at: NaiveDate,
    pub items: Vec<ItemPosition>,
    pub published_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

/// One trust's part of an item across the area.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrustQuantity {
    pub trust: String,
    pub quantity: f64,
}

/// One item across the area's trusts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AreaItem {
    pub item_code: String,
    pub item_name: Option<String>,
    pub category: Option<String>,
    pub critical: bool,
    pub trusts: u32,
    pub forecast_per_month: f64,
    pub on_hand: f64,
    pub spare: f64,
    pub to_order: f64,
    /// What the area must buy once every trust's spare is used where it is
    /// needed.
    pub to_buy: f64,
    /// Where spare stock sits, the most first.
    pub spare_at: Vec<TrustQuantity>,
    /// Where it is needed, the most first.
    pub needed_at: Vec<TrustQuantity>,
}

/// Every item across the trusts in `feeds`: critical items first, then the
/// most to buy, then the most needed.
pub fn area(feeds: &[Published]) -> Vec<AreaItem> {
    let mut by: BTreeMap<&str, AreaItem> = BTreeMap::new();
    for p in feeds {
        for i in &p.items {
            let a = by.entry(&i.item_code).or_insert_with(|| AreaItem {
                item_code: i.item_code.clone(),
                item_name: None,
                category: None,
                critical: false,
                trusts: 0,
                forecast_per_month: 0.0,
                on_hand: 0.0,
                spare: 0.0,
                to_order: 0.0,
                to_buy: 0.0,
                spare_at: Vec::new(),
                needed_at: Vec::new(),
            });
            a.item_name = a.item_name.take().or_else(|| i.item_name.clone());
            a.category = a.category.take().or_else(|| i.category.clone());
            a.critical |= i.critical;
            a.trusts += 1;
            a.forecast_per_month += i.forecast_per_month;
            a.on_hand += i.on_hand;
            a.spare += i.spare;
            a.to_order += i.to_order;
            let at = |q: f64| TrustQuantity {
                trust: p.publisher.clone(),
                quantity: q,
            };
            if i.spare > 0.0 {
                a.spare_at.push(at(i.spare));
            }
            if i.to_order > 0.0 {
                a.needed_at.push(at(i.to_order));
            }
        }
    }
    let mut out: Vec<AreaItem> = by
        .into_values()
        .map(|mut a| {
            a.forecast_per_month = (a.forecast_per_month * 10.0).round() / 10.0;
            a.to_buy = (a.to_order - a.spare).max(0.0);
            let most_first = |v: &mut Vec<TrustQuantity>| {
                v.sort_by(|x, y| y.quantity.total_cmp(&x.quantity).then(x.trust.cmp(&y.trust)))
            };
            most_first(&mut a.spare_at);
            most_first(&mut a.needed_at);
            a
        })
        .collect();
    out.sort_by(|a, b| {
        b.critical
            .cmp(&a.critical)
            .then(b.to_buy.total_cmp(&a.to_buy))
            .then(b.to_order.total_cmp(&a.to_order))
            .then(a.item_code.cmp(&b.item_code))
    });
    out
}

/// Stock one trust sends another, offered through the federation and
/// accepted by the receiver: the records it leaves at each.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustTransfer<'a> {
    /// The offer's id (the message that carried it).
    pub offer: &'a str,
    pub item: &'a str,
    pub item_name: Option<&'a str>,
    pub quantity: f64,
    pub from_trust: &'a str,
    pub from_location: &'a str,
    pub to_trust: &'a str,
    pub to_location: &'a str,
    /// The day it was accepted.
    pub day: NaiveDate,
}

impl TrustTransfer<'_> {
    fn request(&self, kind: &str) -> Value {
        json!({
            "resourceType": "SupplyRequest",
            "id": format!("offer-{}-{kind}", self.offer),
            "identifier": [{ "system": fdp_fhir::systems::SUPPLY_SUGGESTION, "value": format!("offer-{}", self.offer) }],
            "itemCodeableConcept": {
                "coding": [{ "system": fdp_fhir::systems::NHS_SUPPLY_CHAIN_NPC, "code": self.item }],
                "text": self.item_name,
            },
            "quantity": { "value": self.quantity },
            "occurrenceDateTime": self.day.to_string(),
            "authoredOn": Utc::now().to_rfc3339(),
        })
    }

    /// At the sending trust: the stock leaves its location for the other
    /// trust (a `dispatch`, which is not use). Its id is the offer's, so
    /// recording it twice records it once.
    pub fn dispatch(&self) -> (Value, String) {
        let mut r = self.request("dispatch");
        r["status"] = json!("completed");
        r["category"] = json!({ "text": "dispatch" });
        r["deliverFrom"] = location(self.from_location);
        r["deliverTo"] = organisation(self.to_trust);
        r["reasonCode"] = json!([{ "text": format!("sent to {} ({}), offered through the federation", self.to_trust, self.to_location) }]);
        let id = r["id"].as_str().unwrap_or_default().to_string();
        (r, id)
    }

    /// At the receiving trust: the stock is on its way to its location,
    /// held as on order until a receipt covers it.
    pub fn receipt(&self) -> (Value, String) {
        let mut r = self.request("receipt");
        r["status"] = json!("active");
        r["category"] = json!({ "text": "order" });
        r["deliverTo"] = location(self.to_location);
        r["supplier"] = json!([organisation(self.from_trust)]);
        r["reasonCode"] = json!([{ "text": format!("offered by {} from {} through the federation", self.from_trust, self.from_location) }]);
        let id = r["id"].as_str().unwrap_or_default().to_string();
        (r, id)
    }
}

fn location(l: &str) -> Value {
    json!({ "identifier": { "system": fdp_fhir::systems::SUPPLY_LOCATION, "value": l } })
}

fn organisation(ods: &str) -> Value {
    json!({ "identifier": { "system": fdp_fhir::systems::ODS_ORGANISATION, "value": ods } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(code: &str, critical: bool, spare: f64, to_order: f64) -> ItemPosition {
        ItemPosition {
            item_code: code.into(),
            item_name: Some(format!("{code} name")),
            category: Some("gloves".into()),
            critical,
            locations: 3,
            forecast_per_month: 100.04,
            on_hand: 50.0,
            surplus: spare,
            shortfall: to_order,
            spare,
            to_order,
        }
    }

    fn published(trust: &str, items: Vec<ItemPosition>) -> Published {
        Published {
            publisher: trust.into(),
            as_at: NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
            items,
            published_at: Utc::now(),
            received_at: Utc::now(),
        }
    }

    #[test]
    fn the_area_adds_the_trusts_and_buys_only_what_spare_stock_cannot_meet() {
        let feeds = [
            published("RXA", vec![item("FTA001", true, 40.0, 0.0), item("EXZ100", false, 0.0, 9.0)]),
            published("RXB", vec![item("FTA001", true, 0.0, 25.0)]),
            published("RXC", vec![item("FTA001", true, 10.0, 60.0)]),
        ];
        let a = area(&feeds);
        assert_eq!(a[0].item_code, "FTA001", "critical first: {a:?}");
        let gloves = &a[0];
        assert_eq!(gloves.trusts, 3);
        assert_eq!((gloves.spare, gloves.to_order, gloves.to_buy), (50.0, 85.0, 35.0));
        assert_eq!(gloves.on_hand, 150.0);
        assert_eq!(gloves.forecast_per_month, 300.1);
        let who = |v: &[TrustQuantity]| v.iter().map(|t| (t.trust.clone(), t.quantity)).collect::<Vec<_>>();
        assert_eq!(who(&gloves.spare_at), [("RXA".to_string(), 40.0), ("RXC".into(), 10.0)]);
        assert_eq!(who(&gloves.needed_at), [("RXC".to_string(), 60.0), ("RXB".into(), 25.0)]);
        // More spare than need: nothing to buy.
        let a = area(&[published("RXA", vec![item("FTA001", true, 40.0, 0.0)]), published("RXB", vec![item("FTA001", true, 0.0, 25.0)])]);
        assert_eq!(a[0].to_buy, 0.0);
    }

    #[test]
    fn a_position_with_a_negative_or_missing_figure_is_refused() {
        assert!(item("FTA001", true, 1.0, 0.0).check().is_ok());
        let mut bad = item("FTA001", true, 1.0, 0.0);
        bad.spare = -3.0;
        assert!(bad.check().unwrap_err().contains("spare"));
        bad.spare = f64::NAN;
        assert!(bad.check().is_err());
        let mut row = serde_json::to_value(item("FTA001", true, 1.0, 0.0)).unwrap().as_object().unwrap().clone();
        row.remove("to_order");
        let e = ItemPosition::from_rows(&[row]).unwrap_err();
        assert!(e.contains("FTA001") && e.contains("to_order"), "{e}");
    }

    #[test]
    fn a_transfer_between_trusts_leaves_a_dispatch_at_one_and_stock_on_order_at_the_other() {
        let t = TrustTransfer {
            offer: "m-1",
            item: "FTA001",
            item_name: Some("Gloves"),
            quantity: 40.0,
            from_trust: "RXA",
            from_location: "RXA01:W3",
            to_trust: "RXB",
            to_location: "RXB01:W7",
            day: NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
        };
        let (sent, id) = t.dispatch();
        assert_eq!(id, "offer-m-1-dispatch");
        let rows = fdp_fhir::map::map_resource(&sent, &id).unwrap();
        let m = &rows.rows[0].1;
        assert_eq!(m["movement_type"], "dispatch");
        assert_eq!(m["location_id"], "RXA01:W3");
        assert_eq!(m["site_id"], "RXA01");
        assert!(m.get("from_location_id").is_none_or(Value::is_null), "{m:?}");
        assert_eq!(m["quantity"], 40);
        let (came, id) = t.receipt();
        assert_eq!(id, "offer-m-1-receipt");
        let rows = fdp_fhir::map::map_resource(&came, &id).unwrap();
        let m = &rows.rows[0].1;
        assert_eq!(m["movement_type"], "order");
        assert_eq!(m["location_id"], "RXB01:W7");
        assert!(m["reason"].as_str().unwrap().contains("RXA"), "{m:?}");
    }
}
