//! HTTP handlers of the users domain, beside their request and response types.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::sql;
use super::types::{
    optional_text, Birthdate, NamePrefix, NewUser, Password, PersonName, User, BIOGRAPHY_MAX_CHARS,
    CITY_MAX_CHARS, PASSWORD_MAX_CHARS,
};
use crate::api::{json_response, ApiError, ClientIp, ErrorBody, Json, Path, Query, Reader};
use crate::auth::PasswordVerdict;
use crate::ids::UserId;
use crate::input::{IdInput, Whole};
use crate::limits::{address_key, Limit};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(get_user))
        .routes(routes!(search))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// 1 to 100 characters once trimmed, no control or invisible format characters.
    #[schema(
        example = "Анна",
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\ufffe\\uffff]*[^\\s\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\ufffe\\uffff][^\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\ufffe\\uffff]*$"
    )]
    pub first_name: String,
    /// 1 to 100 characters once trimmed, no control or invisible format characters.
    #[schema(
        example = "Иванова",
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\ufffe\\uffff]*[^\\s\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\ufffe\\uffff][^\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\ufffe\\uffff]*$"
    )]
    pub second_name: String,
    /// `YYYY-MM-DD`, from 1900-01-01 to today. Optional.
    #[schema(example = "1990-05-17", format = Date)]
    pub birthdate: Option<String>,
    /// Up to 2000 characters; line breaks and tabs allowed, no other control characters.
    /// Optional.
    #[schema(
        example = "Хобби, интересы и т.п.",
        max_length = 2000,
        pattern = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\ufffe\\uffff]*$"
    )]
    pub biography: Option<String>,
    /// Up to 100 characters, no control characters. Optional.
    #[schema(
        example = "Москва",
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f\\ufffe\\uffff]*$"
    )]
    pub city: Option<String>,
    #[schema(example = "correct horse battery", min_length = 8, max_length = 256)]
    pub password: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RegisterResponse {
    #[schema(example = "42")]
    pub user_id: String,
}

