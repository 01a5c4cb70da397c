use std::fmt::Write;

use crate::model::{Model, ObjectType};

impl Model {
    /// Text listing of every object type and its properties, for `fdp model`.
    pub fn describe(&self) -> String {
        let cdm = self.cdm_types().count();
        let ext = self.extension_types().count();
        let props: usize = self.object_types().iter().map(|t| t.properties.len()).sum();
        let mut out = format!(
            "{} object types ({cdm} from the FDP Canonical Data Model, {ext} OpenFDP extensions), {props} properties\n",
            cdm + ext
        );
        for t in self.object_types() {
            out.push('\n');
            out.push_str(&t.describe());
        }
        out
    }

    /// One-line-per-type summary, for listing without the properties.
    pub fn describe_summary(&self) -> String {
        let name_w = width(self.object_types().iter().map(|t| t.name.len()), 4);
        let table_w = width(self.object_types().iter().map(|t| t.table.len()), 5);
        let mut out = format!(
            "{:name_w$}  {:table_w$}  {:<10}  PRIMARY KEY\n",
            "TYPE", "TABLE", "PROPERTIES"
        );
        for t in self.object_types() {
            let marker = if t.extension { "  [extension]" } else { "" };
            let _ = writeln!(
                out,
                "{:name_w$}  {:table_w$}  {:<10}  {}{marker}",
                t.name,
                t.table,
                t.properties.len(),
                t.primary_key_property().column
            );
        }
        out
    }
}

impl ObjectType {
    /// Text description of this type: header, then one line per property, then links.
    pub fn describe(&self) -> String {
        let origin = if self.extension {
            "OpenFDP extension"
        } else {
            "CDM"
        };
        let mut out = format!(
            "{} [{origin}]\n  table: {}\n  primary key: {}\n",
            self.name,
            self.table,
            self.primary_key_property().column
        );
        if let Some(url) = &self.data_dictionary {
            let _ = writeln!(out, "  data dictionary: {url}");
        }
        let col_w = width(self.properties.iter().map(|p| p.column.len()), 6);
        let type_w = width(
            self.properties
                .iter()
                .map(|p| p.property_type.as_str().len()),
            4,
        );
        let sens_w = "quasi_identifying".len();
        let _ = writeln!(
            out,
            "  {:col_w$}  {:type_w$}  {:sens_w$}  NOTES",
            "COLUMN", "TYPE", "SENSITIVITY"
        );
        for p in &self.properties {
            let mut notes = Vec::new();
            if p.name == self.primary_key {
                notes.push("primary key".to_string());
            } else if !p.nullable {
                notes.push("not null".to_string());
            }
            if let Some(values) = &p.allowed_values {
                let list: Vec<String> = values
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect();
                notes.push(format!("one of: {}", list.join(", ")));
            }
            let line = format!(
                "  {:col_w$}  {:type_w$}  {:sens_w$}  {}",
                p.column,
                p.property_type.as_str(),
                p.sensitivity.as_str(),
                notes.join("; ")
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if !self.links.is_empty() {
            out.push_str("  links:\n");
            for l in &self.links {
                let card = l.cardinality.map_or("?", |c| c.as_str());
                let via = l
                    .foreign_key
                    .as_ref()
                    .map(|fk| format!(" via {}.{}", fk.object, fk.property))
                    .unwrap_or_default();
                let _ = writeln!(out, "    {} -> {} ({card}){via}", l.name, l.target);
            }
        }
        out
    }
}

fn width(lengths: impl Iterator<Item = usize>, min: usize) -> usize {
    lengths.max().unwrap_or(0).max(min)
}
