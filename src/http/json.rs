//! JSON text written straight into a response buffer, for the responses that dominate the server's
//! time: profiles (one per `/user/get`, a hundred per search page).
//!
//! serde_json escapes a string one byte at a time through a lookup table; on a search page that
//! loop was a quarter of the server's instructions (`scripts/callgrind-requests.sh search`). Names,
//! cities and biographies almost never hold a character that needs escaping, so [`write_str`]
//! checks eight bytes at a time and copies runs that need nothing. The output is byte for byte
//! what serde_json writes (a test compares them).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// A response with this JSON body.
pub fn response(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Appends `text` as a JSON string literal, quotes included.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        if let Some(word) = bytes.get(at..at + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            if !any_needs_escape(word) {
                at += 8;
                continue;
            }
        }
        let byte = bytes[at];
        if needs_escape(byte) {
            out.extend_from_slice(&bytes[copied..at]);
            write_escape(out, byte);
            copied = at + 1;
        }
        at += 1;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

/// A control character, a quote or a backslash; every other byte, multi-byte UTF-8 included,
/// goes out as it is.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Whether any of the eight bytes is below `n` (exact for n <= 128: a borrow can only run on
/// from a byte that is itself below `n`).
fn any_below(word: u64, n: u8) -> bool {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH_BITS != 0
}

fn any_needs_escape(word: u64) -> bool {
    any_below(word, 0x20)
        || any_below(word ^ (ONES * u64::from(b'"')), 1)
        || any_below(word ^ (ONES * u64::from(b'\\')), 1)
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
        write_str(&mut out, text);
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
    fn the_word_check_finds_a_byte_to_escape_in_any_lane() {
        for lane in 0..8 {
            for byte in [0u8, 0x1f, b'"', b'\\'] {
                let mut word = [b'a'; 8];
                word[lane] = byte;
                assert!(any_needs_escape(u64::from_le_bytes(word)));
            }
            for byte in [0x20u8, b'!', b'#', b'[', b']', 0x7f, 0x80, 0xd0, 0xff] {
                let mut word = [b'a'; 8];
                word[lane] = byte;
                assert!(!any_needs_escape(u64::from_le_bytes(word)), "{byte:#x}");
            }
        }
    }
}
