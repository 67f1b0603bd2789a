//! From received bytes to a delivery ready to store: the one path for `POST /webhooks` and `import`.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::domain::ledger::sha256;
use crate::domain::ticket::truncate_to_micros;
use crate::domain::{normalize, DeliveryKey, Envelope};
use crate::store::NewDelivery;

/// Headers kept with each delivery: who sent it and under which identity.
pub const IDENTITY_HEADERS: [&str; 9] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "idempotency-key",
    "content-type",
    "user-agent",
];

/// Longest header value kept.
const MAX_HEADER_CHARS: usize = 1024;

/// Checks, keys and normalizes a body. `headers` holds the identity headers (lower-case names).
/// The error says why the body is refused, in words fit for the sender.
pub fn prepare(body: Vec<u8>, headers: Map<String, Value>, received_at: OffsetDateTime) -> Result<NewDelivery, String> {
    let envelope = Envelope::parse(&body).map_err(|e| e.to_string())?;
    let body_sha256 = sha256(&body);
    let get = |name: &str| headers.get(name).and_then(Value::as_str).map(str::as_bytes);
    let key = DeliveryKey::choose(get("webhook-id"), get("svix-id"), get("idempotency-key"), &body_sha256)
        .map_err(|e| e.to_string())?;
    let normalized = normalize(&envelope);
    Ok(NewDelivery {
        key,
        received_at: truncate_to_micros(received_at),
        body,
        body_sha256,
        headers: Value::Object(headers),
        normalized,
    })
}

/// The identity headers among `(name, value)` pairs, values cut to a sane length.
pub fn identity_headers<'a>(pairs: impl Iterator<Item = (&'a str, &'a [u8])>) -> Map<String, Value> {
    pairs
        .filter(|(name, _)| IDENTITY_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)))
        .map(|(name, value)| {
            let mut s = String::from_utf8_lossy(value).into_owned();
            let mut end = s.len().min(MAX_HEADER_CHARS);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            (name.to_ascii_lowercase(), Value::String(s))
        })
        .collect()
}

/// One line of an import file.
#[derive(serde::Deserialize)]
struct ImportLine<'a> {
    #[serde(borrow)]
    body: Option<&'a serde_json::value::RawValue>,
    body_base64: Option<String>,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    received_at: Option<OffsetDateTime>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct ImportSummary {
    pub lines: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub refused: u64,
}

/// Reads one import line into a delivery ready to store.
pub fn import_line(line: &[u8], now: OffsetDateTime) -> Result<NewDelivery, String> {
    use base64::Engine;
    let parsed: Option<ImportLine<'_>> = serde_json::from_slice(line).ok();
    let (body, headers, at) = match parsed {
        Some(ImportLine { body: Some(raw), body_base64: None, headers, received_at }) => {
            (raw.get().as_bytes().to_vec(), headers, received_at)
        }
        Some(ImportLine { body: None, body_base64: Some(b64), headers, received_at }) => {
            let bytes =
                base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("body_base64: {e}"))?;
            (bytes, headers, received_at)
        }
        Some(ImportLine { body: Some(_), body_base64: Some(_), .. }) => {
            return Err("a line has either body or body_base64, not both".into())
        }
        _ => (line.to_vec(), Map::new(), None),
    };
    let headers = identity_headers(headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?.as_bytes()))));
    prepare(body, headers, at.unwrap_or(now))
}

/// Imports NDJSON deliveries through the writer, in file order, as if received. Lines that are
/// refused are reported on standard error with their number and do not stop the import.
pub async fn import(
    reader: impl tokio::io::AsyncBufRead + Unpin,
    writer: &crate::store::Writer,
) -> Result<ImportSummary, crate::BoxError> {
    use std::collections::VecDeque;
    use tokio::io::AsyncBufReadExt;

    let mut summary = ImportSummary::default();
    let mut pending = VecDeque::new();
    let mut lines = reader.split(b'\n');
    let tally = |outcome: Result<crate::store::Outcome, crate::store::WriteError>, s: &mut ImportSummary| {
        outcome.map(|o| if o.duplicate { s.duplicates += 1 } else { s.stored += 1 })
    };
    while let Some(line) = lines.next_segment().await? {
        summary.lines += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut delivery = match import_line(line, OffsetDateTime::now_utc()) {
            Ok(d) => d,
            Err(why) => {
                eprintln!("line {}: refused: {why}", summary.lines);
                summary.refused += 1;
                continue;
            }
        };
        loop {
            match writer.enqueue(delivery) {
                Ok(done) => {
                    pending.push_back(done);
                    break;
                }
                Err(refused) => match *refused {
                    (crate::store::WriteError::QueueFull, back) => {
                        delivery = back;
                        let oldest = pending.pop_front().ok_or("the write queue is full with nothing pending")?;
                        tally(oldest.await, &mut summary)?;
                    }
                    (e, _) => return Err(e.into()),
                },
            }
        }
    }
    while let Some(done) = pending.pop_front() {
        tally(done.await, &mut summary)?;
    }
    Ok(summary)
}
