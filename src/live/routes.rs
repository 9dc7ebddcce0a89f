//! `GET /post/feed/posted`: the websocket of the live feed.

use std::time::Duration;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Subscription;
use crate::api::{ApiError, ErrorBody, WebSocketUpgrade};
use crate::ids::UserId;
use crate::state::AppState;

/// How often the server pings; a peer that has not answered by the next ping is closed.
const PING_EVERY: Duration = Duration::from_secs(30);
/// Longest the handshake waits for the broker to route the user's posts to this instance.
const ROUTING_WAIT: Duration = Duration::from_secs(2);
/// Frames from clients carry nothing the server needs; anything larger is refused.
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(feed_posted))
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The live feed: a websocket that receives `{"postId", "postText", "author_user_id"}` for every
/// new post of a user the caller follows. Authenticate with `Authorization: Bearer <token>` or,
/// for browsers, `?token=<token>`; without a valid token the handshake is refused with 401.
#[utoipa::path(
    get, path = "/post/feed/posted", tag = "posts",
    params(("token" = Option<String>, Query, description = "Token, for clients that cannot set headers")),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "Switching to the websocket protocol"),
        (status = 400, description = "Not a websocket handshake", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "The instance holds its most sockets (LIVE_MAX_SOCKETS); retry later", body = ErrorBody),
    )
)]
pub async fn feed_posted(
    State(state): State<AppState>,
    LiveUser(user, expires): LiveUser,
    WebSocketUpgrade(upgrade): WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let subscription = state
        .live
        .subscribe(user)
        .map_err(|full| ApiError::unavailable(full.to_string()))?;
    // Routed here before the handshake completes: a post made right after it reaches this
    // socket. Bounded: with the broker away the socket opens anyway and is routed on reconnect.
    state.events.route_here(user, ROUTING_WAIT).await;
    Ok(upgrade
        // Small buffers: thousands of idle sockets must stay cheap.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve_socket(socket, subscription, expires)))
}

/// The caller of the live feed and when their token expires: the token from `Authorization:
/// Bearer`, or from `?token=` for browsers, which cannot set headers on a websocket. Extracted
/// before the upgrade, so that a missing or bad token is a 401 and no handshake.
pub struct LiveUser(pub UserId, pub SystemTime);

impl FromRequestParts<AppState> for LiveUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            let (user, exp) = state.tokens.verify_header_until(&parts.headers)?;
            return Ok(LiveUser(user, expiry(exp)));
        }
        match parts.uri.query().map(token_from_query) {
            Some(TokenQuery { token: Some(token) }) if !token.is_empty() => {
                let (user, exp) = state.tokens.verify_until(&token)?;
                Ok(LiveUser(user, expiry(exp)))
            }
            _ => Err(ApiError::Unauthorized(
                "missing token: send Authorization: Bearer <token> or ?token=".into(),
            )),
        }
    }
}

fn expiry(exp: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(exp)
}

fn token_from_query(query: &str) -> TokenQuery {
    axum::extract::Query::<TokenQuery>::try_from_uri(
        &format!("/?{query}").parse().unwrap_or_default(),
    )
    .map(|q| q.0)
    .unwrap_or(TokenQuery { token: None })
}

/// Longest a frame may take to leave; a peer that stops reading is closed, not waited for.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

async fn send_within(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// One task owns the socket: it forwards queued frames, answers the peer, pings, and ends when
/// either side goes away, the hub drops it (a client too slow to keep up, or replaced by the
/// user's newer socket), or its token expires (closed with code 1008, "token expired": the
/// client logs in again and reconnects).
async fn serve_socket(mut socket: WebSocket, mut subscription: Subscription, expires: SystemTime) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut awaiting_pong = false;
    let left = expires
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    let expired = tokio::time::sleep(left);
    let mut expired = std::pin::pin!(expired);
    loop {
        tokio::select! {
            () = expired.as_mut() => {
                let close = CloseFrame {
                    code: close_code::POLICY,
                    reason: "token expired".into(),
                };
                send_within(&mut socket, Message::Close(Some(close))).await;
                break;
            }
            frame = subscription.frames.recv() => match frame {
                Some(text) => {
                    if !send_within(&mut socket, Message::Text(text.as_ref().into())).await {
                        break;
                    }
                }
                None => {
                    send_within(&mut socket, Message::Close(None)).await;
                    break;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Pong(_))) => awaiting_pong = false,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if awaiting_pong || !send_within(&mut socket, Message::Ping(Vec::new().into())).await {
                    break;
                }
                awaiting_pong = true;
            }
        }
    }
}
