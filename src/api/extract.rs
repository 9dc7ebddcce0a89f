//! Extractors whose rejections speak the API's error shape instead of axum's plain text: axum's
//! own, wrapped by its derive with [`ApiError`] as the rejection.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;

use super::error::ApiError;
use crate::auth::TokenKeys;
use crate::ids::UserId;

/// A JSON body. Bad JSON or wrong types give 400, a wrong content type 415, a too-large body 413.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// Path parameters, each parsed into its domain type (`Path<UserId>`); one that does not parse
/// gives 400 with the type's own message.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// The query string; a missing or malformed parameter gives 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

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
