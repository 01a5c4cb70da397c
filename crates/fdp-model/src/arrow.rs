use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};

use crate::model::{ObjectType, Property, PropertyType};

/// Field metadata keys, so storage and governance layers can recover the CDM name and the
/// sensitivity tag from a bare Arrow schema (for example one read back from Parquet).
pub const META_OBJECT_TYPE: &str = "fdp.object_type";
pub const META_PROPERTY: &str = "fdp.property";
pub const META_SENSITIVITY: &str = "fdp.sensitivity";
pub const META_PRIMARY_KEY: &str = "fdp.primary_key";

impl PropertyType {
    pub fn arrow_data_type(self) -> DataType {
        match self {
            PropertyType::String => DataType::Utf8,
            PropertyType::Integer => DataType::Int32,
            PropertyType::Long => DataType::Int64,
            PropertyType::Double => DataType::Float64,
            PropertyType::Boolean => DataType::Boolean,
            PropertyType::Date => DataType::Date32,
            // Always UTC: the CDM carries instants, and one zone keeps comparisons cheap.
            PropertyType::Timestamp => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            PropertyType::StringList => {
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
            }
        }
    }
}

impl ObjectType {
    /// Arrow schema with one field per property, named by column, in declaration order.
    /// Everything is nullable except the primary key: the CDM makes no other promises.
    pub fn arrow_schema(&self) -> Schema {
        let fields: Vec<Field> = self
            .properties
            .iter()
            .map(|p| self.arrow_field(p))
            .collect();
        let metadata = HashMap::from([
            (META_OBJECT_TYPE.to_string(), self.name.clone()),
            (
                META_PRIMARY_KEY.to_string(),
                self.primary_key_property().column.clone(),
            ),
        ]);
        Schema::new_with_metadata(fields, metadata)
    }

    fn arrow_field(&self, p: &Property) -> Field {
        let nullable = p.name != self.primary_key;
        let metadata = HashMap::from([
            (META_PROPERTY.to_string(), p.name.clone()),
            (
                META_SENSITIVITY.to_string(),
                p.sensitivity.as_str().to_string(),
            ),
        ]);
        Field::new(&p.column, p.property_type.arrow_data_type(), nullable).with_metadata(metadata)
    }
}
