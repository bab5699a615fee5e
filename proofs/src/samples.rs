//! The compact sample encoding of format 1.3: `samples/<node>.smp` (see
//! `docs/proof-format.md`, "Sample files").
//!
//! A file is the 8-byte magic `SOAKSMP1` followed by records, each `varint(len) payload[len]`
//! whose first payload byte is the record kind. Names (metric name lists) and strings (instance
//! ids, error texts) are interned in tables defined by records before their first use; a sample
//! stores its time as a delta from the previous record's, its counters as zig-zag varint deltas
//! from the previous sample with the same name list, and its gauges as "unchanged", a small
//! integer, or raw `f64` bits; a sample with a per-peer gauge breakdown (`SampleData::by_peer`)
//! adds it after its gauges. Decoding is exact: every sample reads back bit for bit.
//!
//! It stays appendable: the writer appends each sample's records with one `write_all`, so a
//! writer killed mid-append leaves whole records plus a torn last one, which [`decode`] drops
//! with a note. A `RESET` record clears the tables and deltas (the encoder emits one when its
//! tables fill up, and a writer reopening a file for more samples starts with one).
//!
//! Decoding untrusted bytes never panics and its memory is bounded by a fixed multiple of the
//! input size (every table and string has a limit, and a decode budget caps what small records
//! may expand to).

use std::collections::{BTreeMap, HashMap};

use soak_gates::model::{MetricNames, Metrics, Sample, SampleData, SampleOutcome};

/// First bytes of every sample file.
pub const MAGIC: &[u8; 8] = b"SOAKSMP1";

const KIND_NAMES: u8 = 1;
const KIND_STRING: u8 = 2;
const KIND_OK: u8 = 3;
const KIND_MISSING: u8 = 4;
const KIND_RESET: u8 = 5;
const KIND_OK_BY_PEER: u8 = 6;

/// Largest record payload.
pub const MAX_RECORD: usize = 1 << 20;
/// Most names in one name list.
pub const MAX_NAMES: usize = 4096;
/// Most entries in each table (name lists, strings) before a reset.
pub const MAX_TABLE: usize = 4096;
/// Longest interned string (instance id, error text) or metric name, bytes.
pub const MAX_STRING: usize = 4096;
/// Most gauges with a per-peer breakdown in one sample.
pub const MAX_BY_PEER: usize = 64;

/// Gauge tag: same bits as the previous sample's value (or `0.0` without one).
const GAUGE_SAME: u64 = 0;
/// Gauge tag: raw `f64` bits follow (8 bytes, little endian).
const GAUGE_RAW: u64 = 2;

/// Encodes one node's samples, record by record, keeping the tables and the previous values.
#[derive(Debug, Default)]
pub struct SampleEncoder {
    header_written: bool,
    reset_pending: bool,
    prev_at: u64,
    lists: Vec<MetricNames>,
    strings: HashMap<String, u64>,
    counters: Option<(u64, Vec<u64>)>,
    gauges: Option<(u64, Vec<u64>)>,
    scratch: Vec<u8>,
}

impl SampleEncoder {
    /// An encoder for a new, empty file (its first bytes are the magic).
    pub fn new() -> SampleEncoder {
        SampleEncoder::default()
    }

    /// An encoder that appends to an existing file holding whole records: it starts with a
    /// `RESET` record instead of the magic.
    pub fn continuing() -> SampleEncoder {
        // The reset is written with the first sample, so `continuing()` itself writes nothing.
        SampleEncoder {
            header_written: true,
            reset_pending: true,
            ..SampleEncoder::default()
        }
    }

