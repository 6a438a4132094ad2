//! Times are stored as signed 64-bit unix nanoseconds (good until 2262) so
//! that both databases store them the same way and ordering is exact.

use time::OffsetDateTime;

/// `t` as unix nanoseconds, saturating outside 1677..2262.
pub(crate) fn to_ns(t: OffsetDateTime) -> i64 {
    let ns = t.unix_timestamp_nanos();
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

/// Unix nanoseconds as a UTC time.
pub(crate) fn from_ns(ns: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .expect("every i64 of nanoseconds is a valid time")
}

/// Now, UTC.
pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = now();
        assert_eq!(from_ns(to_ns(t)), t);
        assert_eq!(to_ns(from_ns(i64::MIN)), i64::MIN);
        assert_eq!(to_ns(from_ns(i64::MAX)), i64::MAX);
    }
}
