//! Date text in JavaScript's `toISOString()` form. Stored dates always use this fixed-width
//! form so that text order in the database equals time order.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// `2016-11-08T23:20:10.447Z`: always UTC, always three millisecond digits.
pub(crate) fn format_date(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(d) => d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        // Out of chrono's range: keep the number rather than inventing a date.
        None => ms.to_string(),
    }
}

/// Milliseconds since the epoch for RFC 3339 text, a zone-less date-time (taken as UTC) or a
/// bare date.
pub(crate) fn parse_date(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(d.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

pub(crate) fn now_iso() -> String {
    format_date(Utc::now().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(format_date(1478647210447), "2016-11-08T23:20:10.447Z");
        assert_eq!(parse_date("2016-11-08T23:20:10.447Z"), Some(1478647210447));
        assert_eq!(parse_date("2016-11-08T23:20:10Z"), Some(1478647210000));
        assert_eq!(parse_date("2016-11-08"), Some(1478563200000));
        assert_eq!(parse_date("nope"), None);
    }
}