    /// Appends the bytes for `sample` (table records, then the sample record) to `out`.
    pub fn encode(&mut self, sample: &Sample, out: &mut Vec<u8>) {
        if !self.header_written {
            out.extend_from_slice(MAGIC);
            self.header_written = true;
        }
        if self.reset_pending {
            record(out, &[KIND_RESET]);
            self.reset_pending = false;
        }
        // Room for every table entry this sample may define: two metric lists and the instance
        // (or error) string, plus a gauge name and a peer list per breakdown.
        let extra = match &sample.outcome {
            SampleOutcome::Ok(data) => data.by_peer.len().min(MAX_BY_PEER),
            SampleOutcome::Missing { .. } => 0,
        };
        if self.lists.len() + 2 + extra > MAX_TABLE || self.strings.len() + 1 + extra > MAX_TABLE {
            record(out, &[KIND_RESET]);
            *self = SampleEncoder {
                header_written: true,
                scratch: std::mem::take(&mut self.scratch),
                ..SampleEncoder::default()
            };
        }
        let dt = zigzag(sample.at_ms.wrapping_sub(self.prev_at) as i64);
        self.prev_at = sample.at_ms;
        let mut payload = std::mem::take(&mut self.scratch);
        payload.clear();
        let unrecordable;
        let outcome = match &sample.outcome {
            SampleOutcome::Ok(data) => match unrecordable_why(data) {
                Some(why) => {
                    unrecordable = SampleOutcome::Missing { error: why };
                    &unrecordable
                }
                None => &sample.outcome,
            },
            missing => missing,
        };
        match outcome {
            SampleOutcome::Ok(data) => {
                let instance = self.string_id(&data.instance_id, out);
                let counters = self.list_id(data.counters.names(), out);
                let gauges = self.list_id(data.gauges.names(), out);
                let by_peer: Vec<(u64, u64, &BTreeMap<String, f64>)> = data
                    .by_peer
                    .iter()
                    .map(|(gauge, peers)| {
                        let name = self.string_id(gauge, out);
                        let list =
                            self.list_id(&MetricNames::new(peers.keys().map(String::as_str)), out);
                        (name, list, peers)
                    })
                    .collect();
                payload.push(if by_peer.is_empty() {
                    KIND_OK
                } else {
                    KIND_OK_BY_PEER
                });
                varint(&mut payload, dt);
                varint(&mut payload, instance);
                varint(&mut payload, counters);
                varint(&mut payload, gauges);
                let base = base_for(&self.counters, counters);
                for (i, value) in data.counters.values().iter().enumerate() {
                    let prev = base.map_or(0, |b| b[i]);
                    varint(&mut payload, zigzag(value.wrapping_sub(prev) as i64));
                }
                let bits: Vec<u64> = data.gauges.values().iter().map(|g| g.to_bits()).collect();
                let base = base_for(&self.gauges, gauges);
                for (i, &value) in bits.iter().enumerate() {
                    let prev = base.map_or(0, |b| b[i]);
                    gauge(&mut payload, value, prev);
                }
                if !by_peer.is_empty() {
                    varint(&mut payload, by_peer.len() as u64);
                    for (name, list, peers) in by_peer {
                        varint(&mut payload, name);
                        varint(&mut payload, list);
                        for value in peers.values() {
                            gauge(&mut payload, value.to_bits(), 0);
                        }
                    }
                }
                self.counters = Some((counters, data.counters.values().to_vec()));
                self.gauges = Some((gauges, bits));
            }
            SampleOutcome::Missing { error } => {
                let error = self.string_id(clip(error), out);
                payload.push(KIND_MISSING);
                varint(&mut payload, dt);
                varint(&mut payload, error);
            }
        }
        record(out, &payload);
        self.scratch = payload;
    }

    fn string_id(&mut self, text: &str, out: &mut Vec<u8>) -> u64 {
        if let Some(&id) = self.strings.get(text) {
            return id;
        }
        let id = self.strings.len() as u64;
        let mut payload = vec![KIND_STRING];
        bytes(&mut payload, text.as_bytes());
        record(out, &payload);
        self.strings.insert(text.to_string(), id);
        id
    }

    fn list_id(&mut self, names: &MetricNames, out: &mut Vec<u8>) -> u64 {
        // The last list used is by far the most likely; then any earlier one.
        let found = self
            .lists
            .iter()
            .rposition(|l| l.same_list(names) || l == names);
        if let Some(id) = found {
            return id as u64;
        }
        let id = self.lists.len() as u64;
        let mut payload = vec![KIND_NAMES];
        varint(&mut payload, names.len() as u64);
        for name in names.iter() {
            bytes(&mut payload, name.as_bytes());
        }
        record(out, &payload);
        self.lists.push(names.clone());
        id
    }
}

