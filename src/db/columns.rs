//! Column decoders for the hot read paths (profiles: one per `/user/get`, a hundred per search
//! page), cheaper than the driver's own.
//!
//! - [`RawText`]: a text column's bytes, not yet checked as UTF-8. The driver checks each text
//!   value on its own with the standard library, which walks non-ASCII text (Cyrillic names) a
//!   character at a time, and values shorter than a SIMD block (every name) never reach a faster
//!   check: a fifth of a search's server instructions (docs/benchmarks/users.md).
//!   Raw texts go into a JSON body with [`crate::json::write_raw_text`], and the whole body
//!   is checked at once with SIMD before it is sent ([`crate::json::check_utf8`]), so
//!   text is still never sent unchecked.
//! - [`Date`]: the driver builds a `chrono::NaiveDate` by adding the day count to 2000-01-01
//!   through chrono's calendar code, then the JSON writer takes the year, month and day apart
//!   again; [`Date`] turns the day count into year, month and day with a few divisions.

use std::error::Error;

use tokio_postgres::types::{FromSql, Type};

type BoxError = Box<dyn Error + Sync + Send>;

/// The bytes of a text column, borrowed from the row and **not checked as UTF-8**: write them
/// only where a later check covers them. Accepts the plain text types, whose binary form is the
/// text itself (not `ltree` and its kin, which `&str` also reads: their binary form starts with
/// a version byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawText<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for RawText<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(RawText(raw))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
        ) || ty.name() == "citext"
    }
}

/// A `date` column: days from 2000-01-01, PostgreSQL's own count, within PostgreSQL's range
/// (4714 BC to 5874897 AD). `infinity` and `-infinity` are refused: they are no calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date(i32);

/// Days from 0000-03-01 (see [`Date::civil`]) to 2000-01-01.
const MARCH_0000_TO_2000: i64 = 730_425;
/// The calendar repeats every 400 years, 146,097 days.
const ERA_DAYS: u32 = 146_097;
/// [`Date::civil`] counts from 8000 years before 0000-03-01, so that every date PostgreSQL
/// stores is a non-negative day number that fits a `u32` (cheaper division than `i64`).
const ERAS_BEFORE: i64 = 20;
/// Days from 2000-01-01 of PostgreSQL's first and last dates (4714-11-24 BC, 5874897-12-31).
const PG_DAYS: std::ops::RangeInclusive<i32> = -2_451_545..=2_145_031_948;

impl Date {
    /// The date `days` days from 2000-01-01, if PostgreSQL can store it.
    pub fn from_pg_days(days: i32) -> Option<Date> {
        PG_DAYS.contains(&days).then_some(Date(days))
    }

    /// (year, month, day) in the proleptic Gregorian calendar with astronomical years (year 0 is
    /// 1 BC), as chrono counts them and PostgreSQL does inside (it prints `4714-11-24 BC` for
    /// -4713-11-24).
    pub fn civil(self) -> (i64, u8, u8) {
        // Counted from a 1 March, the leap day ends every 4-, 100- and 400-year cycle and the
        // months from March on repeat a 153-day, five-month pattern (31, 30, 31, 30, 31).
        let days = u32::try_from(
            i64::from(self.0) + MARCH_0000_TO_2000 + ERAS_BEFORE * i64::from(ERA_DAYS),
        )
        .expect("every date PostgreSQL stores is a u32 day number from 8000 BC");
        let (era, day_of_era) = (days / ERA_DAYS, days % ERA_DAYS);
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153; // 0 = March … 11 = February
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        };
        let year = i64::from(era) * 400 + i64::from(year_of_era) + i64::from(month <= 2)
            - ERAS_BEFORE * 400;
        (year, month as u8, day as u8)
    }

    /// Appends the date as chrono writes it: `YYYY-MM-DD`, the year signed and at least four
    /// digits outside 0 to 9999 (`-0044-03-15`, `+10000-01-01`).
    pub fn write_iso(self, out: &mut Vec<u8>) {
        let (year, month, day) = self.civil();
        let two = |n: u8| [b'0' + n / 10, b'0' + n % 10];
        if (0..=9999).contains(&year) {
            let year = year as u16;
            let digit = |n: u16| b'0' + (n % 10) as u8;
            out.extend_from_slice(&[
                digit(year / 1000),
                digit(year / 100),
                digit(year / 10),
                digit(year),
            ]);
        } else {
            out.extend_from_slice(format!("{year:+05}").as_bytes());
        }
        let [m1, m2] = two(month);
        let [d1, d2] = two(day);
        out.extend_from_slice(&[b'-', m1, m2, b'-', d1, d2]);
    }
}

