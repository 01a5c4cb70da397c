//! The raw layer: every record exactly as a source sent it.
//!
//! Raw records are immutable. Each carries the instance-wide sequence number
//! the WAL gave it, when and from where it arrived, and whether it was
//! accepted, quarantined (with the rule it broke and where) or accepted but
//! not processed (a message type this instance keeps without mapping).

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};

/// What happened to a received record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordStatus {
    /// Valid and applied to the canonical model.
    Accepted = 1,
    /// Rejected: kept with its reason and raw bytes for the data engineer.
    Quarantined = 2,
    /// Valid, of a kind this instance keeps without mapping (for example ORU).
    Unprocessed = 3,
}

impl RecordStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordStatus::Accepted => "accepted",
            RecordStatus::Quarantined => "quarantined",
            RecordStatus::Unprocessed => "unprocessed",
        }
    }
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Accepted),
            2 => Some(Self::Quarantined),
            3 => Some(Self::Unprocessed),
            _ => None,
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(Self::Accepted),
            "quarantined" => Some(Self::Quarantined),
            "unprocessed" => Some(Self::Unprocessed),
            _ => None,
        }
    }
}

/// One received record, as durable in the WAL and in the raw Delta table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Instance-wide, gap-free within a run, strictly increasing.
    pub seq: u64,
    /// Arrival time, microseconds since the Unix epoch (UTC).
    pub received_at_us: i64,
    pub status: RecordStatus,
    /// Which raw table the record belongs to, e.g. `hl7v2_message`.
    pub stream: String,
    /// Who sent it: a peer address, a file path, a user.
    pub source: String,
    /// For HL7 v2: `ADT^A01`; for user actions: the object type changed.
    pub message_type: String,
    /// The sender's own id for the record (HL7 MSH-10).
    pub control_id: String,
    /// Records with the same key are the same record re-sent; only the first
    /// is kept.
    pub dedup_key: Option<String>,
    /// Why it was quarantined (empty when accepted).
    pub reason: String,
    /// Where in the record the problem is, e.g. `segment 3 (PID) field 3`.
    pub location: String,
    pub payload: Vec<u8>,
}

/// The columns of every raw table.
pub fn raw_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new(
            "received_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("status", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("message_type", DataType::Utf8, false),
        Field::new("control_id", DataType::Utf8, false),
        Field::new("dedup_key", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("location", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, false),
    ]))
}

/// Build one Arrow batch from records of a single stream.
pub fn to_batch(records: &[&RawRecord]) -> RecordBatch {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            records.iter().map(|r| r.seq as i64),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(records.iter().map(|r| r.received_at_us))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.status.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.source.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.message_type.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.control_id.as_str()),
        )),
        Arc::new(StringArray::from_iter(
            records.iter().map(|r| r.dedup_key.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.reason.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.location.as_str()),
        )),
        Arc::new(BinaryArray::from_iter_values(
            records.iter().map(|r| r.payload.as_slice()),
        )),
    ];
    RecordBatch::try_new(raw_schema(), cols).expect("raw columns match the raw schema")
}

/// Read records back from a batch with the raw columns (in any order, and
/// with strings as `Utf8View`, as Delta scans return them).
pub fn from_batch(stream: &str, batch: &RecordBatch) -> Result<Vec<RawRecord>, String> {
    let col = |name: &str| -> Result<ArrayRef, String> {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| format!("raw table {stream} has no column {name}"))
    };
    let utf8 = |name: &str| -> Result<StringArray, String> {
        let c = cast(&col(name)?, &DataType::Utf8).map_err(|e| e.to_string())?;
        Ok(c.as_string::<i32>().clone())
    };
    let seq = cast(&col("seq")?, &DataType::Int64).map_err(|e| e.to_string())?;
    let seq = seq.as_primitive::<Int64Type>();
    let ts = cast(
        &col("received_at")?,
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    )
    .map_err(|e| e.to_string())?;
    let ts = ts.as_primitive::<deltalake::arrow::datatypes::TimestampMicrosecondType>();
    let status = utf8("status")?;
    let source = utf8("source")?;
    let message_type = utf8("message_type")?;
    let control_id = utf8("control_id")?;
    let dedup_key = utf8("dedup_key")?;
    let reason = utf8("reason")?;
    let location = utf8("location")?;
    let payload = cast(&col("payload")?, &DataType::Binary).map_err(|e| e.to_string())?;
    let payload = payload.as_binary::<i32>();
    (0..batch.num_rows())
        .map(|i| {
            Ok(RawRecord {
                seq: seq.value(i) as u64,
                received_at_us: ts.value(i),
                status: RecordStatus::parse(status.value(i))
                    .ok_or_else(|| format!("unknown status {:?}", status.value(i)))?,
                stream: stream.to_string(),
                source: source.value(i).to_string(),
                message_type: message_type.value(i).to_string(),
                control_id: control_id.value(i).to_string(),
                dedup_key: (!dedup_key.is_null(i)).then(|| dedup_key.value(i).to_string()),
                reason: reason.value(i).to_string(),
                location: location.value(i).to_string(),
                payload: payload.value(i).to_vec(),
            })
        })
        .collect()
}
