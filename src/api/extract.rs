//! Extractors whose rejections speak the API's error shape instead of axum's plain text: axum's
//! own, wrapped with [`ApiError`] as the rejection (by its derive where a wrapper is all it
//! takes), and a body and a query string read as the public contract needs them read.

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::ApiError;
use crate::auth::TokenKeys;
use crate::db::Db;
use crate::ids::UserId;
use crate::limits::{RateLimits, TrustedProxies};

/// A JSON body, which must be an object (unknown fields are ignored). Bad JSON, anything but an
/// object, or wrong types give 400, a wrong content type 415, a too-large body 413.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(JsonObject(value)) = axum::Json::from_request(request, state).await?;
        Ok(Json(value))
    }
}

/// `T`, read from a JSON object only. serde's derived structs also take an array of their fields
/// in order (`["5", "password"]` as a login), which no client of this API means to send.
struct JsonObject<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(Object(PhantomData))
            .map(JsonObject)
    }
}

/// Path parameters, each parsed into its domain type (`Path<UserId>`); one that does not parse
/// gives 400 with the type's own message.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// The query string; a missing or malformed parameter gives 400 naming the parameter (axum's own
/// `Query` does not say which one failed).
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        // The parser below replaces bytes that are not UTF-8; a prefix or an id silently
        // rewritten is worse than a 400.
        if let Some(bad) = query.split('&').find(|pair| !decodes_as_utf8(pair)) {
            return Err(ApiError::BadRequest(format!(
                "the query string is not UTF-8 after percent-decoding, at {}",
                crate::input::shorten(bad)
            )));
        }
        let parameters =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(parameters)
            .map(Query)
            .map_err(|e| match e.path().to_string().as_str() {
                "." => ApiError::BadRequest(format!("invalid query: {}", e.inner())),
                path => ApiError::BadRequest(format!("{path}: {}", e.inner())),
            })
    }
}

/// Whether a `key=value` pair of a query string is UTF-8 once percent-decoded.
fn decodes_as_utf8(pair: &str) -> bool {
    // Percent-escapes are the only way a query string (ASCII on the wire) carries other bytes.
    !pair.contains('%')
        || percent_encoding::percent_decode_str(pair)
            .decode_utf8()
            .is_ok()
}

/// A websocket handshake; anything that is not one gives 400.
pub struct WebSocketUpgrade(pub axum::extract::WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let upgrade = axum::extract::WebSocketUpgrade::from_request_parts(parts, state).await?;
        Ok(WebSocketUpgrade(upgrade))
    }
}

/// The authenticated caller of a protected endpoint: `Authorization: Bearer <token>`, verified
/// with the state's keys; extracting it fails with 401.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub UserId);

impl<S> FromRequestParts<S> for AuthUser
where
    S: AsRef<TokenKeys> + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(AuthUser(state.as_ref().verify_header(&parts.headers)?))
    }
}

/// Who reads, on an endpoint anyone may read: the token's user when the request carries a valid
/// token and reads may go to replicas (so that a user who just wrote reads it back, see
/// `db::replicas`), nobody in particular otherwise. Never refuses a request: a missing, bad or
/// expired token on a public read is no error, as it was none before replicas.
#[derive(Debug, Clone, Copy)]
pub struct Reader(pub Option<UserId>);

impl<S> FromRequestParts<S> for Reader
where
    S: AsRef<TokenKeys> + AsRef<Db> + Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let db: &Db = state.as_ref();
        if !db.has_replicas()
            || !parts
                .headers
                .contains_key(axum::http::header::AUTHORIZATION)
        {
            return Ok(Reader(None));
        }
        let keys: &TokenKeys = state.as_ref();
        Ok(Reader(keys.verify_header(&parts.headers).ok()))
    }
}

/// The address of the client that sent the request: the connection's peer, or, behind a
/// trusted proxy (`TRUSTED_PROXIES`), the client it names in `X-Forwarded-For`. A request that
/// did not come through the serving loop (a router called directly) has the unspecified address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    S: AsRef<TrustedProxies> + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |info| info.0.ip());
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        Ok(ClientIp(state.as_ref().client(peer, &forwarded)))
    }
}

/// The authenticated caller of an endpoint that writes (a post, a message, a follow), let through
/// by the write limits of its account and of its address: 401 without a valid token, 429 past a
/// limit.
#[derive(Debug, Clone, Copy)]
pub struct Writer(pub UserId);

impl<S> FromRequestParts<S> for Writer
where
    S: AsRef<TokenKeys> + AsRef<TrustedProxies> + AsRef<RateLimits> + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let AuthUser(user) = AuthUser::from_request_parts(parts, state).await?;
        let ClientIp(address) = ClientIp::from_request_parts(parts, state).await?;
        let limits: &RateLimits = state.as_ref();
        limits.check_write(user, address).await?;
        Ok(Writer(user))
    }
}
