//! The ids of users and posts: positive bigints in the database, decimal strings on the wire,
//! parsed once where they enter (a path, a query, a body) through their `FromStr`.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::input::{positive_id, shorten, FromStrVisitor, Invalid};

/// A user id: a positive 64-bit integer in the database, a decimal string on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub i64);

impl FromStr for UserId {
    type Err = Invalid;

    /// Only plain decimal digits that fit a positive bigint: anything else cannot be an id.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        positive_id(s)
            .map(UserId)
            .ok_or_else(|| Invalid(format!("invalid user id: {}", shorten(s))))
    }
}

/// From the id's text (a path segment, a query parameter), through [`UserId::from_str`].
impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(FromStrVisitor::new("a user id"))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A post id: a positive bigint, a decimal string on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PostId(pub i64);

impl FromStr for PostId {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        positive_id(s)
            .map(PostId)
            .ok_or_else(|| Invalid::new("invalid post id"))
    }
}

/// From the id's text, through [`PostId::from_str`].
impl<'de> Deserialize<'de> for PostId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(FromStrVisitor::new("a post id"))
    }
}

impl fmt::Display for PostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_positive_decimal_bigints() {
        assert_eq!("42".parse::<UserId>().unwrap(), UserId(42));
        assert_eq!(
            "9223372036854775807".parse::<UserId>().unwrap(),
            UserId(i64::MAX)
        );
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            " 1",
            "1.0",
            "abc",
            "9223372036854775808",
            "00000000000000000001",
            "1; drop table users",
        ] {
            assert!(bad.parse::<UserId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn post_ids_are_positive_decimals() {
        assert_eq!("7".parse::<PostId>().unwrap(), PostId(7));
        for bad in ["0", "-1", "+1", "x", "", "99999999999999999999"] {
            assert!(bad.parse::<PostId>().is_err(), "{bad:?}");
        }
    }
}