/// Why a good sample cannot be stored faithfully (a name or instance id over [`MAX_STRING`]
/// bytes, more than [`MAX_NAMES`] metrics or peers of a breakdown, more than [`MAX_BY_PEER`]
/// breakdowns): it is then stored as a failed attempt saying so — an evidence gap, never a
/// silently altered sample.
fn unrecordable_why(data: &SampleData) -> Option<String> {
    let too_long = |s: &str| s.len() > MAX_STRING;
    if too_long(&data.instance_id) {
        return Some(format!(
            "sample not recordable: instance id longer than {MAX_STRING} bytes"
        ));
    }
    for (what, names) in [
        ("counters", data.counters.names()),
        ("gauges", data.gauges.names()),
    ] {
        if names.len() > MAX_NAMES {
            return Some(format!(
                "sample not recordable: more than {MAX_NAMES} {what}"
            ));
        }
        if names.iter().any(too_long) {
            return Some(format!(
                "sample not recordable: a {what} name longer than {MAX_STRING} bytes"
            ));
        }
    }
    if data.by_peer.len() > MAX_BY_PEER {
        return Some(format!(
            "sample not recordable: more than {MAX_BY_PEER} per-peer breakdowns"
        ));
    }
    for (gauge, peers) in &data.by_peer {
        if too_long(gauge) || peers.keys().any(|p| too_long(p)) {
            return Some(format!(
                "sample not recordable: a per-peer gauge or peer name longer than {MAX_STRING} bytes"
            ));
        }
        if peers.len() > MAX_NAMES {
            return Some(format!(
                "sample not recordable: more than {MAX_NAMES} peers in a breakdown"
            ));
        }
    }
    None
}

