//! Calendar fields of a Unix time in UTC, for the timestamps the toolkit
//! writes (run ids, package revisions, changelog dates) without a date
//! library: the proleptic Gregorian civil-from-days conversion.

/// A moment in UTC, broken into calendar fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Monday ... 6 = Sunday.
    pub weekday: u32,
}

impl Utc {
    pub fn from_unix(unix: u64) -> Utc {
        let days = (unix / 86_400) as i64;
        let secs = (unix % 86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Utc {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: secs / 3600,
            minute: secs % 3600 / 60,
            second: secs % 60,
            // 1970-01-01 was a Thursday.
            weekday: ((days.rem_euclid(7) + 3) % 7) as u32,
        }
    }

    /// `YYYYMMDDhhmmss`.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `Thu, 03 Dec 2026 01:15:07 +0000`, as Debian changelogs want it.
    pub fn rfc2822(&self) -> String {
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        const MONTHS: [&str; 12] =
            ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
            DAYS[self.weekday as usize],
            self.day,
            MONTHS[self.month as usize - 1],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_fields() {
        assert_eq!(Utc::from_unix(0).compact(), "19700101000000");
        assert_eq!(Utc::from_unix(1_796_260_507).compact(), "20261203011507");
        assert_eq!(Utc::from_unix(951_782_400 + 3661).compact(), "20000229010101");
        assert_eq!(Utc::from_unix(1_796_260_507).rfc2822(), "Thu, 03 Dec 2026 01:15:07 +0000");
        assert_eq!(Utc::from_unix(0).rfc2822(), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(Utc::from_unix(951_782_400).rfc2822(), "Tue, 29 Feb 2000 00:00:00 +0000");
    }
}
