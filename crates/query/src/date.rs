//! Dates as LoopBack stores and prints them: milliseconds since the Unix epoch, printed in
//! JavaScript's `Date.prototype.toISOString()` form. Calendar arithmetic is done here with
//! plain integers (proleptic Gregorian, Howard Hinnant's algorithms) so that every `i64`
//! can be formatted and no input can make parsing panic.

/// JavaScript's time value range: ±8.64e15 ms around the epoch.
pub const MAX_DATE_MILLIS: i64 = 8_640_000_000_000_000;

const MS_PER_DAY: i64 = 86_400_000;

/// Parses an ISO 8601 / RFC 3339 date as `new Date(string)` does for those forms:
/// `2016`, `2016-11`, `2016-11-08`, then optionally `T` (or a space) and `HH:MM`,
/// `HH:MM:SS` or `HH:MM:SS.fff` (any number of fraction digits, truncated to
/// milliseconds), then optionally `Z`, `±HH:MM`, `±HHMM` or `±HH`. Extended years
/// (`+002016`, `-000001`) are accepted. A date-time without a zone is taken as UTC
/// (JavaScript would use the server's local zone: a deliberate divergence).
/// `None` for anything else, or outside JavaScript's date range.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut p = Cursor {
        b: s.trim().as_bytes(),
        i: 0,
    };
    let year = match p.peek() {
        Some(sign @ (b'+' | b'-')) => {
            p.i += 1;
            let y = p.digits(6)?;
            if sign == b'-' {
                if y == 0 {
                    return None; // `-000000` is invalid in JavaScript.
                }
                -y
            } else {
                y
            }
        }
        _ => p.digits(4)?,
    };
    let mut month = 1;
    let mut day = 1;
    if p.eat(b'-') {
        month = p.digits(2)?;
        if p.eat(b'-') {
            day = p.digits(2)?;
        }
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms_of_day = 0;
    let mut offset_minutes = 0;
    if matches!(p.peek(), Some(b'T' | b't' | b' ')) {
        p.i += 1;
        let hour = p.digits(2)?;
        if !p.eat(b':') {
            return None;
        }
        let minute = p.digits(2)?;
        let mut second = 0;
        let mut millis = 0;
        if p.eat(b':') {
            second = p.digits(2)?;
            if p.eat(b'.') || p.eat(b',') {
                let start = p.i;
                while matches!(p.peek(), Some(b'0'..=b'9')) {
                    p.i += 1;
                }
                let frac = &p.b[start..p.i];
                if frac.is_empty() {
                    return None;
                }
                for k in 0..3 {
                    millis = millis * 10 + frac.get(k).map_or(0, |d| i64::from(d - b'0'));
                }
            }
        }
        let valid_time = minute < 60
            && second < 60
            && (hour < 24 || (hour == 24 && minute == 0 && second == 0 && millis == 0));
        if !valid_time {
            return None;
        }
        ms_of_day = ((hour * 60 + minute) * 60 + second) * 1000 + millis;
        match p.peek() {
            Some(b'Z' | b'z') => p.i += 1,
            Some(sign @ (b'+' | b'-')) => {
                p.i += 1;
                let oh = p.digits(2)?;
                // `±HH:MM`, `±HHMM` or `±HH`; after a colon the minutes are required.
                let colon = p.eat(b':');
                let om = if colon || matches!(p.peek(), Some(b'0'..=b'9')) {
                    p.digits(2)?
                } else {
                    0
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                offset_minutes = (oh * 60 + om) * if sign == b'-' { -1 } else { 1 };
            }
            _ => {}
        }
    }
    if p.i != p.b.len() {
        return None;
    }
    let millis =
        days_from_civil(year, month, day) * MS_PER_DAY + ms_of_day - offset_minutes * 60_000;
    (-MAX_DATE_MILLIS..=MAX_DATE_MILLIS)
        .contains(&millis)
        .then_some(millis)
}

/// Formats epoch milliseconds exactly as JavaScript's `toISOString()`:
/// `2016-11-08T23:20:10.447Z`; years outside 0–9999 as `+012345` / `-000001`.
pub fn format_date(millis: i64) -> String {
    let days = millis.div_euclid(MS_PER_DAY);
    let ms = millis.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let year_text = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else if year < 0 {
        format!("-{:06}", year.unsigned_abs())
    } else {
        format!("+{year:06}")
    };
    format!(
        "{year_text}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Exactly `n` ASCII digits.
    fn digits(&mut self, n: usize) -> Option<i64> {
        let mut v: i64 = 0;
        for _ in 0..n {
            let d = self.peek().filter(u8::is_ascii_digit)?;
            v = v * 10 + i64::from(d - b'0');
            self.i += 1;
        }
        Some(v)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]; total for every `i64` day count a millisecond
/// `i64` can produce.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1970-01-01T00:00:00.000Z", Some(0)),
            ("2016-11-08T23:20:10.447Z", Some(1_478_647_210_447)),
            ("2016-11-08T23:20:10.4479Z", Some(1_478_647_210_447)),
            ("2016-11-08T23:20:10.4Z", Some(1_478_647_210_400)),
            ("2016-11-08T23:20:10Z", Some(1_478_647_210_000)),
            ("2016-11-08T23:20Z", Some(1_478_647_200_000)),
            ("2016-11-08T23:20:10", Some(1_478_647_210_000)),
            ("2016-11-08 23:20:10", Some(1_478_647_210_000)),
            ("2016-11-09T01:20:10+02:00", Some(1_478_647_210_000)),
            ("2016-11-08T22:20:10-0100", Some(1_478_647_210_000)),
            ("2016-11-09T01:20:10+02", Some(1_478_647_210_000)),
            ("2000-01-01T05:00:00.000Z", Some(946_702_800_000)),
            ("2000-01-01", Some(946_684_800_000)),
            ("2000-01", Some(946_684_800_000)),
            ("2000", Some(946_684_800_000)),
            ("2000-02-29", Some(951_782_400_000)),
            ("2000-01-01T24:00:00Z", Some(946_771_200_000)),
            ("+002000-01-01", Some(946_684_800_000)),
            ("1969-12-31T23:59:59.999Z", Some(-1)),
            (" 2000-01-01 ", Some(946_684_800_000)),
            ("2001-02-29", None),
            ("2000-13-01", None),
            ("2000-00-01", None),
            ("2000-01-32", None),
            ("2000-01-01T25:00Z", None),
            ("2000-01-01T24:00:01Z", None),
            ("2000-01-01T23:60Z", None),
            ("2000-01-01T23:59:60Z", None),
            ("2000-01-01T10Z", None),
            ("2000-01-01T10:00:00.Z", None),
            ("2000-01-01T10:00:00+24:00", None),
            ("2000-01-01X", None),
            ("200", None),
            ("20000", None),
            ("-000000-01-01", None),
            ("1478647210447", None),
            ("", None),
            ("not a date", None),
            ("+275761-01-01", None),
            ("２０００-01-01", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_date(input), *expected, "{input:?}");
        }
    }

    #[test]
    fn formats() {
        let cases: &[(i64, &str)] = &[
            (0, "1970-01-01T00:00:00.000Z"),
            (1_478_647_210_447, "2016-11-08T23:20:10.447Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (-62_198_755_200_000, "-000001-01-01T00:00:00.000Z"),
            (253_402_300_800_000, "+010000-01-01T00:00:00.000Z"),
            (MAX_DATE_MILLIS, "+275760-09-13T00:00:00.000Z"),
            (-MAX_DATE_MILLIS, "-271821-04-20T00:00:00.000Z"),
        ];
        for (millis, expected) in cases {
            assert_eq!(format_date(*millis), *expected);
            assert_eq!(parse_date(expected), Some(*millis), "round trip {expected}");
        }
        // Total on every i64.
        let _ = format_date(i64::MIN);
        let _ = format_date(i64::MAX);
    }
}
