//! Dialog domain types: the dialog key, message text, a message as the API returns it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::UserId;
use crate::input::{user_text, Invalid};

/// Longest message, in characters.
pub const MESSAGE_MAX_CHARS: usize = 4_000;
/// Page size bounds of `GET /dialog/{user_id}/list`.
pub const LIST_DEFAULT: i64 = 100;
pub const LIST_MAX: i64 = 1_000;
/// Deepest `offset + limit` of a list (deeper pages: use the cursor).
pub const LIST_MAX_DEPTH: i64 = 10_000;
/// The most text one page of a dialog carries, in bytes: a page holds `limit` messages or, when
/// they are long, as many as start within this (at least one). At most 1,000 messages of 4,000
/// four-byte characters would be 16 MB in one answer; this keeps a page near 1 MB whoever wrote
/// the dialog, and the client pages on from the last `id` it got.
pub const LIST_MAX_BYTES: i64 = 1 << 20;

/// The key of the dialog between two users, the same whoever writes first: the distribution
/// column on Citus, so that one dialog lives on one shard.
///
/// `id` is a 64-bit mix of the unordered pair, so dialogs spread evenly over hash ranges whatever
/// the users' ids. Distinct pairs could in principle share an `id`; every query also names the
/// pair, so such a collision would share a shard and a message counter, never messages.
/// The function must never change: stored rows are keyed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialogKey {
    pub id: i64,
    pub low: UserId,
    pub high: UserId,
}

impl DialogKey {
    pub fn of(a: UserId, b: UserId) -> Self {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let id = splitmix64(splitmix64(low.0 as u64) ^ (high.0 as u64)) as i64;
        DialogKey { id, low, high }
    }
}

/// Sebastiano Vigna's SplitMix64 finaliser: a cheap bijection of u64 with good avalanche.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Message text: 1..=4000 characters once trimmed, no control characters but tabs and line
/// breaks (see `crate::input::user_text`).
#[derive(Debug, Clone)]
pub struct MessageText(String);

impl MessageText {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        user_text(raw, MESSAGE_MAX_CHARS).map(MessageText)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message as the API returns it. `id` counts the dialog's messages (1, 2, 3…): unique and
/// ordered within the dialog, which is what paging needs, with no global sequence to contend on.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Message {
    #[schema(example = "17")]
    pub id: String,
    #[schema(example = "42")]
    pub from: String,
    #[schema(example = "43")]
    pub to: String,
    #[schema(example = "Привет!")]
    pub text: String,
    #[schema(value_type = String, example = "2026-11-25T12:00:00.000000Z")]
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_same_from_both_sides_and_never_changes() {
        let ab = DialogKey::of(UserId(3), UserId(7));
        let ba = DialogKey::of(UserId(7), UserId(3));
        assert_eq!(ab, ba);
        assert_eq!((ab.low, ab.high), (UserId(3), UserId(7)));
        // Stored rows are keyed by these values: a change here would orphan them.
        assert_eq!(
            DialogKey::of(UserId(1), UserId(2)).id,
            -4_838_594_755_968_170_389
        );
        assert_ne!(
            DialogKey::of(UserId(1), UserId(3)).id,
            DialogKey::of(UserId(1), UserId(2)).id
        );
    }

    #[test]
    fn the_mixer_is_splitmix64() {
        // The first outputs of the reference SplitMix64 generator seeded with 0.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(0x9e37_79b9_7f4a_7c15), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn keys_of_neighbouring_pairs_spread_over_hash_ranges() {
        // 32 equal ranges of the i64 line, as 32 shards would split it: no range holds more than
        // twice its share of the dialogs of one user with 3,200 others.
        let mut ranges = [0u32; 32];
        for other in 2..3_202 {
            let id = DialogKey::of(UserId(1), UserId(other)).id;
            ranges[((id as u64) >> 59) as usize] += 1;
        }
        assert!(ranges.iter().all(|&n| n > 50 && n < 200), "{ranges:?}");
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(MessageText::parse(" привет ").unwrap().as_str(), "привет");
        assert!(MessageText::parse("\t\n").is_err());
        assert!(MessageText::parse(&"ж".repeat(MESSAGE_MAX_CHARS)).is_ok());
        assert!(MessageText::parse(&"ж".repeat(MESSAGE_MAX_CHARS + 1)).is_err());
        assert!(MessageText::parse("a\0").is_err());
    }
}
