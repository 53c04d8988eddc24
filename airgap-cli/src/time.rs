//! Kernel time (milliseconds since the Unix epoch) as RFC 3339 UTC, without a date crate.

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01
/// (H. Hinnant's `civil_from_days`, for non-negative day numbers).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days.saturating_add(719_468);
    let era = z / 146_097;
    let doe = z.saturating_sub(era.saturating_mul(146_097)); // [0, 146096]
    let yoe = doe
        .saturating_sub(doe / 1460)
        .saturating_add(doe / 36_524)
        .saturating_sub(doe / 146_096)
        / 365; // [0, 399]
    let doy = doe.saturating_sub(
        yoe.saturating_mul(365)
            .saturating_add(yoe / 4)
            .saturating_sub(yoe / 100),
    ); // [0, 365]
    let mp = doy.saturating_mul(5).saturating_add(2) / 153; // [0, 11], March first
    let day = doy
        .saturating_sub(mp.saturating_mul(153).saturating_add(2) / 5)
        .saturating_add(1);
    let month = if mp < 10 {
        mp.saturating_add(3)
    } else {
        mp.saturating_sub(9)
    };
    let year = yoe
        .saturating_add(era.saturating_mul(400))
        .saturating_add(u64::from(month <= 2));
    (year, month, day)
}

/// `2026-01-01T00:00:00.000Z`.
pub(crate) fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let (y, mo, d) = civil_from_days(secs / 86_400);
    let sod = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`), for dates from 1970 on.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y.checked_sub(era.checked_mul(400)?)?; // [0, 399]
    let mp = if m > 2 { m.checked_sub(3)? } else { m.checked_add(9)? }; // March first
    let doy = (mp.checked_mul(153)?.checked_add(2)? / 5).checked_add(d.checked_sub(1)?)?;
    let doe = yoe
        .checked_mul(365)?
        .checked_add(yoe / 4)?
        .checked_sub(yoe / 100)?
        .checked_add(doy)?;
    era.checked_mul(146_097)?.checked_add(doe)?.checked_sub(719_468)
}

/// Kernel time from a command-line value: milliseconds since the Unix epoch, or an RFC
/// 3339 UTC time `YYYY-MM-DDTHH:MM:SS[.fff]Z` (as reports print them).
pub(crate) fn parse_time(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is neither milliseconds since 1970 nor a time like 2026-01-01T00:00:00.000Z");
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    let b = s.as_bytes();
    let num = |r: core::ops::Range<usize>| -> Option<u64> {
        let d = b.get(r)?;
        if d.iter().all(u8::is_ascii_digit) {
            core::str::from_utf8(d).ok()?.parse().ok()
        } else {
            None
        }
    };
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':') && b.last() == Some(&b'Z')) {
        return Err(bad());
    }
    let millis = match b.len() {
        20 => 0,
        24 if sep(19, b'.') => num(20..23).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    let (y, mo, d) = (num(0..4), num(5..7), num(8..10));
    let (h, mi, sec) = (num(11..13), num(14..16), num(17..19));
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (y, mo, d, h, mi, sec) else {
        return Err(bad());
    };
    if !(1..=12).contains(&mo) || d == 0 || d > 31 || h > 23 || mi > 59 || sec > 59 || y < 1970 {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, d).ok_or_else(bad)?;
    // Reject dates that do not exist (2026-02-30): they would not print back the same.
    if civil_from_days(days) != (y, mo, d) {
        return Err(bad());
    }
    let secs = days
        .checked_mul(86_400)
        .and_then(|v| {
            v.checked_add(
                h.saturating_mul(3600)
                    .saturating_add(mi.saturating_mul(60))
                    .saturating_add(sec),
            )
        })
        .ok_or_else(bad)?;
    secs.checked_mul(1000)
        .and_then(|v| v.checked_add(millis))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_times_round_trip() {
        for ms in [
            0u64,
            1_767_225_600_000,
            951_782_400_000,
            951_868_799_999,
            1_709_164_800_123,
            253_402_300_799_000,
        ] {
            assert_eq!(parse_time(&rfc3339_ms(ms)), Ok(ms));
            assert_eq!(parse_time(&ms.to_string()), Ok(ms));
        }
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Ok(1_767_225_600_000));
        for bad in [
            "",
            "x",
            "2026-02-30T00:00:00Z",
            "2026-01-01 00:00:00Z",
            "2026-01-01T24:00:00Z",
            "-5",
            "1e3",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_767_225_600_000), "2026-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(rfc3339_ms(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_709_164_800_123), "2024-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(253_402_300_799_000), "9999-12-31T23:59:59.000Z");
    }

    #[test]
    fn every_day_round_trips_against_a_naive_count() {
        // Walk day by day from 1970 for 1000 years, counting months by hand.
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        for days in 0..365_250u64 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
