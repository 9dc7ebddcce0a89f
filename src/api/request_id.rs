//! `x-request-id`: taken from the request when sane, generated otherwise (by the middleware,
//! which puts it in the request's extensions), and passed on by whatever the request causes: a
//! forwarded request, an event in the outbox and on RabbitMQ.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};

pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, in the request's extensions. Held as the header value it
/// is echoed in, so passing it around copies no text.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// Accepts a client's id only if it is short and made of safe characters, so it can be logged
    /// and echoed as is; anything else is replaced by a fresh UUID.
    pub fn from_header(value: Option<&HeaderValue>) -> Self {
        let given = value.filter(|v| {
            (1..=128).contains(&v.len())
                && v.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
        });
        RequestId(match given {
            Some(value) => value.clone(),
            None => {
                // A v4 UUID from the thread-local generator: no system call per request, and
                // written on the stack rather than through a formatted string.
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                uuid::Builder::from_random_bytes(rand::random())
                    .into_uuid()
                    .hyphenated()
                    .encode_lower(&mut text);
                HeaderValue::from_bytes(&text).expect("hex digits and hyphens are a valid header")
            }
        })
    }

    /// The id as text (it only ever holds visible ASCII).
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("invalid")
    }

    /// The id as a header value.
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

/// The request's id, as the middleware set it (a fresh one where no middleware ran).
impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId::from_header(None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_id_is_kept_and_anything_else_replaced_by_a_uuid() {
        let given = HeaderValue::from_static("req-42_a.b:c");
        assert_eq!(
            RequestId::from_header(Some(&given)).as_str(),
            "req-42_a.b:c"
        );
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        for bad in [
            None,
            Some(HeaderValue::from_static("")),
            Some(HeaderValue::from_static("has space")),
            Some(HeaderValue::from_static("semi;colon")),
            Some(long),
        ] {
            let id = RequestId::from_header(bad.as_ref());
            let parsed = uuid::Uuid::parse_str(id.as_str()).expect("a generated id is a UUID");
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(id.as_str(), parsed.hyphenated().to_string());
        }
        let a = RequestId::from_header(None);
        let b = RequestId::from_header(None);
        assert_ne!(a.as_str(), b.as_str());
    }
}
