//! Another service of the deployment, reached over HTTP (the dialog service of `DIALOGS_URL`):
//! one pooled HTTP/1.1 client whose connections are kept alive between requests, one time limit
//! over a whole exchange, and errors that only say the other side is away or slow, which the
//! caller answers 503. An answer's body is handed on as it arrives ([`AnswerBody`]), never
//! gathered whole: a page of a megabyte costs the forwarding service a buffer, not a megabyte.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::http::uri::{Authority, Scheme};
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Idle kept-alive connections are closed after this, before the other side's own idle timeout
/// (`HEADER_READ_TIMEOUT_MS`, 10 s by default) could close one as a request is sent on it.
const IDLE: Duration = Duration::from_secs(5);
/// The longest an answer's body may take to pass through, however steadily it comes: it moves
/// at the pace the client reads it, and a page is at most a few megabytes.
const BODY_TIME: Duration = Duration::from_secs(60);

/// A service at a base URL. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct Upstream(Arc<Inner>);

struct Inner {
    client: Client<HttpConnector, Full<Bytes>>,
    scheme: Scheme,
    authority: Authority,
    url: String,
    timeout: Duration,
    /// Its name in logs and metrics.
    name: &'static str,
}

#[derive(Debug, thiserror::Error)]
#[error("{url} is not an http://host:port URL{why}")]
pub struct InvalidUpstream {
    url: String,
    why: String,
}

