//! Turning derived rows (JSON objects keyed by column name) into Arrow
//! batches of a declared schema.
//!
//! Values are coerced to the column's type where the meaning is plain (a
//! number into a text column, a microsecond count into a timestamp); a value
//! that cannot be coerced is an error naming the column, never a silent null.

use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{DataType, Schema};
use serde_json::{Map, Value};

/// Build one batch from rows. Columns missing from a row are null.
pub fn batch_from_rows(
    schema: &Arc<Schema>,
    rows: &[Map<String, Value>],
) -> Result<RecordBatch, String> {
    // In slices: the coerced copy and the decoder's tape are held for one
    // slice at a time, not for a whole table.
    const SLICE: usize = 4096;
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(SLICE)
        .build_decoder()
        .map_err(|e| e.to_string())?;
    let mut batches = Vec::with_capacity(rows.len().div_ceil(SLICE));
    for slice in rows.chunks(SLICE) {
        let coerced: Vec<Map<String, Value>> = slice
            .iter()
            .map(|row| coerce_row(schema, row))
            .collect::<Result<_, _>>()?;
        decoder.serialize(&coerced).map_err(|e| e.to_string())?;
        if let Some(b) = decoder.flush().map_err(|e| e.to_string())? {
            batches.push(b);
        }
    }
    match batches.len() {
        0 => Ok(RecordBatch::new_empty(schema.clone())),
        1 => Ok(batches.remove(0)),
        _ => deltalake::arrow::compute::concat_batches(schema, &batches).map_err(|e| e.to_string()),
    }
}

fn coerce_row(schema: &Schema, row: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = Map::with_capacity(row.len());
    for (k, v) in row {
        let Ok(field) = schema.field_with_name(k) else {
            return Err(format!("no column {k} in the table"));
        };
        let v = match (field.data_type(), v) {
            (_, Value::Null) => Value::Null,
            (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Value::Number(n)) => {
                Value::String(n.to_string())
            }
            (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Value::Bool(b)) => {
                Value::String(b.to_string())
            }
            (DataType::Int32 | DataType::Int64 | DataType::Float64, Value::String(s)) => s
                .parse::<f64>()
                .ok()
                .and_then(|f| {
                    if matches!(field.data_type(), DataType::Float64) {
                        serde_json::Number::from_f64(f).map(Value::Number)
                    } else {
                        s.parse::<i64>().ok().map(Value::from)
                    }
                })
                .ok_or_else(|| format!("column {k}: {s:?} is not a number"))?,
            (DataType::Boolean, Value::String(s)) => match s.as_str() {
                "true" | "Y" | "yes" => Value::Bool(true),
                "false" | "N" | "no" => Value::Bool(false),
                _ => return Err(format!("column {k}: {s:?} is not true or false")),
            },
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::datatypes::{Field, TimeUnit};
    use serde_json::json;

    #[test]
    fn rows_become_typed_columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("d", DataType::Date32, true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]));
        let rows = vec![
            json!({"id": 7, "n": "3", "at": 1_700_000_000_000_000i64, "d": "2026-11-21", "tags": ["a", "b"]}),
            json!({"id": "x"}),
        ];
        let rows: Vec<Map<String, Value>> = rows
            .into_iter()
            .map(|v| v.as_object().unwrap().clone())
            .collect();
        let b = batch_from_rows(&schema, &rows).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(1).null_count(), 1);
        let bad = vec![json!({"n": "three"}).as_object().unwrap().clone()];
        assert!(batch_from_rows(&schema, &bad)
            .unwrap_err()
            .contains("column n"));
    }
}
