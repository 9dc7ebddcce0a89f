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

/// A user's text (a post, a message) as it is stored: trimmed, 1..=`max_chars` characters, no NUL
/// (PostgreSQL cannot store it). Anything else is refused, naming the rule.
pub fn user_text(raw: &str, max_chars: usize) -> Result<String, Invalid> {
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
    if text.contains('\0') {
        return Err(Invalid::new("text contains a NUL character"));
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
    fn user_text_is_trimmed_bounded_and_free_of_nul() {
        assert_eq!(user_text("  hi \n", 5).unwrap(), "hi");
        assert_eq!(
            user_text(" \t ", 5).unwrap_err().0,
            "text must not be empty"
        );
        assert!(user_text("привет", 5).is_err());
        assert!(user_text("a\0b", 5).is_err());
    }
}
