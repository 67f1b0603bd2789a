//! Times the record can hold: a `timestamptz` PostgreSQL stores, reads back and the API formats
//! as RFC 3339. Every time the service takes from outside passes through [`storable`].
//!
//! RFC 3339 writes years 0000 to 9999 only, PostgreSQL has no year 0 (it stores 1 BC) and keeps
//! microseconds, so the range is years 0001 to 9999 in UTC, at microsecond precision. A time a
//! sender states outside it (`9999-12-31T23:59:59-23:59` is year 10000 in UTC) is kept as the
//! text received, never bound to a column.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Earliest time kept: 0001-01-01T00:00:00Z.
pub const MIN: OffsetDateTime = time::macros::datetime!(0001-01-01 0:00 UTC);
/// Latest time kept: 9999-12-31T23:59:59.999999Z.
pub const MAX: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59.999_999 UTC);

/// The time in UTC truncated to microseconds, when the record can hold it.
pub fn storable(t: OffsetDateTime) -> Option<OffsetDateTime> {
    let utc = t.checked_to_offset(UtcOffset::UTC)?;
    let utc = truncate_to_micros(utc);
    (MIN..=MAX).contains(&utc).then_some(utc)
}

/// Parses RFC 3339 text into a time the record can hold; `None` for anything else.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    storable(OffsetDateTime::parse(s, &Rfc3339).ok()?)
}

/// RFC 3339 in UTC. Total: a time outside [`MIN`]..=[`MAX`] (which the service never stores,
/// but a database edited by hand may hold) is written with the year as a signed number,
/// ISO 8601's expanded form, rather than failing the answer; one with no UTC form within the
/// `time` crate's range keeps its own offset, so the instant written is always the right one.
pub fn format(t: OffsetDateTime) -> String {
    match t.checked_to_offset(UtcOffset::UTC) {
        Some(utc) => utc.format(&Rfc3339).unwrap_or_else(|_| expanded(utc)),
        None => expanded(t),
    }
}

/// RFC 3339 UTC with exactly six fractional digits, the precision the record keeps: how a
/// delivery's `received_at` is given, so a reader can recompute its leaf. Total, as [`format`].
pub fn format_micros(t: OffsetDateTime) -> String {
    match t.checked_to_offset(UtcOffset::UTC) {
        Some(utc) if (0..=9999).contains(&utc.year()) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            utc.year(),
            u8::from(utc.month()),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second(),
            utc.microsecond()
        ),
        Some(utc) => expanded(utc),
        None => expanded(t),
    }
}

fn expanded(t: OffsetDateTime) -> String {
    let (y, m, d) = (t.year(), t.month() as u8, t.day());
    let (h, mi, s, us) = (t.hour(), t.minute(), t.second(), t.microsecond());
    let offset = t.offset();
    let zone = if offset.is_utc() {
        "Z".to_owned()
    } else {
        let (oh, om, _) = offset.as_hms();
        format!("{}{:02}:{:02}", if offset.is_negative() { '-' } else { '+' }, oh.unsigned_abs(), om.unsigned_abs())
    };
    format!("{y:+05}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}{zone}")
}

/// PostgreSQL `timestamptz` holds microseconds.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    #[test]
    fn edges() {
        assert_eq!(parse("9999-12-31T23:59:59-23:59"), None, "year 10000 in UTC");
        assert_eq!(parse("0000-01-01T00:00:00+00:01"), None, "year -1 in UTC");
        assert_eq!(parse("0000-01-01T00:00:00Z"), None, "PostgreSQL has no year 0");
        assert_eq!(parse("0001-01-01T00:00:00Z"), Some(MIN));
        assert_eq!(parse("9999-12-31T23:59:59.9999999Z"), Some(MAX));
        assert_eq!(parse("2026-01-02T03:04:05.1234567+02:00"), Some(datetime!(2026-01-02 01:04:05.123456 UTC)));
        assert_eq!(parse("yesterday"), None);
        assert_eq!(format(MIN), "0001-01-01T00:00:00Z");
        assert_eq!(format(datetime!(-0001-12-31 23:59 UTC)), "-0001-12-31T23:59:00.000000Z");
        assert_eq!(format(datetime!(2026-01-02 01:04:05 +02:00)), "2026-01-01T23:04:05Z");
        assert_eq!(format_micros(datetime!(2026-01-02 03:04:05 UTC)), "2026-01-02T03:04:05.000000Z");
        assert_eq!(format_micros(datetime!(2026-01-02 03:04:05.12 +02:00)), "2026-01-02T01:04:05.120000Z");
        // No UTC form within `time`'s range: its own offset, so the instant stays right.
        assert_eq!(format(datetime!(9999-12-31 23:59:59 -23:59)), "+9999-12-31T23:59:59.000000-23:59");
    }

    fn any_time() -> impl Strategy<Value = OffsetDateTime> {
        let lo = OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT).unix_timestamp();
        let hi = OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT).unix_timestamp() + 86_399;
        (lo..=hi, 0u32..1_000_000_000, -93_599i32..=93_599).prop_filter_map("in time's range", |(secs, nanos, off)| {
            let t = OffsetDateTime::from_unix_timestamp(secs).ok()?.replace_nanosecond(nanos).ok()?;
            t.checked_to_offset(UtcOffset::from_whole_seconds(off).ok()?)
        })
    }

    proptest! {
        /// Over time's whole range and every offset: whatever is accepted is in range, in UTC,
        /// at microseconds, formats as RFC 3339 and parses back to itself; formatting never fails.
        #[test]
        fn accepted_times_round_trip(t in any_time()) {
            let f = format(t);
            prop_assert!(!f.is_empty());
            if let Some(s) = storable(t) {
                prop_assert!((MIN..=MAX).contains(&s));
                prop_assert_eq!(s.offset(), UtcOffset::UTC);
                prop_assert_eq!(s.nanosecond() % 1000, 0);
                prop_assert_eq!(parse(&format(s)), Some(s));
            } else {
                let utc = t.to_offset(UtcOffset::UTC);
                prop_assert!(utc < MIN || utc > MAX + time::Duration::microseconds(1));
            }
        }

        /// Any text at all: parse never panics, and what it gives is storable.
        #[test]
        fn any_text(s in "\\PC{0,40}|[0-9+:TZ.-]{0,40}") {
            if let Some(t) = parse(&s) { prop_assert_eq!(storable(t), Some(t)); }
        }
    }
}
