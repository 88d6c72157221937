//! RFC 3339 UTC timestamps with microseconds, formatted without a date library and with the
//! date part cached per thread (it changes once a second).

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static CACHED: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
}

/// Appends `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` for `now` to `out`.
pub(crate) fn write_timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let micros = since.subsec_micros();
    let prefix = CACHED.with(|c| {
        let (cached_secs, prefix) = c.get();
        if cached_secs == secs {
            prefix
        } else {
            let prefix = format_seconds(secs);
            c.set((secs, prefix));
            prefix
        }
    });
    let mut stamp = *b"1970-01-01T00:00:00.000000Z";
    stamp[..20].copy_from_slice(&prefix);
    let mut m = micros;
    for d in stamp[20..26].iter_mut().rev() {
        *d = b'0' + (m % 10) as u8;
        m /= 10;
    }
    // ASCII digits and separators by construction; checked once for the whole stamp.
    out.push_str(std::str::from_utf8(&stamp).unwrap_or("1970-01-01T00:00:00.000000Z"));
}

/// `YYYY-MM-DDTHH:MM:SS.` for Unix seconds (Howard Hinnant's civil-from-days).
fn format_seconds(secs: u64) -> [u8; 20] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999) as u64;

    let mut b = *b"0000-00-00T00:00:00.";
    let put = |b: &mut [u8; 20], at: usize, width: usize, mut v: u64| {
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(&mut b, 0, 4, year);
    put(&mut b, 5, 2, month as u64);
    put(&mut b, 8, 2, day as u64);
    put(&mut b, 11, 2, hour);
    put(&mut b, 14, 2, minute);
    put(&mut b, 17, 2, second);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fmt(secs: u64, micros: u32) -> String {
        let mut s = String::new();
        write_timestamp(
            &mut s,
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into()),
        );
        s
    }

    #[test]
    fn known_instants() {
        assert_eq!(fmt(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(fmt(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(fmt(1_795_238_684, 827_171), "2026-11-21T05:24:44.827171Z");
        assert_eq!(fmt(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
    }

    #[test]
    fn cache_is_refreshed_when_the_second_changes() {
        assert_eq!(fmt(86_399, 1), "1970-01-01T23:59:59.000001Z");
        assert_eq!(fmt(86_400, 1), "1970-01-02T00:00:00.000001Z");
    }
}
