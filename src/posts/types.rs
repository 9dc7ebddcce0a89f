//! Post domain types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;

/// Longest post, in characters.
pub const POST_MAX_CHARS: usize = 5_000;
/// The feed is drawn from this many latest posts of the people one follows.
pub const FEED_WINDOW: i64 = 1_000;

/// A post id: a positive bigint, a decimal string on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PostId(pub i64);

impl FromStr for PostId {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::http::extract::positive_id(s)
            .map(PostId)
            .ok_or_else(|| ApiError::bad_request("invalid post id"))
    }
}

impl fmt::Display for PostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Post text: 1..=5000 characters once trimmed, no NUL (PostgreSQL cannot store it).
#[derive(Debug, Clone)]
pub struct PostText(String);

impl PostText {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        crate::http::extract::user_text(raw, POST_MAX_CHARS).map(PostText)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A post as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Post {
    #[schema(example = "1024")]
    pub id: String,
    #[schema(example = "Привет!")]
    pub text: String,
    #[schema(example = "42")]
    pub author_user_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_text_is_trimmed_and_bounded() {
        assert_eq!(PostText::parse("  привет ").unwrap().as_str(), "привет");
        assert!(PostText::parse(" \n ").is_err());
        assert!(PostText::parse(&"ы".repeat(POST_MAX_CHARS)).is_ok());
        assert!(PostText::parse(&"ы".repeat(POST_MAX_CHARS + 1)).is_err());
        assert!(PostText::parse("a\0b").is_err());
    }

    #[test]
    fn post_ids_are_positive_decimals() {
        assert_eq!("7".parse::<PostId>().unwrap(), PostId(7));
        for bad in ["0", "-1", "+1", "x", "", "99999999999999999999"] {
            assert!(bad.parse::<PostId>().is_err(), "{bad:?}");
        }
    }
}
