//! From received bytes to a delivery ready to store: the one path for `POST /webhooks` and `import`.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::domain::ledger::sha256;
use crate::domain::{normalize, timestamp, DeliveryKey, Envelope, InvalidKey, ParseError};
use crate::store::NewDelivery;

/// Headers kept with each delivery: who sent it and under which identity. The first seven
/// authenticate or key it, and must come with one value (`http::webhooks`).
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

/// Most rows (messages and commands) one delivery may add to the projection, by default. Each
/// costs the writer about 11 µs, and every other sender's delivery waits behind the batch that
/// holds it: 10,000 is about 0.1 s. A delivery over the cap is refused (413) with the count, so
/// the sender can split it; nothing of it is stored.
pub const DEFAULT_MAX_DELIVERY_ROWS: usize = 10_000;

/// Why a delivery is refused, in words fit for the sender.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Body(#[from] ParseError),
    #[error(transparent)]
    Key(#[from] InvalidKey),
    #[error("the delivery adds {rows} messages and commands; at most {max} are taken from one delivery: split it")]
    TooManyRows { rows: usize, max: usize },
    #[error("received_at {0} is outside the years 0001 to 9999 (UTC) that the record holds")]
    TimeOutOfRange(String),
}

/// Checks, keys and normalizes a body. `headers` holds the identity headers (lower-case names).
pub fn prepare(
    body: Vec<u8>,
    headers: Map<String, Value>,
    received_at: OffsetDateTime,
    max_rows: usize,
) -> Result<NewDelivery, Refused> {
    let received_at =
        timestamp::storable(received_at).ok_or_else(|| Refused::TimeOutOfRange(timestamp::format(received_at)))?;
    let envelope = Envelope::parse(&body)?;
    let body_sha256 = sha256(&body);
    let get = |name: &str| headers.get(name).and_then(Value::as_str).map(str::as_bytes);
    let key = DeliveryKey::choose(get("webhook-id"), get("svix-id"), get("idempotency-key"), &body_sha256)?;
    let normalized = normalize(&envelope);
    let rows = normalized.messages.len() + normalized.commands.len();
    if rows > max_rows {
        return Err(Refused::TooManyRows { rows, max: max_rows });
    }
    Ok(NewDelivery {
        key,
        received_at,
        body,
        body_sha256,
        headers: Value::Object(headers),
        normalized,
        unprojected: false,
    })
}

/// The identity headers among `(name, value)` pairs, kept whole (the HTTP server bounds their
/// size); names in lower case. A header given twice keeps its last value: the HTTP surface
/// refuses two differing values of an identity header before it gets here.
pub fn identity_headers<'a>(pairs: impl Iterator<Item = (&'a str, &'a [u8])>) -> Map<String, Value> {
    pairs
        .filter(|(name, _)| IDENTITY_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)))
        .map(|(name, value)| (name.to_ascii_lowercase(), Value::String(String::from_utf8_lossy(value).into_owned())))
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
    /// RFC 3339; checked by [`timestamp::parse`], so a time the record cannot hold is refused.
    #[serde(default)]
    received_at: Option<String>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct ImportSummary {
    pub lines: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub refused: u64,
}

/// Why an import line is refused.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("body_base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("a line has either body or body_base64, not both")]
    BothBodies,
    #[error("received_at: {0}")]
    ReceivedAt(String),
    #[error(transparent)]
    Refused(#[from] Refused),
}

/// Reads one import line into a delivery ready to store.
pub fn import_line(line: &[u8], now: OffsetDateTime) -> Result<NewDelivery, LineError> {
    use base64::Engine;
    let parsed: Option<ImportLine<'_>> = serde_json::from_slice(line).ok();
    let (body, headers, at) = match parsed {
        Some(ImportLine { body: Some(raw), body_base64: None, headers, received_at }) => {
            (raw.get().as_bytes().to_vec(), headers, received_at)
        }
        Some(ImportLine { body: None, body_base64: Some(b64), headers, received_at }) => {
            (base64::engine::general_purpose::STANDARD.decode(b64)?, headers, received_at)
        }
        Some(ImportLine { body: Some(_), body_base64: Some(_), .. }) => return Err(LineError::BothBodies),
        _ => (line.to_vec(), Map::new(), None),
    };
    let at = match at {
        Some(s) => timestamp::parse(&s).ok_or_else(|| {
            LineError::ReceivedAt(format!("`{s}` is not an RFC 3339 time in the years 0001 to 9999 (UTC)"))
        })?,
        None => now,
    };
    let headers = identity_headers(headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?.as_bytes()))));
    // An import is an operator's own load: no cap on rows per delivery.
    Ok(prepare(body, headers, at, usize::MAX)?)
}

/// Why an import stopped: the file could not be read, or the database could not take a line.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading line {line}: {source}")]
    Read { line: u64, source: std::io::Error },
    #[error("storing line {line}: {source}")]
    Write { line: u64, source: crate::store::WriteError },
}

/// Imports NDJSON deliveries through the writer, in file order, as if received. Lines that are
/// refused are reported on standard error with their number and do not stop the import; the
/// database failing does, naming the line.
pub async fn import(
    reader: impl tokio::io::AsyncBufRead + Unpin,
    writer: &crate::store::Writer,
) -> Result<ImportSummary, ImportError> {
    use std::collections::VecDeque;
    use tokio::io::AsyncBufReadExt;

    let mut summary = ImportSummary::default();
    let mut pending = VecDeque::new();
    let mut lines = reader.split(b'\n');
    let tally = |(line, outcome): (u64, Result<crate::store::Outcome, crate::store::WriteError>),
                 s: &mut ImportSummary| {
        outcome
            .map(|o| if o.duplicate { s.duplicates += 1 } else { s.stored += 1 })
            .map_err(|source| ImportError::Write { line, source })
    };
    loop {
        let line =
            lines.next_segment().await.map_err(|source| ImportError::Read { line: summary.lines + 1, source })?;
        let Some(line) = line else { break };
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
        let number = summary.lines;
        loop {
            match writer.enqueue(delivery) {
                Ok(done) => {
                    pending.push_back(async move { (number, done.await) });
                    break;
                }
                Err(refused) => match *refused {
                    (crate::store::WriteError::QueueFull, back) if !pending.is_empty() => {
                        delivery = back;
                        let oldest = pending.pop_front().expect("pending is not empty");
                        tally(oldest.await, &mut summary)?;
                    }
                    (source, _) => return Err(ImportError::Write { line: number, source }),
                },
            }
        }
    }
    while let Some(done) = pending.pop_front() {
        tally(done.await, &mut summary)?;
    }
    Ok(summary)
}
