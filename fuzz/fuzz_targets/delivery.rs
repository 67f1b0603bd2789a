//! Any bytes as a delivery body, and as the values a sender controls around it (its receipt
//! time, its identity headers): parsing, normalizing and preparing for the store never panic,
//! and what they produce holds the invariants the store relies on, every value the write path
//! binds (times, numbers, text) among them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ticket_audit::domain::normalize::MAX_IDENTIFIER_BYTES;
use ticket_audit::domain::{json, normalize, timestamp, CreateTime, Envelope};
use ticket_audit::ingest::{prepare, Refused};
use ticket_audit::store::text::{escape, unescape};

/// A time PostgreSQL stores, reads back, and the API formats and parses back to itself.
fn check_time(t: time::OffsetDateTime) {
    assert!((timestamp::MIN..=timestamp::MAX).contains(&t), "{t}");
    assert_eq!(t.offset(), time::UtcOffset::UTC);
    assert_eq!(t.nanosecond() % 1_000, 0);
    assert_eq!(timestamp::parse(&timestamp::format(t)), Some(t));
}

fn check_text(s: &str) {
    let e = escape(s);
    assert!(!e.contains('\0'));
    assert_eq!(unescape(&e), s);
}

fuzz_target!(|data: &[u8]| {
    // The lenient reading agrees with the strict one wherever the strict one reads at all.
    let strict: Option<serde_json::Value> = serde_json::from_slice(data).ok();
    if let (Some(s), Ok((v, found))) = (&strict, json::parse(data)) {
        assert_eq!(s, &v);
        assert!(found.is_empty());
    }
    let _ = json::rewrite(data);

    if let Ok(envelope) = Envelope::parse(data) {
        let n = normalize(&envelope);
        // Positions are unique and positive within the delivery (the primary keys of messages and commands).
        let mut positions: Vec<i32> =
            n.messages.iter().map(|m| m.position).chain(n.commands.iter().map(|c| c.position)).collect();
        let count = positions.len();
        positions.sort_unstable();
        positions.dedup();
        assert_eq!(positions.len(), count);
        assert!(positions.iter().all(|p| *p > 0));
        // Indexed identifiers fit their indexes.
        for id in n.ticket.iter().chain(n.carried_tenant.iter()) {
            assert!(id.len() <= MAX_IDENTIFIER_BYTES);
        }
        for u in &n.ticket_updates {
            assert!(u.name.len() <= MAX_IDENTIFIER_BYTES);
            for f in [&u.status, &u.tenant_id, &u.agent_name, &u.agent_id].into_iter().flatten() {
                assert!(f.len() <= MAX_IDENTIFIER_BYTES);
            }
            // Every time bound to a timestamptz column is one the record holds.
            match &u.create_time {
                Some(CreateTime::Parsed(t)) => check_time(*t),
                Some(CreateTime::Unparsed(s)) => check_text(s),
                None => {}
            }
            for f in [&u.title, &u.status, &u.tenant_id, &u.agent_name, &u.agent_id].into_iter().flatten() {
                check_text(f);
            }
        }
        // Messages only for a named ticket, and a successful delivery.
        assert!(n.messages.is_empty() || (n.ticket.is_some() && n.success));
        // Every string bound to a text column survives the escape exactly, and holds no U+0000 stored.
        for s in n.messages.iter().map(|m| &m.content).chain(n.commands.iter().map(|c| &c.command)) {
            check_text(s);
        }
        for r in n.commands.iter().filter_map(|c| c.result.as_ref()) {
            check_text(r);
        }
        for s in n.action.iter().chain(n.ticket.iter()).chain(n.problems.iter()) {
            check_text(s);
        }
    }

    // The sender's receipt time (an import line's received_at) over the whole i64 range of
    // microseconds, and the body: refused with a reason, or prepared with a time the record holds.
    if data.len() >= 8 {
        let micros = i64::from_le_bytes(data[..8].try_into().unwrap());
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1_000);
        if let Ok(at) = at {
            let mut headers = serde_json::Map::new();
            if let Ok(s) = std::str::from_utf8(&data[8..data.len().min(40)]) {
                headers.insert("idempotency-key".into(), s.into());
            }
            match prepare(data[8..].to_vec(), headers, at, 10_000) {
                Ok(d) => {
                    check_time(d.received_at);
                    check_text(d.key.as_str());
                    assert!(d.normalized.messages.len() + d.normalized.commands.len() <= 10_000);
                }
                Err(Refused::TimeOutOfRange(_)) => assert!(timestamp::storable(at).is_none()),
                Err(_) => {}
            }
        }
    }

    if let Ok(s) = std::str::from_utf8(data) {
        assert_eq!(unescape(&escape(s)), s);
        if let Some(t) = timestamp::parse(s) {
            check_time(t);
        }
        let _ = CreateTime::read(s);
    }
});
