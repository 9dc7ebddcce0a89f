//! Signed, expiring bearer tokens (JWT, HS256) carrying the user id. Any instance that shares the
//! secret verifies them without a database round trip.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ids::UserId;

/// Why a request's token is refused; the message is for the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

/// The signing and verifying keys plus the token lifetime.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

/// What a token says.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a decimal string.
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
}

impl TokenKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    pub fn issue(&self, user: UserId) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = Claims {
            sub: user.to_string(),
            iat: now,
            exp: now + self.ttl.as_secs(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Checks signature, algorithm and expiry; returns the user the token was issued to. The
    /// client is told only "expired" or "invalid": why a token is invalid (which check failed)
    /// would help whoever forges them, so it goes to the debug log.
    pub fn verify(&self, token: &str) -> Result<UserId, TokenError> {
        self.verify_until(token).map(|(user, _)| user)
    }

    /// As [`TokenKeys::verify`], with the token's expiry (seconds since the Unix epoch).
    pub fn verify_until(&self, token: &str) -> Result<(UserId, u64), TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                tracing::debug!(error = %e, "token refused");
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        TokenError("token expired".into())
                    }
                    _ => TokenError("invalid token".into()),
                }
            })?;
        let user = data.claims.sub.parse().map_err(|_| {
            tracing::debug!("token refused: its subject is no user id");
            TokenError("invalid token".into())
        })?;
        Ok((user, data.claims.exp))
    }

    /// Reads `Authorization: Bearer <token>` (the scheme in any case, as HTTP has it) and
    /// verifies it.
    pub fn verify_header(&self, headers: &HeaderMap) -> Result<UserId, TokenError> {
        self.verify_header_until(headers).map(|(user, _)| user)
    }

    /// As [`TokenKeys::verify_header`], with the token's expiry.
    pub fn verify_header_until(&self, headers: &HeaderMap) -> Result<(UserId, u64), TokenError> {
        let header = headers
            .get(AUTHORIZATION)
            .ok_or_else(|| TokenError("missing Authorization header".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TokenError("Authorization must be `Bearer <token>`".into()))?;
        self.verify_until(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(b"unit-test-secret", Duration::from_secs(60))
    }

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        let keys = keys();
        let token = keys.issue(UserId(7)).unwrap();
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let headers = with_authorization(&format!("{scheme} {token}"));
            assert_eq!(keys.verify_header(&headers).unwrap(), UserId(7), "{scheme}");
        }
        for bad in [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer   ",
            "Bearertoken",
            token.as_str(),
        ] {
            assert!(
                keys.verify_header(&with_authorization(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_refused_token_says_only_invalid_or_expired() {
        let keys = keys();
        let forged = TokenKeys::new(b"another-secret", Duration::from_secs(60))
            .issue(UserId(7))
            .unwrap();
        assert_eq!(keys.verify(&forged).unwrap_err().0, "invalid token");
        assert_eq!(keys.verify("garbage").unwrap_err().0, "invalid token");
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "7".into(),
                iat: 1,
                exp: 2,
            },
            &EncodingKey::from_secret(b"unit-test-secret"),
        )
        .unwrap();
        assert_eq!(keys.verify(&expired).unwrap_err().0, "token expired");
    }
}
