//! The write-ahead log: where a received record becomes durable.
//!
//! A source is acknowledged as soon as its record is in the WAL and the WAL is
//! fsynced; the raw Delta tables are filled from the WAL in larger batches a
//! moment later. Group commit (many records, one fsync) is what lets a single
//! instance acknowledge tens of thousands of messages a second durably.
//!
//! On disk: segment files `<first seq, 20 digits>.wal`, each a run of frames
//! `[body length u32 LE][crc32 of body u32 LE][body]`. A torn frame at the end
//! of the newest segment (a crash mid-write) is cut off on recovery; it was
//! never acknowledged. A bad frame anywhere else is corruption and is reported,
//! never skipped silently.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::raw::{RawRecord, RecordStatus};
use crate::StoreError;

/// Roll to a new segment once the current one passes this size, so that
/// flushed segments can be deleted whole.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// A frame larger than this cannot be one we wrote: treat as corruption.
const MAX_FRAME: u32 = 256 * 1024 * 1024;

/// Append side of the WAL. Used from a single thread (the committer).
pub struct Wal {
    dir: PathBuf,
    file: File,
    segment_first_seq: u64,
    segment_len: u64,
    buf: Vec<u8>,
}

/// Segments and records found on disk at start-up.
pub struct Recovered {
    /// Every intact record, in sequence order.
    pub records: Vec<RawRecord>,
    /// Highest sequence number seen in the WAL (0 if empty).
    pub last_seq: u64,
}

impl Wal {
    /// Read every segment in `dir`, cutting off a torn tail, and return what
    /// is there. The caller decides which records still need to reach Delta.
    pub fn recover(dir: &Path) -> Result<Recovered, StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let segments = list_segments(dir)?;
        let mut records = Vec::new();
        let mut last_seq = 0;
        for (i, (_, path)) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let (mut recs, valid_len, end) = read_segment(path)?;
            if let SegmentEnd::Corrupt { at } = end {
                return Err(StoreError::Corrupt(format!(
                    "WAL segment {} has a damaged record at byte {at} with intact data after it; \
                     restore the data directory from a backup, or move the segment aside to start \
                     (records in it that are not yet in the raw tables would be lost)",
                    path.display()
                )));
            }
            if end == SegmentEnd::Torn {
                if !is_last {
                    return Err(StoreError::Corrupt(format!(
                        "WAL segment {} is damaged at byte {valid_len} and is not the newest segment; \
                         restore the data directory from a backup or move the segment aside to start",
                        path.display()
                    )));
                }
                tracing::warn!(
                    segment = %path.display(),
                    at = valid_len,
                    "cutting off a partly written WAL record (never acknowledged)"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| StoreError::io(path, e))?;
                f.set_len(valid_len).map_err(|e| StoreError::io(path, e))?;
                f.sync_all().map_err(|e| StoreError::io(path, e))?;
            }
            // Sequence numbers only grow; a record that does not is a copy.
            recs.retain(|r| {
                let fresh = r.seq > last_seq;
                if fresh {
                    last_seq = r.seq;
                } else {
                    tracing::warn!(seq = r.seq, "skipping a repeated WAL record");
                }
                fresh
            });
            records.append(&mut recs);
        }
        Ok(Recovered { records, last_seq })
    }

    /// Open a fresh segment whose first record will be `next_seq`.
    pub fn open(dir: &Path, next_seq: u64) -> Result<Self, StoreError> {
        let (file, path) = create_segment(dir, next_seq)?;
        let segment_len = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        Ok(Wal {
            dir: dir.to_path_buf(),
            file,
            segment_first_seq: next_seq,
            segment_len,
            buf: Vec::with_capacity(1 << 20),
        })
    }

    /// Encode a record into the pending buffer; nothing is written until
    /// [`Wal::sync`].
    pub fn stage(&mut self, record: &RawRecord) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; 8]);
        encode_body(record, &mut self.buf);
        let body = &self.buf[start + 8..];
        let len = body.len() as u32;
        let crc = crc32fast::hash(body);
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Write the staged records and fsync. Only after this returns may any of
    /// them be acknowledged. `next_seq` is the sequence number the next staged
    /// record will carry, used to name a new segment when this one is full.
    pub fn sync(&mut self, next_seq: u64) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self
            .file
            .write_all(&self.buf)
            .and_then(|_| self.file.sync_data());
        // Whatever happened, these frames are never written again: on
        // failure they were answered "not stored", and a second copy would
        // reach the raw tables twice.
        let staged = self.buf.len() as u64;
        self.buf.clear();
        if self.buf.capacity() > 16 << 20 {
            self.buf.shrink_to(1 << 20);
        }
        if let Err(e) = written {
            // Take back a partial write so that nothing follows it; if even
            // that fails, recovery cuts the segment at the first bad frame.
            let _ = self.file.set_len(self.segment_len);
            return Err(StoreError::io(&self.segment_path(), e));
        }
        self.segment_len += staged;
        if self.segment_len >= SEGMENT_BYTES {
            let (file, _) = create_segment(&self.dir, next_seq)?;
            self.file = file;
            self.segment_first_seq = next_seq;
            self.segment_len = 0;
        }
        Ok(())
    }

    /// Delete closed segments whose records are all at or below `flushed`
    /// (already in the raw Delta tables).
    pub fn truncate_through(&self, flushed: u64) -> Result<usize, StoreError> {
        let segments = list_segments(&self.dir)?;
        let mut removed = 0;
        for (i, (first, path)) in segments.iter().enumerate() {
            if *first >= self.segment_first_seq {
                break;
            }
            // A segment's records end just before the next segment begins.
            let next_first = segments
                .get(i + 1)
                .map(|(f, _)| *f)
                .unwrap_or(self.segment_first_seq);
            if next_first == 0 || next_first - 1 > flushed {
                break;
            }
            fs::remove_file(path).map_err(|e| StoreError::io(path, e))?;
            removed += 1;
        }
        Ok(removed)
    }

    fn segment_path(&self) -> PathBuf {
        segment_path(&self.dir, self.segment_first_seq)
    }
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<(File, PathBuf), StoreError> {
    let path = segment_path(dir, first_seq);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    // The new file's directory entry must survive a crash too.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok((file, path))
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wal") {
            continue;
        }
        if let Some(first) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

