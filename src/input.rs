//! Input rules that several domains share (ids on the wire, users' free text) and [`Invalid`],
//! the error of a value that breaks a rule of any domain: the HTTP shell answers it with a 400
//! carrying its message.

/// A value that breaks an input rule; the message says which, for the client to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Invalid(message.into())
    }
}

/// An id as it travels on the wire: a positive bigint in plain decimal digits (no sign, no
/// spaces, at most 19 digits). `None` for anything else.
pub fn positive_id(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().filter(|n| *n > 0)
}

/// An id as clients send it in a body (a user to log in as, a post, a message read up to): the
/// contract says a string of digits, and a bare JSON number is taken too, as generated clients
/// of other languages send one, in any integral spelling (`18`, `18.0`). Its schema says both.
#[derive(Debug, Clone)]
pub enum IdInput {
    Text(String),
    Number(u64),
}

impl<'de> serde::Deserialize<'de> for IdInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Id;

        impl serde::de::Visitor<'_> for Id {
            type Value = IdInput;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an id: a string of digits or a whole number")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<IdInput, E> {
                Ok(IdInput::Text(text.to_owned()))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<IdInput, E> {
                Ok(IdInput::Number(n))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<IdInput, E> {
                u64::try_from(n)
                    .map(IdInput::Number)
                    .map_err(|_| E::custom("an id is not negative"))
            }

            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<IdInput, E> {
                // Whole and within u64: what `as` keeps exactly below 2^64.
                if n.fract() == 0.0 && (0.0..1.8e19).contains(&n) {
                    Ok(IdInput::Number(n as u64))
                } else {
                    Err(E::custom("an id is a whole number"))
                }
            }
        }

        deserializer.deserialize_any(Id)
    }
}

impl IdInput {
    /// The id as text, whichever way it was sent.
    pub fn into_text(self) -> String {
        match self {
            IdInput::Text(s) => s,
            IdInput::Number(n) => n.to_string(),
        }
    }

    /// The id, when it is one: a positive bigint.
    pub fn positive(self) -> Option<i64> {
        match self {
            IdInput::Text(text) => positive_id(&text),
            IdInput::Number(n) => i64::try_from(n).ok().filter(|n| *n > 0),
        }
    }
}

impl utoipa::PartialSchema for IdInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[1-9][0-9]{0,17}$"))
                    .examples(["42"]),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(1))
                    .maximum(Some(i64::MAX)),
            )
            .description(Some("An id: a string of digits, or a bare number"))
            .into()
    }
}

impl utoipa::ToSchema for IdInput {}

/// A user's text (a post, a message) as it is stored: trimmed, 1..=`max_chars` characters, and
/// no control character but tab, line feed and carriage return. Anything else is refused,
/// naming the rule.
///
/// Why no control characters: none means anything in a message or a post (NUL PostgreSQL cannot
/// even store); a reader's screen cannot show them, and a terminal obeys some (ESC starts the
/// sequences that move its cursor or rewrite its title); and JSON writes each as six bytes, so
/// 4,000 of them made a message of 24 KB and a page of a dialog 24 MB. Names refuse them too.
pub fn user_text(raw: &str, max_chars: usize) -> Result<String, Invalid> {
    // In the text as sent, before trimming: a vertical tab or a form feed at an edge is a control
    // character too, as the documented pattern has it, not whitespace to trim away.
    if let Some((at, control)) = raw
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(Invalid(format!(
            "text contains a control character (U+{:04X}) at character {}",
            u32::from(control),
            at + 1
        )));
    }
    let text = raw.trim();
    let chars = text.chars().count();
    if chars == 0 {
        return Err(Invalid::new("text must not be empty"));
    }
    if chars > max_chars {
        return Err(Invalid(format!(
            "text must be at most {max_chars} characters"
        )));
    }
    Ok(text.to_owned())
}

/// Cuts a hostile value down before it is echoed in an error message.
pub fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut cut: String = s.chars().take(MAX).collect();
        cut.push('…');
        cut
    }
}

/// A count or an offset as clients spell it. The public spec types the paging parameters as
/// `number`, so a generated client may send `10.0` or `1e1` for ten: any whole, non-negative
/// value is taken, however it is written; a fraction, a negative value or anything else is
/// refused with a message that says so (the extractor adds the parameter's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whole(pub i64);

impl std::str::FromStr for Whole {
    type Err = Invalid;

