//! RFC 3339 timestamps <-> Unix seconds (proleptic Gregorian, UTC), without
//! a clock.

use toml_edit::Datetime;

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// A TOML datetime as Unix seconds (fractions truncated): an offset
/// date-time, or a local date (midnight UTC). Local date-times and times
/// are refused (they have no offset).
pub(crate) fn datetime_to_unix(dt: &Datetime) -> Result<i64, String> {
    let Some(date) = dt.date else {
        return Err("expected a date or an RFC 3339 date-time, found a time of day".into());
    };
    if date.month == 0 || date.month > 12 || date.day == 0 {
        return Err("invalid date".into());
    }
    if date.day > days_in_month(i64::from(date.year), date.month) {
        return Err(format!(
            "invalid date: {}-{:02} has {} days",
            date.year,
            date.month,
            days_in_month(i64::from(date.year), date.month)
        ));
    }
    let days = days_from_civil(
        i64::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    );
    let mut secs = days * 86_400;
    match (dt.time, dt.offset) {
        (None, _) => {}
        (Some(_), None) => {
            return Err(
                "a date-time needs a UTC offset, e.g. 2027-02-01T09:00:00Z or +01:00".into(),
            )
        }
        (Some(t), Some(off)) => {
            secs +=
                i64::from(t.hour) * 3600 + i64::from(t.minute) * 60 + i64::from(t.second.min(59));
            if let toml_edit::Offset::Custom { minutes } = off {
                secs -= i64::from(minutes) * 60;
            }
        }
    }
    Ok(secs)
}

/// Parses an RFC 3339 date-time with offset, or a plain `YYYY-MM-DD`
/// (midnight UTC), to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let dt: Datetime = s.trim().parse().ok()?;
    datetime_to_unix(&dt).ok()
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let rem = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2027-02-01"), Some(1_801_440_000));
        assert_eq!(
            parse_rfc3339("2027-02-01T01:00:00+01:00"),
            Some(1_801_440_000)
        );
        assert_eq!(parse_rfc3339("2024-02-29T12:30:15Z"), Some(1_709_209_815));
        assert_eq!(parse_rfc3339("2023-02-29"), None);
        assert_eq!(parse_rfc3339("2027-02-01T09:00:00"), None);
        assert_eq!(format_rfc3339(1_709_209_815), "2024-02-29T12:30:15Z");
        for t in [-86_400 * 800, 0, 951_782_400, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        }
    }
}