/// Why an exchange did not happen. Both mean "away or overloaded": retry later.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the {name} service did not answer within {ms} ms")]
    Timeout { name: &'static str, ms: u128 },
    #[error("the {name} service is unreachable: {why}")]
    Unreachable { name: &'static str, why: String },
}

impl Upstream {
    /// The service `name` at `url` (`http://host:port`, nothing after the port but an optional
    /// `/`), each exchange limited to `timeout`.
    pub fn new(name: &'static str, url: &str, timeout: Duration) -> Result<Self, InvalidUpstream> {
        let invalid = |why: &str| InvalidUpstream {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let uri: Uri = url.trim().parse().map_err(|_| invalid(""))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(invalid(" (only http:// is spoken)"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid(" (no path: requests keep theirs)"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| invalid(""))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE)
            .build(connector);
        Ok(Upstream(Arc::new(Inner {
            client,
            scheme: Scheme::HTTP,
            url: format!("http://{authority}"),
            authority,
            timeout,
            name,
        })))
    }

    pub fn url(&self) -> &str {
        &self.0.url
    }

    pub fn name(&self) -> &'static str {
        self.0.name
    }

    /// Sends `request` (its path and query; its scheme and host are replaced by the service's)
    /// and gives the answer once its head is in, within the time limit; its body follows as it
    /// arrives (see [`AnswerBody`]). A request whose pooled connection turned out closed before
    /// it was written is sent again on a new one (never one that may have been received).
    pub async fn send(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<AnswerBody>, UpstreamError> {
        let inner = &self.0;
        let (mut parts, body) = request.into_parts();
        let mut uri = Uri::builder()
            .scheme(inner.scheme.clone())
            .authority(inner.authority.clone());
        if let Some(path) = parts.uri.path_and_query() {
            uri = uri.path_and_query(path.clone());
        }
        parts.uri = uri.build().map_err(|e| self.unreachable(e))?;
        let request = Request::from_parts(parts, Full::new(body));
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + inner.timeout;
        let outcome = match tokio::time::timeout_at(deadline, inner.client.request(request)).await {
            Ok(Ok(response)) => Ok(response.map(|body| AnswerBody {
                body,
                quiet: Box::pin(tokio::time::sleep(inner.timeout)),
                done_by: Box::pin(tokio::time::sleep(BODY_TIME)),
                name: inner.name,
                timeout: inner.timeout,
            })),
            Ok(Err(e)) => Err(self.unreachable(Chain(&e))),
            Err(_) => Err(UpstreamError::Timeout {
                name: inner.name,
                ms: inner.timeout.as_millis(),
            }),
        };
        let label = match &outcome {
            Ok(_) => "answered",
            Err(UpstreamError::Timeout { .. }) => "timeout",
            Err(UpstreamError::Unreachable { .. }) => "unreachable",
        };
        metrics::counter!("upstream_requests_total", "service" => inner.name, "outcome" => label)
            .increment(1);
        // To the answer's head: its body streams on to the client (a body that fails on the way
        // counts as `body_failed`).
        metrics::histogram!("upstream_request_seconds", "service" => inner.name)
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    fn unreachable(&self, why: impl fmt::Display) -> UpstreamError {
        UpstreamError::Unreachable {
            name: self.0.name,
            why: why.to_string(),
        }
    }
}

/// The body of an answer, frame by frame as it arrives, at the pace the client takes it. It
/// fails (the client's answer is then cut off, as a broken connection would cut it) when the other
/// service sends nothing for the exchange's time limit while more is wanted, or when it has not
/// all passed within [`BODY_TIME`].
#[derive(Debug)]
pub struct AnswerBody {
    body: Incoming,
    /// Re-armed at every frame.
    quiet: Pin<Box<tokio::time::Sleep>>,
    done_by: Pin<Box<tokio::time::Sleep>>,
    name: &'static str,
    timeout: Duration,
}

impl AnswerBody {
    fn failed(&self, error: UpstreamError) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        metrics::counter!("upstream_requests_total", "service" => self.name, "outcome" => "body_failed")
            .increment(1);
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let timeout = self.timeout;
                self.quiet
                    .as_mut()
                    .reset(tokio::time::Instant::now() + timeout);
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => {
                let name = self.name;
                return self.failed(UpstreamError::Unreachable {
                    name,
                    why: e.to_string(),
                });
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let quiet = self.quiet.as_mut().poll(cx).is_ready();
        if quiet || self.done_by.as_mut().poll(cx).is_ready() {
            let error = UpstreamError::Timeout {
                name: self.name,
                ms: if quiet { self.timeout } else { BODY_TIME }.as_millis(),
            };
            return self.failed(error);
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An error with its causes, which hyper's errors keep apart ("client error (Connect)": refused
/// by whom is the source's).
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_http_base_url_is_taken() {
        let second = Duration::from_secs(1);
        let upstream = Upstream::new("dialogs", "http://127.0.0.1:8001/", second)
            .expect("a base URL is valid");
        assert_eq!(upstream.url(), "http://127.0.0.1:8001");
        for bad in [
            "127.0.0.1:8001",
            "https://127.0.0.1:8001",
            "http://127.0.0.1:8001/dialog",
            "http://127.0.0.1:8001/?a=1",
            "",
            "http://",
        ] {
            assert!(
                Upstream::new("dialogs", bad, second).is_err(),
                "{bad} was taken"
            );
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_and_a_silent_one_a_timeout() {
        // A listener that never answers: the exchange hits the time limit.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let upstream = Upstream::new("dialogs", &url, Duration::from_millis(200)).unwrap();
        let request = || Request::get("/health").body(Bytes::new()).unwrap();
        let started = Instant::now();
        let error = upstream.send(request()).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Timeout { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // The same port once closed: refused at once.
        drop(silent);
        let error = upstream.send(request()).await.unwrap_err();
        assert!(
            matches!(error, UpstreamError::Unreachable { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("dialogs"), "{error}");
    }

    /// A service on a free port that answers its first request with `parts`, each written
    /// after the pause before it; its URL.
    async fn answering(parts: Vec<(Duration, &'static [u8])>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await.unwrap();
            for (pause, part) in parts {
                tokio::time::sleep(pause).await;
                if socket.write_all(part).await.is_err() {
                    return;
                }
            }
        });
        url
    }

    fn page_request() -> Request<Bytes> {
        Request::get("/page").body(Bytes::new()).unwrap()
    }

    /// An answer is handed on as it arrives: its head before its body is all there, and what
    /// is there of the body at once. (Gathering the whole answer first held every forwarded
    /// page in memory, 24 MB for the largest.)
    #[tokio::test]
    async fn an_answer_streams_on_before_its_body_is_all_there() {
        let url = answering(vec![
            (
                Duration::ZERO,
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfirst",
            ),
            (Duration::from_millis(1_500), b"-last"),
        ])
        .await;
        let upstream = Upstream::new("dialogs", &url, Duration::from_secs(5)).unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(1), upstream.send(page_request()))
            .await
            .expect("the head came before the whole body")
            .unwrap();
        let mut body = answer.into_body();
        let first = http_body_util::BodyExt::frame(&mut body)
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!(&first[..], b"first");
        let rest = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&rest[..], b"-last");
    }

    /// A body that stops coming fails after the exchange's time limit of silence instead of
    /// holding on.
    #[tokio::test]
    async fn a_body_that_stops_coming_fails_after_the_time_limit() {
        let url = answering(vec![
            (
                Duration::ZERO,
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfirst",
            ),
            (Duration::from_secs(30), b"-last"),
        ])
        .await;
        let upstream = Upstream::new("dialogs", &url, Duration::from_millis(300)).unwrap();
        let answer = upstream.send(page_request()).await.unwrap();
        let started = Instant::now();
        let error = http_body_util::BodyExt::collect(answer.into_body())
            .await
            .unwrap_err();
        assert!(matches!(error, UpstreamError::Timeout { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// A body read slowly by the client takes as long as it takes: the limit is on the other
    /// service's silence, not on the client's pace.
    #[tokio::test]
    async fn a_body_read_slowly_is_not_cut_while_it_keeps_coming() {
        let pause = Duration::from_millis(150);
        let url = answering(vec![
            (
                Duration::ZERO,
                b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n",
            ),
            (Duration::ZERO, b"ab"),
            (pause, b"cd"),
            (pause, b"ef"),
        ])
        .await;
        let upstream = Upstream::new("dialogs", &url, Duration::from_millis(300)).unwrap();
        let mut body = upstream.send(page_request()).await.unwrap().into_body();
        let mut got = Vec::new();
        // The client takes each frame long after the whole exchange's 300 ms.
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(got, b"abcdef");
    }
}