/// Creates a user and returns its id.
#[utoipa::path(
    post, path = "/user/register", tag = "users",
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Registered", body = RegisterResponse),
        (status = 400, description = "Invalid data", body = ErrorBody),
        (status = 413, description = "Body over BODY_LIMIT_BYTES", body = ErrorBody),
        (status = 415, description = "Body not sent as application/json", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address (RATE_REGISTER_PER_ADDRESS); see Retry-After", body = ErrorBody),
        (status = 503, description = "Database or hashing saturated; retry later", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(address): ClientIp,
    Json(request): Json<RegisterRequest>,
) -> Result<axum::Json<RegisterResponse>, ApiError> {
    let user = NewUser {
        first_name: PersonName::parse("first_name", &request.first_name)?,
        second_name: PersonName::parse("second_name", &request.second_name)?,
        birthdate: request
            .birthdate
            .as_deref()
            .map(Birthdate::parse)
            .transpose()?,
        biography: optional_text(
            "biography",
            request.biography.as_deref(),
            BIOGRAPHY_MAX_CHARS,
        )?,
        city: optional_text("city", request.city.as_deref(), CITY_MAX_CHARS)?,
    };
    let password = Password::parse(request.password)?;
    // After validation, so that a form sent back with a mistake costs no cell; before the hash,
    // which is the expensive part.
    state
        .limits
        .check(Limit::RegisterPerAddress, &address_key(address))
        .await?;
    let hash = state.hasher.hash(password.into_inner()).await?;
    let db = state.db.get().await?;
    let id = sql::insert_user(&db, &user, &hash, false).await?;
    state.db.wrote(id);
    tracing::info!(user_id = %id, "registered user");
    Ok(axum::Json(RegisterResponse {
        user_id: id.to_string(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The user id returned by registration.
    pub id: IdInput,
    #[schema(example = "correct horse battery", min_length = 1, max_length = 256)]
    pub password: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Send it back as `Authorization: Bearer <token>`.
    pub token: String,
}

/// Exchanges a user id and password for a bearer token.
#[utoipa::path(
    post, path = "/login", tag = "users",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "Invalid data or wrong password", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 413, description = "Body over BODY_LIMIT_BYTES", body = ErrorBody),
        (status = 415, description = "Body not sent as application/json", body = ErrorBody),
        (status = 429, description = "Too many logins from this address, or failed logins to this account (RATE_LOGIN_PER_*); see Retry-After", body = ErrorBody),
        (status = 503, description = "Database or hashing saturated; retry later", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(address): ClientIp,
    Json(request): Json<LoginRequest>,
) -> Result<axum::Json<LoginResponse>, ApiError> {
    let id: UserId = request.id.into_text().parse()?;
    // Before the password is looked at, so that concurrent guesses cannot overshoot: a cell of
    // every login limit. Only failures keep theirs (see `RateLimits::check_login`).
    let attempt = state.limits.check_login(id, address).await?;
    if request.password.is_empty() || request.password.chars().count() > PASSWORD_MAX_CHARS {
        return Err(ApiError::bad_request("wrong password"));
    }
    let verdict = async {
        let stored = {
            let db = state.db.get().await?;
            sql::password_hash(&db, id).await?
        };
        match stored {
            Some(stored) => Ok(Some(state.hasher.verify(request.password, stored).await?)),
            None => Ok(None),
        }
    }
    .await;
    match verdict {
        Ok(Some(PasswordVerdict::Match)) => {
            state.limits.login_not_failed(attempt, id, address).await;
            Ok(axum::Json(LoginResponse {
                token: state.tokens.issue(id)?,
            }))
        }
        Ok(Some(PasswordVerdict::Mismatch)) => Err(ApiError::bad_request("wrong password")),
        Ok(None) => Err(ApiError::not_found("user not found")),
        // No verdict (the database or the hashing busy): no failure to count.
        Err(e) => {
            state.limits.login_not_failed(attempt, id, address).await;
            Err(e)
        }
    }
}

/// A user's public profile.
#[utoipa::path(
    get, path = "/user/get/{id}", tag = "users",
    params(("id" = String, Path, description = "User id", pattern = "^[1-9][0-9]{0,17}$")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 400, description = "Not a valid id", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn get_user(
    State(state): State<AppState>,
    Reader(reader): Reader,
    Path(id): Path<UserId>,
) -> Result<Response, ApiError> {
    let db = state.db.key_read(reader).await?;
    let user = sql::find_user(&db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user not found"))?;
    Ok(json_response(user.json()?))
}

/// Default and largest page of search results.
pub const SEARCH_DEFAULT_LIMIT: i64 = 100;
pub const SEARCH_MAX_LIMIT: i64 = 1_000;
/// Deepest result reachable through `offset + limit`; deeper pages would cost a scan per call.
pub const SEARCH_MAX_DEPTH: i64 = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Prefix of the first name (case-insensitive). Required.
    #[param(
        required = true,
        example = "Ан",
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\ufffe\\uffff]*[^\\s\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\ufffe\\uffff][^\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\ufffe\\uffff]*$"
    )]
    pub first_name: Option<String>,
    /// Prefix of the second name (case-insensitive). Required.
    #[param(
        required = true,
        example = "Ив",
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\ufffe\\uffff]*[^\\s\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\ufffe\\uffff][^\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\ufffe\\uffff]*$"
    )]
    pub last_name: Option<String>,
    /// Page size, at least 1 (default 100); past 1000, a page of 1000.
    /// A whole number, however written (`10`, `10.0`, `1e1`).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub limit: Option<Whole>,
    /// Results to skip (default 0); `offset` plus the page (at most 1000) may not exceed 10000.
    /// A whole number, however written (`10`, `10.0`, `1e1`).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 9999)]
    pub offset: Option<Whole>,
}

/// Users whose first and second names start with the given prefixes, ordered by id.
#[utoipa::path(
    get, path = "/user/search", tag = "users",
    params(SearchQuery),
    responses(
        (status = 200, description = "Matching users, ordered by id", body = Vec<User>),
        (status = 400, description = "Missing or invalid parameter", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry later", body = ErrorBody),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    Reader(reader): Reader,
    Query(query): Query<SearchQuery>,
) -> Result<Response, ApiError> {
    let first = NamePrefix::parse("first_name", query.first_name.as_deref())?;
    let second = NamePrefix::parse("last_name", query.last_name.as_deref())?;
    let limit = query.limit.map_or(SEARCH_DEFAULT_LIMIT, |w| w.0);
    let offset = query.offset.map_or(0, |w| w.0);
    if limit < 1 {
        return Err(ApiError::bad_request("limit must be at least 1"));
    }
    // Past the cap, a page of the cap (API.md).
    let limit = limit.min(SEARCH_MAX_LIMIT);
    if offset < 0 || offset > SEARCH_MAX_DEPTH - limit {
        return Err(ApiError::bad_request(format!(
            "offset must be at least 0 and offset + limit at most {SEARCH_MAX_DEPTH}"
        )));
    }
    let db = state.db.pooled_read(reader).await?;
    let users = sql::search_users(&db, &first, &second, limit, offset).await?;
    Ok(json_response(sql::UserRow::page_json(&users)?))
}
