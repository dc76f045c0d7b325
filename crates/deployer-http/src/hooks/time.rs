//! RFC 3339 timestamps as senders write them (`2026-11-22T20:59:09.133729439Z`,
//! `2024-01-01T12:00:00+02:00`), without a date crate for one conversion.

use deployer_core::Timestamp;

/// Parses an RFC 3339 date-time (fractions beyond milliseconds are dropped). `None` for
/// anything else, or for instants before 1970.
pub(crate) fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = text.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if at(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &text[start..i.min(start + 3)];
        let scale = 10_i64.pow(3 - u32::try_from(digits.len()).ok()?);
        millis = digits.parse::<i64>().ok()? * scale;
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && at(i + 3, b":") => {
            let minutes = num(i + 1, i + 3)? * 60 + num(i + 4, i + 6)?;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset * 60;
    let millis = secs.checked_mul(1000)?.checked_add(millis)?;
    u64::try_from(millis).ok().map(Timestamp::from_millis)
}

/// Howard Hinnant's days-from-civil: days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(text: &str) -> Option<u64> {
        parse_rfc3339(text).map(Timestamp::as_millis)
    }

    #[test]
    fn reads_what_senders_write() {
        assert_eq!(millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(millis("2014-12-03T00:22:41.042Z"), Some(1_417_566_161_042));
        assert_eq!(
            millis("2026-11-22T20:59:09.133729439Z"),
            millis("2026-11-22T20:59:09.133Z")
        );
        assert_eq!(millis("2026-11-22T20:25:17.04Z"), Some(1_795_379_117_040));
        assert_eq!(
            millis("2014-12-03T02:22:41+02:00"),
            millis("2014-12-03T00:22:41Z")
        );
        assert_eq!(millis("2000-02-29T00:00:00Z"), Some(951_782_400_000));
    }

    #[test]
    fn the_round_trip_with_core_display_holds() {
        for ms in [0, 951_782_400_000, 1_417_566_161_042, 4_102_444_800_999] {
            let t = Timestamp::from_millis(ms);
            assert_eq!(parse_rfc3339(&t.to_string()), Some(t));
        }
    }

    #[test]
    fn refuses_nonsense_without_panicking() {
        for bad in [
            "",
            "2014",
            "2014-13-01T00:00:00Z",
            "2014-12-03T00:22:41",
            "2014-12-03T00:22:41.Z",
            "1969-12-31T23:59:59Z",
            "2014-12-03T00:22:41+0200",
            "２０１４-12-03T00:22:41Z",
            "2014-12-03T00:22:41Zjunk",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
