//! User domain types. Requests are parsed into these once, at the edge; past that point a value of
//! one of these types is valid by construction.

use std::fmt;

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::input::{shorten, Invalid};

/// Longest first or second name, in characters.
pub const NAME_MAX_CHARS: usize = 100;
/// Longest city name, in characters.
pub const CITY_MAX_CHARS: usize = 100;
/// Longest biography, in characters.
pub const BIOGRAPHY_MAX_CHARS: usize = 2_000;
/// Password length bounds, in characters.
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 256;
/// Earliest accepted birthdate.
pub const BIRTHDATE_MIN: NaiveDate = match NaiveDate::from_ymd_opt(1900, 1, 1) {
    Some(d) => d,
    None => panic!("valid date"),
};

/// A first or second name: trimmed, 1..=100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, Invalid> {
        let value = raw.trim();
        check_name(field, value)?;
        Ok(PersonName(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name prefix for search: trimmed, 1..=100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePrefix(String);

impl NamePrefix {
    /// Length in characters.
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }

    pub fn parse(field: &str, raw: Option<&str>) -> Result<Self, Invalid> {
        let raw = raw.ok_or_else(|| Invalid(format!("{field} is required")))?;
        let value = raw.trim();
        check_name(field, value)?;
        Ok(NamePrefix(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A free-text field with only an upper bound (biography, city), trimmed; absent means the user
/// has none, sent blank means it is empty.
pub fn optional_text(
    field: &str,
    raw: Option<&str>,
    max: usize,
) -> Result<Option<String>, Invalid> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = raw.trim();
    // Line breaks and tabs are fine in free text; other control characters are not.
    let without_breaks: String = value.replace(['\n', '\r', '\t'], " ");
    check_text(field, &without_breaks, 0, max)?;
    // Sent empty (or blank), kept empty: what was sent reads back, not a field left out.
    Ok(Some(value.to_owned()))
}

/// A password: 8..=256 characters. Never logged, never returned.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, Invalid> {
        let chars = raw.chars().count();
        if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&chars) {
            return Err(Invalid(format!(
                "password must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"
            )));
        }
        Ok(Password(raw))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A birthdate: a real calendar date written `YYYY-MM-DD`, from 1900-01-01 up to today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Birthdate(NaiveDate);

impl Birthdate {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let bad = || {
            Invalid(format!(
                "birthdate must be a real date written YYYY-MM-DD, got {}",
                shorten(raw)
            ))
        };
        let b = raw.as_bytes();
        let shape_ok = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !shape_ok {
            return Err(bad());
        }
        let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| bad())?;
        if date < BIRTHDATE_MIN || date > Utc::now().date_naive() {
            return Err(Invalid(format!(
                "birthdate must be between {BIRTHDATE_MIN} and today"
            )));
        }
        Ok(Birthdate(date))
    }

    pub fn date(self) -> NaiveDate {
        self.0
    }
}

/// A user ready to be stored. Only the names are required.
#[derive(Debug)]
pub struct NewUser {
    pub first_name: PersonName,
    pub second_name: PersonName,
    pub birthdate: Option<Birthdate>,
    pub biography: Option<String>,
    pub city: Option<String>,
}

// Profiles are written as JSON by hand (`users::sql::UserRow`); the tests read them back into
// this type and write it again, which must give the very same JSON, so the documented schema
// cannot drift from what is sent.
/// A user's public profile, as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    /// The user id (a decimal string).
    #[schema(example = "42")]
    pub id: String,
    #[schema(example = "Анна")]
    pub first_name: String,
    #[schema(example = "Иванова")]
    pub second_name: String,
    /// `YYYY-MM-DD`; left out when the user gave none.
    #[schema(value_type = String, required = false, format = Date, example = "1990-05-17")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthdate: Option<NaiveDate>,
    /// Left out when the user gave none.
    #[schema(nullable = false)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biography: Option<String>,
    /// Left out when the user gave none.
    #[schema(nullable = false)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
}

/// A name: 1..=100 characters, none of them a control, non- or format character. Format
/// characters (Unicode category Cf: bidi overrides like U+202E, zero-width spaces and joiners)
/// are invisible, and in a name they only serve to make one look like another or to reverse
/// how the text around it is shown.
fn check_name(field: &str, value: &str) -> Result<(), Invalid> {
    check_text(field, value, 1, NAME_MAX_CHARS)?;
    if value
        .chars()
        .any(|c| c.general_category() == GeneralCategory::Format)
    {
        return Err(Invalid(format!(
            "{field} contains invisible format characters"
        )));
    }
    Ok(())
}

fn check_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), Invalid> {
    let chars = value.chars().count();
    if chars < min {
        return Err(Invalid(format!("{field} must not be empty")));
    }
    if chars > max {
        return Err(Invalid(format!("{field} must be at most {max} characters")));
    }
    // Control characters and non-characters (U+FFFE, U+FFFF, U+10FFFF and kin) have no place in a
    // name; excluding U+10FFFF also keeps the search's upper bound (prefix || U+10FFFF) exact.
    if value
        .chars()
        .any(|c| c.is_control() || (c as u32 & 0xFFFE) == 0xFFFE)
    {
        return Err(Invalid(format!(
            "{field} contains control or non-characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn birthdates_must_be_real_past_dates_in_iso_form() {
        assert_eq!(
            Birthdate::parse("2000-02-29").unwrap().date(),
            NaiveDate::from_ymd_opt(2000, 2, 29).unwrap()
        );
        for bad in [
            "2023-02-30",
            "2023-2-3",
            "1899-12-31",
            "3000-01-01",
            "2023/01/01",
            "01-01-2000",
            "",
            "2001-02-29",
        ] {
            assert!(Birthdate::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            PersonName::parse("first_name", "  Ёжик ").unwrap().as_str(),
            "Ёжик"
        );
        assert!(PersonName::parse("first_name", "   ").is_err());
        assert!(PersonName::parse("first_name", &"я".repeat(100)).is_ok());
        assert!(PersonName::parse("first_name", &"я".repeat(101)).is_err());
        assert!(PersonName::parse("first_name", "a\u{0}b").is_err());
        assert!(PersonName::parse("first_name", "a\u{10FFFF}").is_err());
        // Bidi overrides, zero-width spaces and joiners, soft hyphens, byte-order marks.
        for invisible in [
            '\u{202E}', '\u{200B}', '\u{200D}', '\u{00AD}', '\u{FEFF}', '\u{2066}',
        ] {
            assert!(
                PersonName::parse("first_name", &format!("Ан{invisible}на")).is_err(),
                "{:04X}",
                invisible as u32
            );
            assert!(NamePrefix::parse("first_name", Some(&format!("А{invisible}н"))).is_err());
        }
    }

    #[test]
    fn passwords_are_counted_in_characters() {
        assert!(Password::parse("пароль12".into()).is_ok());
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("x".repeat(257)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret-secret".into()).unwrap()),
            "Password(..)"
        );
    }
}