/// A string cut to [`MAX_STRING`] bytes at a character boundary (an error text longer than
/// that is truncated).
fn clip(text: &str) -> &str {
    if text.len() <= MAX_STRING {
        return text;
    }
    let mut end = MAX_STRING;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn base_for(prev: &Option<(u64, Vec<u64>)>, list: u64) -> Option<&[u64]> {
    match prev {
        Some((id, values)) if *id == list => Some(values),
        _ => None,
    }
}

fn gauge(out: &mut Vec<u8>, bits: u64, prev: u64) {
    if bits == prev {
        varint(out, GAUGE_SAME);
        return;
    }
    let value = f64::from_bits(bits);
    let int = value as i64;
    // Exactly an integer of at most 53 bits (and not -0.0): a small odd tag.
    if (int as f64).to_bits() == bits && int.unsigned_abs() < (1 << 53) {
        varint(out, (zigzag(int) << 1) | 1);
    } else {
        varint(out, GAUGE_RAW);
        out.extend_from_slice(&bits.to_le_bytes());
    }
}

fn record(out: &mut Vec<u8>, payload: &[u8]) {
    varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn bytes(out: &mut Vec<u8>, data: &[u8]) {
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// What [`decode`] read.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// Every whole sample, in file order.
    pub samples: Vec<Sample>,
    /// Bytes of a torn last record that were ignored (a writer killed mid-append).
    pub torn_bytes: usize,
}

/// A sample file could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sample record at byte {offset}: {why}")]
pub struct DecodeError {
    /// Byte offset of the record in the file.
    pub offset: usize,
    /// What is wrong.
    pub why: String,
}

/// Whether `bytes` starts like a sample file (or is a torn start of one).
pub fn looks_like_samples(bytes: &[u8]) -> bool {
    let n = bytes.len().min(MAGIC.len());
    bytes[..n] == MAGIC[..n]
}

/// Decodes a whole sample file. A torn **last** record is dropped (counted in
/// [`Decoded::torn_bytes`]); anything else malformed is an error naming its offset.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut out = Decoded::default();
    if bytes.len() < MAGIC.len() {
        if looks_like_samples(bytes) {
            out.torn_bytes = bytes.len();
            return Ok(out);
        }
        return Err(DecodeError {
            offset: 0,
            why: "not a soak sample file (bad magic)".into(),
        });
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(DecodeError {
            offset: 0,
            why: "not a soak sample file (bad magic)".into(),
        });
    }
    let mut state = DecodeState::default();
    // What small records may expand to in memory: a fixed multiple of the input, so a crafted
    // file cannot make the reader allocate without bound.
    let mut budget = bytes.len().saturating_mul(64).saturating_add(1 << 20);
    let mut pos = MAGIC.len();
    while pos < bytes.len() {
        let start = pos;
        let mut cursor = Cursor {
            bytes: &bytes[pos..],
            pos: 0,
        };
        let Some(len) = cursor.varint() else {
            // The length itself is cut off: only possible at the end.
            out.torn_bytes = bytes.len() - start;
            break;
        };
        if len > MAX_RECORD as u64 || len == 0 {
            return Err(DecodeError {
                offset: start,
                why: format!("record length {len} outside 1..={MAX_RECORD}"),
            });
        }
        let body_start = pos + cursor.pos;
        let len = len as usize;
        if bytes.len() - body_start < len {
            out.torn_bytes = bytes.len() - start;
            break;
        }
        let payload = &bytes[body_start..body_start + len];
        pos = body_start + len;
        state
            .record(payload, &mut out.samples, &mut budget)
            .map_err(|why| DecodeError { offset: start, why })?;
    }
    Ok(out)
}

#[derive(Debug, Default)]
struct DecodeState {
    prev_at: u64,
    lists: Vec<MetricNames>,
    strings: Vec<String>,
    /// Index (in the output) of the last good sample since the last reset: the delta base.
    last_ok: Option<usize>,
}

impl DecodeState {
    fn record(
        &mut self,
        payload: &[u8],
        samples: &mut Vec<Sample>,
        budget: &mut usize,
    ) -> Result<(), String> {
        let mut c = Cursor {
            bytes: payload,
            pos: 0,
        };
        let kind = c.byte().ok_or("empty record")?;
        match kind {
            KIND_RESET => *self = DecodeState::default(),
            KIND_STRING => {
                if self.strings.len() >= MAX_TABLE {
                    return Err(format!("more than {MAX_TABLE} strings"));
                }
                let text = c.string()?;
                self.strings.push(text);
            }
            KIND_NAMES => {
                if self.lists.len() >= MAX_TABLE {
                    return Err(format!("more than {MAX_TABLE} name lists"));
                }
                let n = c.count(MAX_NAMES)?;
                let mut names = Vec::with_capacity(n);
                for _ in 0..n {
                    names.push(c.string()?.into_boxed_str());
                }
                let list = MetricNames::from_sorted(names)
                    .ok_or("metric names not strictly increasing")?;
                self.lists.push(list);
            }
            KIND_OK | KIND_OK_BY_PEER => {
                let at = self.time(&mut c)?;
                let instance = self.string(c.varint().ok_or("truncated instance")?)?;
                let counter_id = c.varint().ok_or("truncated counter list")?;
                let gauge_id = c.varint().ok_or("truncated gauge list")?;
                let counter_names = self.list(counter_id)?;
                let gauge_names = self.list(gauge_id)?;
                let cost = 64 + instance.len() + 8 * (counter_names.len() + gauge_names.len()) * 2;
                spend(budget, cost)?;
                // The previous good sample is the delta base when it used the same list.
                let prev = self.last_ok.and_then(|i| match &samples.get(i)?.outcome {
                    SampleOutcome::Ok(d) => Some(d),
                    SampleOutcome::Missing { .. } => None,
                });
                let base = prev
                    .filter(|d| d.counters.names().same_list(counter_names))
                    .map(|d| d.counters.values());
                let mut counters = Vec::with_capacity(counter_names.len());
                for i in 0..counter_names.len() {
                    let delta = unzigzag(c.varint().ok_or("truncated counter")?);
                    let prev = base.map_or(0, |b| b[i]);
                    counters.push(prev.wrapping_add(delta as u64));
                }
                let base = prev
                    .filter(|d| d.gauges.names().same_list(gauge_names))
                    .map(|d| d.gauges.values());
                let mut gauges = Vec::with_capacity(gauge_names.len());
                for i in 0..gauge_names.len() {
                    let prev = base.map_or(0, |b| b[i].to_bits());
                    gauges.push(f64::from_bits(c.gauge(prev)?));
                }
                let by_peer = if kind == KIND_OK_BY_PEER {
                    self.by_peer(&mut c, budget)?
                } else {
                    BTreeMap::new()
                };
                let data = SampleData {
                    by_peer,
                    instance_id: instance.to_string(),
                    counters: Metrics::from_parts(counter_names.clone(), counters)
                        .ok_or("counter count mismatch")?,
                    gauges: Metrics::from_parts(gauge_names.clone(), gauges)
                        .ok_or("gauge count mismatch")?,
                };
                self.last_ok = Some(samples.len());
                c.finish()?;
                samples.push(Sample {
                    at_ms: at,
                    outcome: SampleOutcome::Ok(data),
                });
                return Ok(());
            }
            KIND_MISSING => {
                let at = self.time(&mut c)?;
                let error = self.string(c.varint().ok_or("truncated error")?)?;
                spend(budget, 64 + error.len())?;
                let error = error.to_string();
                c.finish()?;
                samples.push(Sample {
                    at_ms: at,
                    outcome: SampleOutcome::Missing { error },
                });
                return Ok(());
            }
            other => return Err(format!("unknown record kind {other}")),
        }
        c.finish()
    }

    /// A sample's per-peer breakdowns: a count, then for each (in strictly increasing gauge
    /// name order) the gauge name's string, the peer list and one value per peer.
    fn by_peer(
        &self,
        c: &mut Cursor<'_>,
        budget: &mut usize,
    ) -> Result<BTreeMap<String, BTreeMap<String, f64>>, String> {
        let m = c.count(MAX_BY_PEER)?;
        let mut out = BTreeMap::new();
        let mut last: Option<&str> = None;
        for _ in 0..m {
            let gauge = self.string(c.varint().ok_or("truncated per-peer gauge")?)?;
            if last.is_some_and(|l| l >= gauge) {
                return Err("per-peer gauges not strictly increasing".into());
            }
            last = Some(gauge);
            let peers = self.list(c.varint().ok_or("truncated peer list")?)?;
            spend(
                budget,
                64 + gauge.len() + peers.iter().map(|p| 64 + p.len()).sum::<usize>(),
            )?;
            let mut values = BTreeMap::new();
            for peer in peers.iter() {
                values.insert(peer.to_string(), f64::from_bits(c.gauge(0)?));
            }
            out.insert(gauge.to_string(), values);
        }
        Ok(out)
    }

    fn time(&mut self, c: &mut Cursor<'_>) -> Result<u64, String> {
        let dt = unzigzag(c.varint().ok_or("truncated time")?);
        self.prev_at = self.prev_at.wrapping_add(dt as u64);
        Ok(self.prev_at)
    }

    fn string(&self, id: u64) -> Result<&str, String> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.strings.get(i))
            .map(String::as_str)
            .ok_or_else(|| format!("string {id} used before it was defined"))
    }

    fn list(&self, id: u64) -> Result<&MetricNames, String> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.lists.get(i))
            .ok_or_else(|| format!("name list {id} used before it was defined"))
    }
}

