//! JSON text written straight into a buffer, for the responses that dominate the server's time:
//! profiles (one per `/user/get`, a hundred per search page).
//!
//! serde_json escapes a string one byte at a time through a lookup table; on a search page that
//! loop led the server's profile (see docs/benchmarks/users.md). Names,
//! cities and biographies almost never hold a character that needs escaping, so
//! [`write_raw_text`] checks eight bytes at a time (a short tail padded to eight), copies runs that
//! need nothing and jumps straight to the byte that does. The output is byte for byte what
//! serde_json writes (a test compares them).
//!
//! Texts straight from the database go in unchecked ([`write_raw_text`]) and the finished body is
//! checked as UTF-8 once ([`check_utf8`]): one SIMD pass over a page instead of the driver's
//! check of every short name on its own.

/// Succeeds if the body is UTF-8: the check that covers every [`write_raw_text`] in it, made at
/// once over the whole body with SIMD (a search page is up to ~40 KB, each of its texts a few
/// dozen bytes).
pub fn check_utf8(body: &[u8]) -> Result<(), NotUtf8> {
    simdutf8::basic::from_utf8(body)
        .map(|_| ())
        .map_err(|_| NotUtf8)
}

/// A body that [`check_utf8`] refused.
#[derive(Debug, thiserror::Error)]
#[error("text that is not UTF-8")]
pub struct NotUtf8;