impl<'a> FromSql<'a> for Date {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let days = i32::from_be_bytes(
            raw.try_into()
                .map_err(|_| format!("a date is 4 bytes, got {}", raw.len()))?,
        );
        Date::from_pg_days(days).ok_or_else(|| match days {
            i32::MAX => "date is infinity".into(),
            i32::MIN => "date is -infinity".into(),
            days => {
                format!("date {days} days from 2000-01-01 is outside PostgreSQL's range").into()
            }
        })
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::DATE
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, NaiveDate};
    use tokio_postgres::types::Kind;

    use super::*;

    fn written(date: Date) -> String {
        let mut out = Vec::new();
        date.write_iso(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn days_from_2000(date: NaiveDate) -> i32 {
        let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
        i32::try_from((date - epoch).num_days()).unwrap()
    }

    #[test]
    fn every_day_of_years_0_to_9999_is_read_and_written_as_chrono_does() {
        let mut date = NaiveDate::from_ymd_opt(0, 1, 1).unwrap();
        let last = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();
        let mut days = days_from_2000(date);
        loop {
            let ours = Date::from_pg_days(days).unwrap();
            let (year, month, day) = ours.civil();
            assert_eq!(
                (year, u32::from(month), u32::from(day)),
                (i64::from(date.year()), date.month(), date.day())
            );
            assert_eq!(written(ours), date.to_string());
            if date == last {
                break;
            }
            date = date.succ_opt().unwrap();
            days += 1;
        }
    }

    #[test]
    fn years_outside_0_to_9999_are_written_signed_as_chrono_does() {
        for (y, m, d) in [
            (-1, 12, 31),
            (-44, 3, 15),
            (-4713, 11, 24),
            (10_000, 1, 1),
            (123_456, 2, 29),
            (262_142, 12, 31),
        ] {
            let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            assert_eq!(
                written(Date::from_pg_days(days_from_2000(date)).unwrap()),
                date.to_string()
            );
        }
    }

    #[test]
    fn infinite_and_malformed_dates_are_refused() {
        for days in [i32::MAX, i32::MIN] {
            assert!(Date::from_sql(&Type::DATE, &days.to_be_bytes()).is_err());
        }
        assert!(Date::from_sql(&Type::DATE, &[0, 0, 0]).is_err());
        assert_eq!(
            Date::from_sql(&Type::DATE, &(-1i32).to_be_bytes()).unwrap(),
            Date::from_pg_days(-1).unwrap()
        );
        // PostgreSQL's first and last dates, and one day past each.
        assert_eq!(
            written(Date::from_pg_days(*PG_DAYS.start()).unwrap()),
            "-4713-11-24"
        );
        assert_eq!(
            written(Date::from_pg_days(*PG_DAYS.end()).unwrap()),
            "+5874897-12-31"
        );
        assert_eq!(Date::from_pg_days(PG_DAYS.start() - 1), None);
        assert_eq!(Date::from_pg_days(PG_DAYS.end() + 1), None);
        assert!(Date::accepts(&Type::DATE) && !Date::accepts(&Type::TIMESTAMP));
    }

    #[test]
    fn raw_text_is_the_column_bytes_for_the_types_str_accepts() {
        let bytes = b"\xd0\x81\xd0\xb6 and \xff";
        assert_eq!(RawText::from_sql(&Type::TEXT, bytes).unwrap().0, bytes);
        assert!(RawText::accepts(&Type::VARCHAR) && RawText::accepts(&Type::TEXT));
        assert!(!RawText::accepts(&Type::INT4) && !RawText::accepts(&Type::BYTEA));
        let ltree = Type::new("ltree".into(), 16_000, Kind::Simple, "public".into());
        assert!(<&str as FromSql>::accepts(&ltree) && !RawText::accepts(&ltree));
    }
}