fn spend(budget: &mut usize, cost: usize) -> Result<(), String> {
    *budget = budget
        .checked_sub(cost)
        .ok_or("records expand beyond the decode budget (a crafted file?)")?;
    Ok(())
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return None;
            }
            value |= part << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn u64_le(&mut self) -> Option<u64> {
        let raw = self.bytes.get(self.pos..self.pos + 8)?;
        self.pos += 8;
        let mut buf = [0u8; 8];
        buf.copy_from_slice(raw);
        Some(u64::from_le_bytes(buf))
    }

    /// A gauge value's bits (see [`gauge`]), `prev` being its base.
    fn gauge(&mut self, prev: u64) -> Result<u64, String> {
        match self.varint().ok_or("truncated gauge")? {
            GAUGE_SAME => Ok(prev),
            GAUGE_RAW => self.u64_le().ok_or_else(|| "truncated gauge bits".into()),
            tag if tag & 1 == 1 => Ok((unzigzag(tag >> 1) as f64).to_bits()),
            tag => Err(format!("unknown gauge tag {tag}")),
        }
    }

    fn count(&mut self, max: usize) -> Result<usize, String> {
        let n = self.varint().ok_or("truncated count")?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= max && *n <= self.bytes.len() - self.pos)
            .ok_or_else(|| format!("count {n} too large"))
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self.count(MAX_STRING)?;
        let raw = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        String::from_utf8(raw.to_vec()).map_err(|_| "string is not UTF-8".to_string())
    }

    fn finish(&self) -> Result<(), String> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(format!(
                "{} trailing bytes in a record",
                self.bytes.len() - self.pos
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(at: u64, instance: &str, counters: &[(&str, u64)], gauges: &[(&str, f64)]) -> Sample {
        Sample {
            at_ms: at,
            outcome: SampleOutcome::Ok(SampleData {
                by_peer: BTreeMap::new(),
                instance_id: instance.into(),
                counters: counters.iter().copied().collect(),
                gauges: gauges.iter().copied().collect(),
            }),
        }
    }

    /// `sample` with per-peer breakdowns `gauge → [(peer, value)]`.
    fn with_peers(mut sample: Sample, by_peer: &[(&str, &[(&str, f64)])]) -> Sample {
        if let SampleOutcome::Ok(data) = &mut sample.outcome {
            data.by_peer = by_peer
                .iter()
                .map(|(gauge, peers)| {
                    let peers = peers.iter().map(|(p, v)| (p.to_string(), *v)).collect();
                    (gauge.to_string(), peers)
                })
                .collect();
        }
        sample
    }

    fn missing(at: u64, error: &str) -> Sample {
        Sample {
            at_ms: at,
            outcome: SampleOutcome::Missing {
                error: error.into(),
            },
        }
    }

    fn encode_all(samples: &[Sample]) -> Vec<u8> {
        let mut enc = SampleEncoder::new();
        let mut out = Vec::new();
        for s in samples {
            enc.encode(s, &mut out);
        }
        out
    }

    fn awkward() -> Vec<Sample> {
        vec![
            ok(1_000, "a", &[("x", 5), ("y", u64::MAX)], &[("g", 1.0)]),
            ok(11_000, "a", &[("x", 7), ("y", 0)], &[("g", 1.0)]),
            missing(21_000, "timeout"),
            // Time going backwards, a restart, a decrease, odd gauges.
            ok(
                15_000,
                "b",
                &[("x", 1), ("y", 3)],
                &[("g", -0.0), ("h", f64::NAN)],
            ),
            ok(
                31_000,
                "b",
                &[("x", 2), ("y", 4)],
                &[("g", 0.1), ("h", f64::INFINITY)],
            ),
            ok(
                41_000,
                "b",
                &[],
                &[("g", -3.0), ("h", 9.007_199_254_740_993e15)],
            ),
            missing(0, "timeout"),
            missing(u64::MAX, "connection refused"),
            ok(51_000, "a", &[("x", 9), ("y", 1)], &[("g", 1.0)]),
            // Per-peer breakdowns (the suppression gauges while something is suppressed): odd
            // values, an empty breakdown, and the same peers again (an interned list).
            with_peers(
                ok(61_000, "a", &[("x", 10), ("y", 1)], &[("g", 1.0)]),
                &[
                    ("known_topic_peers", &[("node-1", 2.0), ("node-2", -0.0)]),
                    (
                        "suppressed_topic_peers",
                        &[("node-1", 0.5), ("node-9", f64::NAN)],
                    ),
                    ("z_empty", &[]),
                ],
            ),
            with_peers(
                ok(71_000, "a", &[("x", 11), ("y", 1)], &[("g", 1.0)]),
                &[("known_topic_peers", &[("node-1", 3.0), ("node-2", 0.0)])],
            ),
            ok(81_000, "a", &[("x", 12), ("y", 1)], &[("g", 1.0)]),
        ]
    }

    fn same(a: &[Sample], b: &[Sample]) {
        // Bit-exact, NaN included.
        let text = |s: &[Sample]| format!("{s:?}");
        assert_eq!(a.len(), b.len());
        assert_eq!(text(a), text(b));
        for (x, y) in a.iter().zip(b) {
            if let (SampleOutcome::Ok(p), SampleOutcome::Ok(q)) = (&x.outcome, &y.outcome) {
                let bits = |m: &Metrics<f64>| -> Vec<u64> {
                    m.values().iter().map(|v| v.to_bits()).collect()
                };
                assert_eq!(bits(&p.gauges), bits(&q.gauges));
            }
        }
    }

    #[test]
    fn samples_round_trip_bit_for_bit() {
        let samples = awkward();
        let bytes = encode_all(&samples);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.torn_bytes, 0);
        same(&samples, &back.samples);
    }

    #[test]
    fn every_prefix_decodes_to_whole_samples_and_a_torn_tail() {
        let samples = awkward();
        let mut enc = SampleEncoder::new();
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for s in &samples {
            enc.encode(s, &mut bytes);
            ends.push(bytes.len());
        }
        for cut in 0..=bytes.len() {
            let back = decode(&bytes[..cut]).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(back.samples.len(), whole, "cut at {cut}");
            same(&samples[..whole], &back.samples);
        }
    }

    #[test]
    fn by_peer_breakdowns_round_trip_and_bad_ones_are_errors() {
        let samples = awkward();
        let back = decode(&encode_all(&samples)).unwrap().samples;
        let peers = |s: &Sample| match &s.outcome {
            SampleOutcome::Ok(d) => d.by_peer.clone(),
            SampleOutcome::Missing { .. } => BTreeMap::new(),
        };
        let with: Vec<_> = back.iter().map(peers).filter(|p| !p.is_empty()).collect();
        assert_eq!(with.len(), 2);
        assert_eq!(
            with[0]["known_topic_peers"]["node-2"].to_bits(),
            (-0.0f64).to_bits()
        );
        assert!(with[0]["suppressed_topic_peers"]["node-9"].is_nan());
        assert!(with[0]["z_empty"].is_empty());
        assert_eq!(with[1]["known_topic_peers"]["node-1"], 3.0);
        // Breakdowns out of order are refused, not collapsed.
        let mut bytes = MAGIC.to_vec();
        record(&mut bytes, &[KIND_STRING, 1, b'a']);
        record(&mut bytes, &[KIND_NAMES, 0]);
        record(&mut bytes, &[KIND_OK_BY_PEER, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
        let err = decode(&bytes).unwrap_err();
        assert!(err.why.contains("strictly increasing"), "{err}");
        // Too many breakdowns is a gap, never a silently cut sample.
        let many: Vec<(String, Vec<(&str, f64)>)> = (0..=MAX_BY_PEER)
            .map(|i| (format!("g{i:03}"), vec![("p", 1.0)]))
            .collect();
        let many: Vec<(&str, &[(&str, f64)])> = many
            .iter()
            .map(|(g, p)| (g.as_str(), p.as_slice()))
            .collect();
        let sample = with_peers(ok(1, "a", &[], &[]), &many);
        let back = decode(&encode_all(&[sample])).unwrap().samples;
        assert!(
            matches!(&back[0].outcome, SampleOutcome::Missing { error } if error.contains("per-peer")),
            "{back:?}"
        );
    }

    #[test]
    fn a_continuing_encoder_appends_after_a_reset() {
        let samples = awkward();
        let mut bytes = encode_all(&samples[..4]);
        let mut enc = SampleEncoder::continuing();
        for s in &samples[4..] {
            enc.encode(s, &mut bytes);
        }
        same(&samples, &decode(&bytes).unwrap().samples);
    }

    #[test]
    fn full_tables_reset_and_keep_decoding() {
        let samples: Vec<Sample> = (0..(MAX_TABLE as u64 * 2 + 10))
            .map(|i| ok(i * 10, &format!("inst-{i}"), &[("c", i)], &[("g", 0.5)]))
            .collect();
        let bytes = encode_all(&samples);
        same(&samples, &decode(&bytes).unwrap().samples);
    }

    #[test]
    fn a_shared_name_list_is_encoded_once_and_shared_when_read() {
        let samples: Vec<Sample> = (0..100)
            .map(|i| ok(i * 10_000, "a", &[("c", i * 5), ("d", 1)], &[("g", 2.0)]))
            .collect();
        let bytes = encode_all(&samples);
        // Header, two name lists, one string, then ~9 bytes per sample.
        assert!(bytes.len() < 100 * 12, "{} bytes", bytes.len());
        let back = decode(&bytes).unwrap().samples;
        let names = |s: &Sample| match &s.outcome {
            SampleOutcome::Ok(d) => d.counters.names().clone(),
            SampleOutcome::Missing { .. } => unreachable!(),
        };
        assert!(names(&back[0]).same_list(&names(&back[99])));
    }

    #[test]
    fn garbage_is_an_error_with_an_offset() {
        assert!(decode(b"{\"at_ms\":1}\n").is_err());
        let mut bytes = encode_all(&awkward());
        // Corrupt the kind of the first record after the magic (a complete record).
        bytes[MAGIC.len() + 1] = 99;
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err.offset, MAGIC.len());
        assert!(err.why.contains("unknown record kind"), "{err}");
        // A use before definition.
        let mut bytes = MAGIC.to_vec();
        record(&mut bytes, &[KIND_MISSING, 0, 7]);
        assert!(
            decode(&bytes)
                .unwrap_err()
                .why
                .contains("before it was defined")
        );
    }

    #[test]
    fn a_record_amplification_bomb_hits_the_budget() {
        // One long string, then many tiny records that each copy it.
        let mut bytes = MAGIC.to_vec();
        let mut p = vec![KIND_STRING];
        bytes_of(&mut p, &[b'x'; MAX_STRING]);
        record(&mut bytes, &p);
        for _ in 0..200_000 {
            record(&mut bytes, &[KIND_MISSING, 0, 0]);
        }
        let err = decode(&bytes).unwrap_err();
        assert!(err.why.contains("budget"), "{err}");
    }

    fn bytes_of(out: &mut Vec<u8>, data: &[u8]) {
        bytes(out, data);
    }

    #[test]
    fn an_unrecordable_sample_is_stored_as_a_gap_not_altered() {
        let long = "n".repeat(MAX_STRING + 1);
        let samples = [
            ok(1, &long, &[("c", 1)], &[]),
            ok(2, "a", &[(long.as_str(), 1)], &[]),
            missing(3, &"e".repeat(3 * MAX_STRING)),
        ];
        let back = decode(&encode_all(&samples)).unwrap().samples;
        for (i, s) in back.iter().enumerate() {
            match &s.outcome {
                SampleOutcome::Missing { error } if i < 2 => {
                    assert!(error.contains("not recordable"), "{error}")
                }
                SampleOutcome::Missing { error } => assert_eq!(error.len(), MAX_STRING),
                other => panic!("sample {i} read back as {other:?}"),
            }
        }
    }

    #[test]
    fn varints_and_zigzag_round_trip_at_the_edges() {
        for v in [0, 1, 127, 128, 300, u64::MAX / 2, u64::MAX] {
            let mut out = Vec::new();
            varint(&mut out, v);
            let mut c = Cursor {
                bytes: &out,
                pos: 0,
            };
            assert_eq!(c.varint(), Some(v));
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        // An 11-byte varint is refused, not wrapped.
        let mut c = Cursor {
            bytes: &[0xff; 11],
            pos: 0,
        };
        assert_eq!(c.varint(), None);
    }
}
