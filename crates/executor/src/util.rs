//! Small helpers: clocks, dates, number formatting, atomic writes.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `YYYY-MM` (UTC) of a Unix time in seconds.
pub(crate) fn year_month(unix_secs: i64) -> String {
    let (y, m, _) = civil_from_days(unix_secs.div_euclid(86_400));
    format!("{y:04}-{m:02}")
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parse Docker's RFC 3339 time (`2024-05-01T12:34:56.123456789Z`) to ns since
/// the epoch. Docker's zero time (`0001-01-01T00:00:00Z`) and anything
/// unparsable give `None`.
pub(crate) fn parse_docker_time_ns(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if year < 1970 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos: i64 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        rest = &frac[digits.len()..];
        let mut padded = digits.clone();
        padded.truncate(9);
        while padded.len() < 9 {
            padded.push('0');
        }
        nanos = padded.parse().ok()?;
    }
    let offset_secs: i64 = if rest == "Z" || rest.is_empty() {
        0
    } else {
        let sign = if rest.starts_with('-') { -1 } else { 1 };
        let hh: i64 = rest.get(1..3)?.parse().ok()?;
        let mm: i64 = rest.get(4..6)?.parse().ok()?;
        sign * (hh * 3600 + mm * 60)
    };
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    u64::try_from(secs * 1_000_000_000 + nanos).ok()
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Format a float as Python's `repr` does for short values: `16.0`, `0.5`, `16.12`.
pub(crate) fn python_float(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// Bytes to MiB rounded to 2 places, formatted as Python prints it.
pub(crate) fn mb(bytes: u64) -> String {
    let value = (bytes as f64 / (1024.0 * 1024.0) * 100.0).round() / 100.0;
    python_float(value)
}

/// Join a relative path with `/` separators onto `base`, refusing anything
/// that could leave `base` (absolute paths, `..`).
pub(crate) fn safe_join(base: &Path, relative: &str) -> Option<PathBuf> {
    if !is_safe_relative(relative) {
        return None;
    }
    let mut out = base.to_path_buf();
    for part in relative.split('/').filter(|s| !s.is_empty() && *s != ".") {
        out.push(part);
    }
    Some(out)
}

/// True for a non-empty relative path made only of normal segments.
pub(crate) fn is_safe_relative(relative: &str) -> bool {
    !relative.is_empty()
        && !relative.starts_with('/')
        && !relative.contains('\0')
        && !relative.contains('\\')
        && relative.split('/').any(|s| !s.is_empty() && s != ".")
        && relative.split('/').all(|s| s != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        assert_eq!(year_month(0), "1970-01");
        assert_eq!(year_month(1_700_000_000), "2023-11");
        assert_eq!(year_month(951_782_400), "2000-02");
        assert_eq!(year_month(1_709_251_199), "2024-02");
        assert_eq!(year_month(1_709_251_200), "2024-03");
    }

    #[test]
    fn docker_times() {
        assert_eq!(
            parse_docker_time_ns("1970-01-01T00:00:01Z"),
            Some(1_000_000_000)
        );
        assert_eq!(
            parse_docker_time_ns("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(
            parse_docker_time_ns("2023-11-14T22:13:20.123456789Z"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(
            parse_docker_time_ns("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(parse_docker_time_ns("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_docker_time_ns("garbage"), None);
    }

    #[test]
    fn python_style_megabytes() {
        assert_eq!(mb(16 * 1024 * 1024), "16.0");
        assert_eq!(mb(1024 * 1024), "1.0");
        assert_eq!(mb(512 * 1024), "0.5");
        assert_eq!(mb(17 * 1024 * 1024 + 123_456), "17.12");
        assert_eq!(mb(2048), "0.0");
    }

    #[test]
    fn relative_paths() {
        assert!(is_safe_relative("output/a.csv"));
        assert!(!is_safe_relative("/etc/passwd"));
        assert!(!is_safe_relative("output/../../x"));
        assert!(!is_safe_relative(""));
        assert!(!is_safe_relative("./"));
        assert_eq!(
            safe_join(Path::new("/w"), "./a//b.csv"),
            Some(PathBuf::from("/w/a/b.csv"))
        );
    }
}