    fn from_str(text: &str) -> Result<Self, Invalid> {
        if let Ok(n) = text.parse::<i64>() {
            return Whole::from_i64(n);
        }
        // `f64` reads every JSON spelling of a number (and some more: `inf`, `NaN`, refused here).
        match text.parse::<f64>() {
            Ok(n) => Whole::from_f64(n),
            Err(_) => Err(Invalid(format!("must be a number, got {}", shorten(text)))),
        }
    }
}

impl Whole {
    fn from_i64(n: i64) -> Result<Self, Invalid> {
        if n < 0 {
            return Err(Invalid(format!("must not be negative, got {n}")));
        }
        Ok(Whole(n))
    }

    fn from_f64(n: f64) -> Result<Self, Invalid> {
        // Every whole number below 2^53 is exact in an f64; no page goes that deep.
        const EXACT: f64 = 9_007_199_254_740_992.0;
        if !n.is_finite() || n.fract() != 0.0 {
            return Err(Invalid(format!("must be a whole number, got {n}")));
        }
        if n < 0.0 {
            return Err(Invalid(format!("must not be negative, got {n}")));
        }
        if n > EXACT {
            return Err(Invalid(format!("is too large: {n}")));
        }
        Ok(Whole(n as i64))
    }
}

impl<'de> serde::Deserialize<'de> for Whole {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Number;

        impl serde::de::Visitor<'_> for Number {
            type Value = Whole;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number at least 0")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Whole, E> {
                text.parse().map_err(E::custom)
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Whole, E> {
                Whole::from_i64(n).map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Whole, E> {
                i64::try_from(n)
                    .map_err(|_| E::custom(format!("is too large: {n}")))
                    .and_then(|n| Whole::from_i64(n).map_err(E::custom))
            }

            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Whole, E> {
                Whole::from_f64(n).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(Number)
    }
}

/// Deserializes a value from text through its `FromStr`, its error message kept whole: how ids
/// in paths and queries become domain types at the edge (`Path<UserId>`).
pub struct FromStrVisitor<T> {
    expecting: &'static str,
    parsed: std::marker::PhantomData<T>,
}

impl<T> FromStrVisitor<T> {
    pub fn new(expecting: &'static str) -> Self {
        FromStrVisitor {
            expecting,
            parsed: std::marker::PhantomData,
        }
    }
}

impl<T> serde::de::Visitor<'_> for FromStrVisitor<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
        text.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_are_taken_in_any_json_spelling_and_nothing_else() {
        for (text, n) in [
            ("10", 10),
            ("10.0", 10),
            ("1e1", 10),
            ("1E1", 10),
            ("0", 0),
            ("-0", 0),
        ] {
            assert_eq!(text.parse::<Whole>(), Ok(Whole(n)), "{text}");
        }
        for bad in [
            "1.5", "-1", "-1.0", "1e-1", "NaN", "inf", "", "ten", "1e300", " 1",
        ] {
            assert!(bad.parse::<Whole>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            "1.5".parse::<Whole>().unwrap_err().0,
            "must be a whole number, got 1.5"
        );
    }

    #[test]
    fn an_id_is_taken_as_a_string_or_any_whole_number() {
        let id = |json: &str| serde_json::from_str::<IdInput>(json).map(IdInput::positive);
        assert_eq!(id(r#""18""#).unwrap(), Some(18));
        assert_eq!(id("18").unwrap(), Some(18));
        assert_eq!(id("18.0").unwrap(), Some(18));
        assert_eq!(id("2084456059806.0").unwrap(), Some(2_084_456_059_806));
        assert_eq!(id("0").unwrap(), None);
        assert_eq!(id(r#""-1""#).unwrap(), None);
        assert!(id("18.5").is_err());
        assert!(id("-1").is_err());
        assert!(id("null").is_err());
        assert!(id("[18]").is_err());
    }

    #[test]
    fn user_text_is_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(user_text("  hi \n", 5).unwrap(), "hi");
        assert_eq!(
            user_text(" \t ", 5).unwrap_err().0,
            "text must not be empty"
        );
        assert!(user_text("привет", 5).is_err());
        assert!(user_text("a\0b", 5).is_err());
        assert_eq!(
            user_text("ok\u{1b}[2J", 9).unwrap_err().0,
            "text contains a control character (U+001B) at character 3"
        );
        for control in ['\u{1}', '\u{7f}', '\u{85}', '\u{9f}'] {
            assert!(
                user_text(&format!("a{control}b"), 9).is_err(),
                "{control:?}"
            );
        }
        // Lines and tabs are text.
        assert_eq!(user_text("a\tb\r\nc", 9).unwrap(), "a\tb\r\nc");
        // At an edge too, where trimming would have taken it away.
        assert!(user_text("ok\u{b}", 9).is_err());
    }
}