/// How a segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SegmentEnd {
    Clean,
    /// The last frame is incomplete or fails its check and nothing follows
    /// it: a write cut short by a crash, never acknowledged.
    Torn,
    /// A frame fails its check and intact data follows: real damage.
    Corrupt {
        at: u64,
    },
}

/// Returns the intact records, the length of the intact prefix and how the
/// segment ends.
fn read_segment(path: &Path) -> Result<(Vec<RawRecord>, u64, SegmentEnd), StoreError> {
    let file_len = fs::metadata(path)
        .map_err(|e| StoreError::io(path, e))?
        .len();
    let f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut records = Vec::new();
    let mut offset = 0u64;
    let mut header = [0u8; 8];
    let mut body = Vec::new();
    // A bad frame that is the last thing in the file is a torn write; one
    // with more bytes after it is damage.
    let bad = |offset: u64, frame_end: u64| {
        if frame_end >= file_len {
            SegmentEnd::Torn
        } else {
            SegmentEnd::Corrupt { at: offset }
        }
    };
    loop {
        match read_full(&mut r, &mut header) {
            Ok(0) => return Ok((records, offset, SegmentEnd::Clean)),
            Ok(8) => {}
            Ok(_) => return Ok((records, offset, SegmentEnd::Torn)),
            Err(e) => return Err(StoreError::io(path, e)),
        }
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let frame_end = offset + 8 + len as u64;
        if len > MAX_FRAME {
            return Ok((records, offset, bad(offset, frame_end)));
        }
        body.resize(len as usize, 0);
        match read_full(&mut r, &mut body) {
            Ok(n) if n == len as usize => {}
            Ok(_) => return Ok((records, offset, SegmentEnd::Torn)),
            Err(e) => return Err(StoreError::io(path, e)),
        }
        if crc32fast::hash(&body) != crc {
            return Ok((records, offset, bad(offset, frame_end)));
        }
        match decode_body(&body) {
            Some(rec) => records.push(rec),
            None => return Ok((records, offset, bad(offset, frame_end))),
        }
        offset = frame_end;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode_body(r: &RawRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.seq.to_le_bytes());
    out.extend_from_slice(&r.received_at_us.to_le_bytes());
    out.push(r.status as u8);
    put_str(out, &r.stream);
    put_str(out, &r.source);
    put_str(out, &r.message_type);
    put_str(out, &r.control_id);
    put_str(out, r.dedup_key.as_deref().unwrap_or(""));
    put_str(out, &r.reason);
    put_str(out, &r.location);
    out.extend_from_slice(&r.payload);
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn decode_body(body: &[u8]) -> Option<RawRecord> {
    let mut c = Cursor(body);
    let seq = c.u64()?;
    let received_at_us = c.u64()? as i64;
    let status = RecordStatus::from_u8(c.take(1)?[0])?;
    let stream = c.string()?;
    let source = c.string()?;
    let message_type = c.string()?;
    let control_id = c.string()?;
    let dedup_key = c.string()?;
    let reason = c.string()?;
    let location = c.string()?;
    Some(RawRecord {
        seq,
        received_at_us,
        status,
        stream,
        source,
        message_type,
        control_id,
        dedup_key: (!dedup_key.is_empty()).then_some(dedup_key),
        reason,
        location,
        payload: c.0.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, payload: &[u8]) -> RawRecord {
        RawRecord {
            seq,
            received_at_us: 1_700_000_000_000_000 + seq as i64,
            status: RecordStatus::Accepted,
            stream: "hl7v2".into(),
            source: "127.0.0.1:1".into(),
            message_type: "ADT^A01".into(),
            control_id: format!("C{seq}"),
            dedup_key: Some(format!("PAS|RXX|C{seq}")),
            reason: String::new(),
            location: String::new(),
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn records_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 1).unwrap();
        for s in 1..=100 {
            wal.stage(&rec(s, format!("MSH|{s}").as_bytes()));
        }
        wal.sync(101).unwrap();
        drop(wal);
        let got = Wal::recover(dir.path()).unwrap();
        assert_eq!(got.records.len(), 100);
        assert_eq!(got.last_seq, 100);
        assert_eq!(got.records[41], rec(42, b"MSH|42"));
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 1).unwrap();
        wal.stage(&rec(1, b"first"));
        wal.stage(&rec(2, b"second"));
        wal.sync(3).unwrap();
        drop(wal);
        let path = segment_path(dir.path(), 1);
        let full = fs::read(&path).unwrap();
        // Every possible crash point inside the second frame.
        let first_len = 8 + u32::from_le_bytes(full[0..4].try_into().unwrap()) as usize;
        for cut in first_len + 1..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let got = Wal::recover(dir.path()).unwrap();
            assert_eq!(got.records.len(), 1, "cut at {cut}");
            assert_eq!(fs::metadata(&path).unwrap().len() as usize, first_len);
        }
    }

    #[test]
    fn a_flipped_bit_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 1).unwrap();
        wal.stage(&rec(1, b"first"));
        wal.stage(&rec(2, b"second"));
        wal.sync(3).unwrap();
        drop(wal);
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 2] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let got = Wal::recover(dir.path()).unwrap();
        assert_eq!(got.records.len(), 1);
    }

    #[test]
    fn damage_followed_by_intact_records_is_an_error_not_a_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 1).unwrap();
        for s in 1..=3 {
            wal.stage(&rec(s, b"payload"));
        }
        wal.sync(4).unwrap();
        drop(wal);
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        let first_len = 8 + u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
        bytes[first_len + 12] ^= 0x01; // inside the second of three frames
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            Wal::recover(dir.path()),
            Err(StoreError::Corrupt(_))
        ));
        // Nothing was cut off.
        assert_eq!(fs::metadata(&path).unwrap().len() as usize, bytes.len());
    }

    #[test]
    fn a_repeated_record_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 1).unwrap();
        wal.stage(&rec(1, b"a"));
        wal.stage(&rec(2, b"b"));
        wal.stage(&rec(2, b"b"));
        wal.stage(&rec(3, b"c"));
        wal.sync(4).unwrap();
        drop(wal);
        let got = Wal::recover(dir.path()).unwrap();
        let seqs: Vec<u64> = got.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
    }

    #[test]
    fn damage_in_an_older_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 1).unwrap();
        wal.stage(&rec(1, b"first"));
        wal.sync(2).unwrap();
        drop(wal);
        let mut wal = Wal::open(dir.path(), 2).unwrap();
        wal.stage(&rec(2, b"second"));
        wal.sync(3).unwrap();
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            Wal::recover(dir.path()),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn flushed_segments_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        for first in [1u64, 11, 21] {
            let mut wal = Wal::open(dir.path(), first).unwrap();
            for s in first..first + 10 {
                wal.stage(&rec(s, b"x"));
            }
            wal.sync(first + 10).unwrap();
        }
        let wal = Wal::open(dir.path(), 31).unwrap();
        assert_eq!(wal.truncate_through(15).unwrap(), 1);
        assert_eq!(wal.truncate_through(30).unwrap(), 2);
        let got = Wal::recover(dir.path()).unwrap();
        assert!(got.records.is_empty());
    }
}