/// Appends bytes that should be UTF-8 text, not yet checked, as a JSON string literal: check the
/// finished buffer with [`check_utf8`]. The check may wait for the whole buffer because only
/// ASCII bytes are ever added or replaced here, and ASCII never occurs inside a multi-byte UTF-8
/// sequence: the output's non-ASCII runs are exactly the input's, so the output is UTF-8 if and
/// only if every input was (given that the rest of the buffer is).
#[inline]
pub fn write_raw_text(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        // Eight bytes at a time; the last few (most of a short name) padded with spaces.
        let word = match bytes.get(at..at + 8) {
            Some(word) => u64::from_le_bytes(word.try_into().expect("eight bytes")),
            None => padded_word(&bytes[at..]),
        };
        let found = escape_mask(word);
        if found == 0 {
            at += 8;
            continue;
        }
        // The lowest marked lane is a byte to escape (see `escape_mask`); copy up to it, escape
        // it, and go on from the byte after it.
        let escape_at = at + (found.trailing_zeros() / 8) as usize;
        out.extend_from_slice(&bytes[copied..escape_at]);
        write_escape(out, bytes[escape_at]);
        copied = escape_at + 1;
        at = escape_at + 1;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

/// Up to eight bytes as a word, the missing ones spaces.
fn padded_word(bytes: &[u8]) -> u64 {
    let mut word = [b' '; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// A control character, a quote or a backslash; every other byte, multi-byte UTF-8 included,
/// goes out as it is.
#[cfg(test)]
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each of the eight bytes (little-endian lanes) that may need escaping: zero
/// if none does, and otherwise the lowest marked lane surely does. Per lane, `x - n` borrows
/// into the high bit exactly when a byte is below `n` (`& !x` drops bytes of 0x80 and up, for
/// n <= 0x80); a borrow can carry on into higher lanes, so lanes above a marked one may be marked
/// wrongly, but never the lowest. Quotes and backslashes are the bytes that are zero after an
/// exclusive or with them, i.e. below one.
fn escape_mask(word: u64) -> u64 {
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    (word.wrapping_sub(ONES * 0x20) & !word
        | quote.wrapping_sub(ONES) & !quote
        | backslash.wrapping_sub(ONES) & !backslash)
        & HIGH_BITS
}

fn write_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match byte {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xf)],
        ]),
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn ours(text: &str) -> String {
        let mut out = Vec::new();
        write_raw_text(&mut out, text.as_bytes());
        String::from_utf8(out).expect("valid UTF-8 in, valid UTF-8 out")
    }

    #[test]
    fn every_ascii_character_is_written_as_serde_json_writes_it() {
        for byte in 0u8..=0x7f {
            let text = char::from(byte).to_string();
            assert_eq!(
                ours(&text),
                serde_json::to_string(&text).unwrap(),
                "byte {byte:#x}"
            );
            // At every position of a run longer than one word, too.
            for at in 0..19 {
                let mut text = "abcdefghijklmnopqrs".to_owned();
                text.replace_range(at..at + 1, &char::from(byte).to_string());
                assert_eq!(ours(&text), serde_json::to_string(&text).unwrap());
            }
        }
    }

    #[test]
    fn random_strings_are_written_as_serde_json_writes_them() {
        let alphabet: Vec<char> = (0u8..0x80)
            .map(char::from)
            .chain("АнаИвнова ёЁ—«»€😀\u{2028}\u{7f}\u{80}\u{ffff}".chars())
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..40);
            let text: String = (0..len)
                .map(|_| {
                    // Mostly plain letters, as in real names, with escapes sprinkled in.
                    if rng.gen_bool(0.7) {
                        char::from(rng.gen_range(b'a'..=b'z'))
                    } else {
                        alphabet[rng.gen_range(0..alphabet.len())]
                    }
                })
                .collect();
            assert_eq!(
                ours(&text),
                serde_json::to_string(&text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_word_check_marks_the_first_byte_to_escape_lowest() {
        let first = |word: [u8; 8]| word.iter().position(|&byte| needs_escape(byte));
        let lowest = |word: [u8; 8]| {
            let found = escape_mask(u64::from_le_bytes(word));
            (found != 0).then_some((found.trailing_zeros() / 8) as usize)
        };
        // Every byte value in every lane, among letters.
        for lane in 0..8 {
            for byte in 0..=u8::MAX {
                let mut word = [b'a'; 8];
                word[lane] = byte;
                assert_eq!(lowest(word), first(word), "{byte:#x} in lane {lane}");
            }
        }
        // Words mixing the bytes next to each boundary (borrows run from lane to lane).
        let near = [
            0u8, 1, 0x1f, 0x20, 0x21, b'"', b'#', b'[', b'\\', b']', 0x7f, 0x80, 0x81, 0xa2, 0xdc,
            0xff, b'a',
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..200_000 {
            let word: [u8; 8] = std::array::from_fn(|_| near[rng.gen_range(0..near.len())]);
            assert_eq!(lowest(word), first(word), "{word:?}");
        }
    }

    #[test]
    fn raw_text_keeps_a_body_utf8_exactly_when_its_texts_are() {
        let check = |texts: &[&[u8]]| {
            let mut body = b"[".to_vec();
            for text in texts {
                write_raw_text(&mut body, text);
                body.push(b',');
            }
            body.push(b']');
            check_utf8(&body).is_ok()
        };
        assert!(check(&[
            b"\xd0\x81\xd0\xb6\"\n",
            "Иван 😀\\".as_bytes(),
            b""
        ]));
        // Invalid texts stay invalid whatever ASCII is written around or inside them: halves of
        // one character in two texts, or split by a byte that is escaped.
        for bad in [
            &[&b"ab\xd0"[..], b"\x81"][..],
            &[b"\xd0\n\x81"],
            &[b"\xd0\"\x81"],
            &[b"\xe2\x82", b"\xac"],
            &[b"\xff"],
            &[b"\xed\xa0\x80"],
            &[b"\xc0\xaf"],
        ] {
            assert!(!check(bad), "{bad:?}");
        }
        // Any byte string: the body is UTF-8 exactly when the text is.
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let pieces: [&[u8]; 10] = [
            b"a",
            b"\"",
            b"\n",
            b"\x01",
            b"\xd0",
            b"\x81",
            b"\xe2\x82",
            b"\xac",
            b"\xff",
            "ё".as_bytes(),
        ];
        for _ in 0..20_000 {
            let text: Vec<u8> = (0..rng.gen_range(0..12))
                .flat_map(|_| pieces[rng.gen_range(0..pieces.len())].iter().copied())
                .collect();
            assert_eq!(
                check(&[&text]),
                std::str::from_utf8(&text).is_ok(),
                "{text:?}"
            );
        }
    }
}
