//! A request body that its handler answered without reading to the end (a 401 for a bad token,
//! a 400 for a bad path id) is read here before the answer goes out, so that the connection can
//! carry the next request.
//!
//! Left unread, hyper gives up reading the connection and closes it after the answer, without
//! `Connection: close`, and with the rest of the body still arriving: the kernel then resets the
//! connection. A balancer still writing that body (nginx) sees a broken upstream, counts it as a
//! dead instance and answers 502; one that pooled the connection finds it closed under its next
//! request. Here the rest is read, up to the body limit and [`DRAIN_TIME`]; a body that is larger
//! (by its `Content-Length`), slower, or awaited with `Expect: 100-continue` is not read, and the
//! answer says `Connection: close` instead: the serving loop then lets the client finish writing
//! before it closes (`super::serve`'s lingering close).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

/// The longest an answer waits for the rest of a body its handler did not read.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);

/// What a handler may leave of its request's body, to be read before the answer goes out.
pub struct Unread {
    rest: oneshot::Receiver<Body>,
    /// Whether the rest may be read: not over `limit` by its length, not awaited by the client.
    readable: bool,
    /// The body limit (`BODY_LIMIT_BYTES`): no more than that is read for a connection's sake.
    limit: usize,
}

/// Hands the handler the request's body through [`Watched`], so that what it leaves unread comes
/// back; `None` for a request without a body (every GET), which needs nothing.
pub fn watch(request: Request, limit: usize) -> (Request, Option<Unread>) {
    if request.body().is_end_stream() {
        return (request, None);
    }
    let readable = !expects_continue(request.headers())
        && declared_length(request.headers()).is_none_or(|length| length <= limit as u64);
    let (parts, body) = request.into_parts();
    let (left_over, rest) = oneshot::channel();
    let watched = Watched {
        body: Some(body),
        ended: false,
        left_over: Some(left_over),
    };
    let request = Request::from_parts(parts, Body::new(watched));
    (
        request,
        Some(Unread {
            rest,
            readable,
            limit,
        }),
    )
}

impl Unread {
    /// Once the handler has answered: reads what it left of the body, or, when that cannot be
    /// read (too large, too slow, not sent yet), has the answer close the connection.
    pub async fn finish(mut self, response: &mut Response) {
        // Dropped unsent: the handler read the body to its end, or still holds it.
        let Ok(rest) = self.rest.try_recv() else {
            return;
        };
        let drained = self.readable
            && tokio::time::timeout(DRAIN_TIME, read_to_end(rest, self.limit))
                .await
                .unwrap_or(false);
        if !drained {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// Whether the client waits for `100 Continue` before sending its body: reading would ask for a
/// body that the answer already refused.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

/// Reads and drops the rest of a body; whether it ended within `limit` bytes.
async fn read_to_end(mut body: Body, limit: usize) -> bool {
    let mut read = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return false;
        };
        if let Some(data) = frame.data_ref() {
            read += data.len();
            if read > limit {
                return false;
            }
        }
    }
    true
}

/// The body as the handler sees it; when dropped before its end, what is left of it goes back
/// to its [`Unread`].
struct Watched {
    body: Option<Body>,
    ended: bool,
    left_over: Option<oneshot::Sender<Body>>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |body| body.size_hint())
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if let (Some(body), Some(left_over)) = (self.body.take(), self.left_over.take()) {
            if !body.is_end_stream() {
                let _ = left_over.send(body);
            }
        }
    }
}
