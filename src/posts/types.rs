//! Post domain types.

use serde::{Deserialize, Serialize};

use crate::cache::PostBody;
use crate::input::{user_text, Invalid};

/// Longest post, in characters.
pub const POST_MAX_CHARS: usize = 5_000;
/// The feed is drawn from this many latest posts of the people one follows.
pub const FEED_WINDOW: i64 = 1_000;
/// The most text one page of the feed carries, in bytes: a page holds `limit` posts or, when
/// they are long, as many as start within this (at least one). 1,000 posts of 5,000 four-byte
/// characters would be 20 MB in one answer; the client pages on from the count it received.
pub const FEED_PAGE_MAX_BYTES: usize = 1 << 20;

/// The posts of a page that start within [`FEED_PAGE_MAX_BYTES`] of text.
pub fn within_page_bytes(mut posts: Vec<Post>) -> Vec<Post> {
    let mut bytes = 0;
    let keep = posts
        .iter()
        .take_while(|post| {
            let starts_within = bytes < FEED_PAGE_MAX_BYTES;
            bytes += post.text.len();
            starts_within
        })
        .count();
    posts.truncate(keep);
    posts
}

/// Post text: 1..=5000 characters once trimmed, no control characters but tabs and line breaks
/// (see `crate::input::user_text`).
#[derive(Debug, Clone)]
pub struct PostText(String);

impl PostText {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        user_text(raw, POST_MAX_CHARS).map(PostText)
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

/// Posts are cached as this JSON, under their id.
impl PostBody for Post {
    fn id(&self) -> i64 {
        self.id.parse().unwrap_or_default()
    }
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
}
