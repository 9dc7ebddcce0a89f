//! The smallest sound client for Tarantool's binary protocol (IPROTO) that socialnet needs:
//! `CALL` of a stored procedure, with `chap-sha1` authentication, many requests in flight on
//! one connection, a timeout per call, and a new connection after the old one fails.
//!
//! Why not a crate: the Rust clients are young or quiet (`rusty_tarantool`'s last release is of
//! 2022, `tarantool-rs` is at 0.0.x, `tarant` appeared in 2026), and this needs one request
//! kind. The protocol is small and documented: after a 128-byte greeting (a version line and a
//! base64 salt), every packet is a MessagePack length, a header map (request type, `sync`) and a
//! body map. Answers carry the request's `sync`, so one connection carries any number of
//! concurrent calls: a writer task sends them as they come (one write for all that queued up
//! meanwhile), a reader task hands each answer to its caller. When the connection breaks, every
//! call in flight fails with [`TarantoolError::Unavailable`] (a send may or may not have been
//! applied: the caller learns it was not acknowledged), and the next call connects again.
//! MessagePack is encoded and decoded with `rmp`/`rmpv`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rmpv::Value;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Request types and keys of IPROTO.
mod iproto {
    pub const REQUEST_TYPE: u64 = 0x00;
    pub const SYNC: u64 = 0x01;
    pub const TUPLE: u64 = 0x21;
    pub const FUNCTION_NAME: u64 = 0x22;
    pub const USER_NAME: u64 = 0x23;
    pub const DATA: u64 = 0x30;
    pub const ERROR_24: u64 = 0x31;
    pub const AUTH: u64 = 0x07;
    pub const CALL: u64 = 0x0a;
    /// An answer whose type has this bit is an error; the rest is the error's code.
    pub const ERROR_BIT: u64 = 0x8000;
}

/// Longest packet accepted from the server (a page of 1,000 messages of 4,000 characters is
/// about 16 MB at worst).
const MAX_PACKET: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TarantoolError {
    /// Not connected, or the connection broke before the answer.
    #[error("tarantool is unavailable: {0}")]
    Unavailable(String),
    #[error("tarantool did not answer within {0:?}")]
    Timeout(Duration),
    /// The procedure raised an error, or the server refused the request.
    #[error("tarantool error {code}: {message}")]
    Server { code: u64, message: String },
    /// An answer this client cannot read.
    #[error("unexpected answer from tarantool: {0}")]
    Protocol(String),
}

impl TarantoolError {
    /// Whether another try later may succeed: not connected, no answer in time, or a server
    /// that is still loading its data (after a restart), read-only (a replica), or without its
    /// procedures yet (a script that listens before defining them, as `dialogs.lua` did).
    pub fn is_transient(&self) -> bool {
        /// Tarantool's ER_READONLY, ER_NO_SUCH_PROC and ER_LOADING.
        const READONLY: u64 = 7;
        const NO_SUCH_PROC: u64 = 33;
        const LOADING: u64 = 116;
        match self {
            TarantoolError::Unavailable(_) | TarantoolError::Timeout(_) => true,
            TarantoolError::Server { code, .. } => {
                matches!(*code, READONLY | NO_SUCH_PROC | LOADING)
            }
            TarantoolError::Protocol(_) => false,
        }
    }
}

/// One argument of a call.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Int(i64),
    Str(&'a str),
    /// Anything else MessagePack holds (an array of rows, say).
    Value(&'a Value),
}

/// Where and as whom to connect: `TARANTOOL_URL`, `[user[:password]@]host:port`. Its `Debug`
/// hides the password.
#[derive(Clone)]
pub struct Address {
    pub host_port: String,
    /// `None`: the guest user, no authentication.
    pub user: Option<(String, String)>,
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.user {
            Some((user, _)) => write!(f, "{user}:…@{}", self.host_port),
            None => f.write_str(&self.host_port),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.strip_prefix("tarantool://").unwrap_or(s);
        let (user, host_port) = match s.rsplit_once('@') {
            Some((user, rest)) => {
                let (name, password) = user.split_once(':').unwrap_or((user, ""));
                (Some((name.to_owned(), password.to_owned())), rest)
            }
            None => (None, s),
        };
        match host_port.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Address {
                host_port: host_port.to_owned(),
                user,
            }),
            _ => Err(format!(
                "{host_port:?} is not host:port ([user[:password]@]host:port)"
            )),
        }
    }
}

/// A handle on the connection; clones share it.
#[derive(Clone)]
pub struct Tarantool {
    inner: Arc<Inner>,
}

struct Inner {
    address: Address,
    timeout: Duration,
    /// The connection in use; replaced when it breaks.
    current: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

/// An answer to one call: its data, or why not.
type Answer = Result<Value, TarantoolError>;

struct Connection {
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>,
    next_sync: AtomicU64,
    broken: Arc<AtomicBool>,
}

impl Tarantool {
    /// A client for `address`; nothing is connected until the first call.
    pub fn new(address: Address, timeout: Duration) -> Self {
        Tarantool {
            inner: Arc::new(Inner {
                address,
                timeout,
                current: tokio::sync::Mutex::new(None),
            }),
        }
    }

    pub fn address(&self) -> &str {
        &self.inner.address.host_port
    }

    /// Calls a stored function with `args`; its return values, as an array. Each call is
    /// counted in `tarantool_calls_total{function, outcome}` and timed in
    /// `tarantool_call_seconds{function}`.
    pub async fn call(
        &self,
        function: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Vec<Value>, TarantoolError> {
        let started = std::time::Instant::now();
        let answer = self
            .exchange(|sync| call_packet(sync, function, args))
            .await;
        metrics::histogram!("tarantool_call_seconds", "function" => function)
            .record(started.elapsed().as_secs_f64());
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(TarantoolError::Unavailable(_)) => "unavailable",
            Err(TarantoolError::Timeout(_)) => "timeout",
            Err(_) => "error",
        };
        metrics::counter!("tarantool_calls_total", "function" => function, "outcome" => outcome)
            .increment(1);
        match answer? {
            Value::Array(values) => Ok(values),
            other => Err(TarantoolError::Protocol(format!(
                "a call's data is not an array: {other}"
            ))),
        }
    }

    /// One request and its answer, within the timeout.
    async fn exchange(&self, packet: impl FnOnce(u64) -> Vec<u8>) -> Answer {
        let timeout = self.inner.timeout;
        tokio::time::timeout(timeout, async {
            let connection = self.connection().await?;
            connection.request(packet).await
        })
        .await
        .map_err(|_| TarantoolError::Timeout(timeout))?
    }

    /// The connection in use, or a new one when there is none or it broke.
    async fn connection(&self) -> Result<Arc<Connection>, TarantoolError> {
        let mut current = self.inner.current.lock().await;
        if let Some(connection) = current.as_ref() {
            if !connection.broken.load(Ordering::Acquire) {
                return Ok(connection.clone());
            }
        }
        *current = None;
        let connection = Arc::new(Connection::open(&self.inner.address).await?);
        *current = Some(connection.clone());
        Ok(connection)
    }
}

impl Connection {
    async fn open(address: &Address) -> Result<Self, TarantoolError> {
        let unavailable = |e: std::io::Error| TarantoolError::Unavailable(e.to_string());
        let mut stream = TcpStream::connect(&address.host_port)
            .await
            .map_err(unavailable)?;
        let _ = stream.set_nodelay(true);
        let mut greeting = [0u8; 128];
        stream
            .read_exact(&mut greeting)
            .await
            .map_err(unavailable)?;
        if !greeting.starts_with(b"Tarantool ") {
            return Err(TarantoolError::Protocol(format!(
                "{} did not greet as Tarantool",
                address.host_port
            )));
        }
        if let Some((user, password)) = &address.user {
            let salt = salt(&greeting)?;
            let packet = auth_packet(0, user, &scramble(&salt, password));
            stream.write_all(&packet).await.map_err(unavailable)?;
            let (_, answer) = read_packet(&mut stream).await?;
            answer?;
        }
        let (reader, writer) = stream.into_split();
        let (outgoing, queued) = mpsc::unbounded_channel();
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let broken = Arc::new(AtomicBool::new(false));
        tokio::spawn(write_loop(writer, queued, broken.clone()));
        tokio::spawn(read_loop(reader, pending.clone(), broken.clone()));
        Ok(Connection {
            outgoing,
            pending,
            next_sync: AtomicU64::new(1),
            broken,
        })
    }

    async fn request(&self, packet: impl FnOnce(u64) -> Vec<u8>) -> Answer {
        let sync = self.next_sync.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        lock(&self.pending).insert(sync, answer);
        // Dropped, unanswered (a timeout above): forget the call, so that its answer, should it
        // come, is dropped too.
        let _forget = Forget {
            pending: &self.pending,
            sync,
        };
        if self.broken.load(Ordering::Acquire) || self.outgoing.send(packet(sync)).is_err() {
            return Err(TarantoolError::Unavailable("the connection broke".into()));
        }
        answered
            .await
            .unwrap_or_else(|_| Err(TarantoolError::Unavailable("the connection broke".into())))
    }
}

struct Forget<'a> {
    pending: &'a Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    sync: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.sync);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes packets as they come; all that queued up while one was written go out in one write.
async fn write_loop(
    writer: tokio::net::tcp::OwnedWriteHalf,
    mut queued: mpsc::UnboundedReceiver<Vec<u8>>,
    broken: Arc<AtomicBool>,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(packet) = queued.recv().await {
        let mut result = writer.write_all(&packet).await;
        while result.is_ok() {
            match queued.try_recv() {
                Ok(packet) => result = writer.write_all(&packet).await,
                Err(_) => break,
            }
        }
        if result.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
    broken.store(true, Ordering::Release);
}

/// Hands each answer to its call; when the connection ends, fails every call still waiting.
async fn read_loop(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>,
    broken: Arc<AtomicBool>,
) {
    let reason = loop {
        match read_packet(&mut reader).await {
            Ok((sync, answer)) => {
                if let Some(call) = lock(&pending).remove(&sync) {
                    let _ = call.send(answer);
                }
            }
            Err(e) => break e.to_string(),
        }
    };
    broken.store(true, Ordering::Release);
    tracing::warn!(reason, "tarantool connection closed");
    for (_, call) in lock(&pending).drain() {
        let _ = call.send(Err(TarantoolError::Unavailable(reason.clone())));
    }
}

/// Reads one packet: its `sync` and what it says (the body's data, or the error).
async fn read_packet(
    reader: &mut (impl AsyncReadExt + Unpin),
) -> Result<(u64, Answer), TarantoolError> {
    let unavailable = |e: std::io::Error| TarantoolError::Unavailable(e.to_string());
    let marker = reader.read_u8().await.map_err(unavailable)?;
    let length = match marker {
        0x00..=0x7f => marker as usize,
        0xcc => reader.read_u8().await.map_err(unavailable)? as usize,
        0xcd => reader.read_u16().await.map_err(unavailable)? as usize,
        0xce => reader.read_u32().await.map_err(unavailable)? as usize,
        0xcf => reader.read_u64().await.map_err(unavailable)? as usize,
        other => {
            return Err(TarantoolError::Protocol(format!(
                "a packet's length starts with {other:#x}"
            )))
        }
    };
    if length > MAX_PACKET {
        return Err(TarantoolError::Protocol(format!(
            "a packet of {length} bytes"
        )));
    }
    let mut buffer = vec![0u8; length];
    reader.read_exact(&mut buffer).await.map_err(unavailable)?;
    parse_packet(&buffer)
}

fn parse_packet(mut bytes: &[u8]) -> Result<(u64, Answer), TarantoolError> {
    let protocol = |e: rmpv::decode::Error| TarantoolError::Protocol(e.to_string());
    let header = rmpv::decode::read_value(&mut bytes).map_err(protocol)?;
    let body = if bytes.is_empty() {
        Value::Map(Vec::new())
    } else {
        rmpv::decode::read_value(&mut bytes).map_err(protocol)?
    };
    let code = field(&header, iproto::REQUEST_TYPE)
        .and_then(Value::as_u64)
        .ok_or_else(|| TarantoolError::Protocol("an answer without a type".into()))?;
    let sync = field(&header, iproto::SYNC)
        .and_then(Value::as_u64)
        .ok_or_else(|| TarantoolError::Protocol("an answer without a sync".into()))?;
    let answer = if code & iproto::ERROR_BIT != 0 {
        Err(TarantoolError::Server {
            code: code & !iproto::ERROR_BIT,
            message: field(&body, iproto::ERROR_24)
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_owned(),
        })
    } else {
        Ok(field(&body, iproto::DATA)
            .cloned()
            .unwrap_or(Value::Array(Vec::new())))
    };
    Ok((sync, answer))
}

fn field(map: &Value, key: u64) -> Option<&Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_u64() == Some(key))
        .map(|(_, v)| v)
}

/// A packet: its length (always as a 5-byte MessagePack uint32, patched in at the end), then the
/// header and the body.
fn packet(request_type: u64, sync: u64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&[0xce, 0, 0, 0, 0]);
    // Writes into a Vec cannot fail.
    let _ = rmp::encode::write_map_len(&mut out, 2);
    let _ = rmp::encode::write_uint(&mut out, iproto::REQUEST_TYPE);
    let _ = rmp::encode::write_uint(&mut out, request_type);
    let _ = rmp::encode::write_uint(&mut out, iproto::SYNC);
    let _ = rmp::encode::write_uint(&mut out, sync);
    body(&mut out);
    let length = (out.len() - 5) as u32;
    out[1..5].copy_from_slice(&length.to_be_bytes());
    out
}

fn call_packet(sync: u64, function: &str, args: &[Arg<'_>]) -> Vec<u8> {
    packet(iproto::CALL, sync, |out| {
        let _ = rmp::encode::write_map_len(out, 2);
        let _ = rmp::encode::write_uint(out, iproto::FUNCTION_NAME);
        let _ = rmp::encode::write_str(out, function);
        let _ = rmp::encode::write_uint(out, iproto::TUPLE);
        let _ = rmp::encode::write_array_len(out, args.len() as u32);
        for arg in args {
            match arg {
                Arg::Int(n) => {
                    let _ = rmp::encode::write_sint(out, *n);
                }
                Arg::Str(s) => {
                    let _ = rmp::encode::write_str(out, s);
                }
                Arg::Value(v) => {
                    let _ = rmpv::encode::write_value(out, v);
                }
            }
        }
    })
}

fn auth_packet(sync: u64, user: &str, scramble: &[u8; 20]) -> Vec<u8> {
    packet(iproto::AUTH, sync, |out| {
        let _ = rmp::encode::write_map_len(out, 2);
        let _ = rmp::encode::write_uint(out, iproto::USER_NAME);
        let _ = rmp::encode::write_str(out, user);
        let _ = rmp::encode::write_uint(out, iproto::TUPLE);
        let _ = rmp::encode::write_array_len(out, 2);
        let _ = rmp::encode::write_str(out, "chap-sha1");
        let _ = rmp::encode::write_bin(out, scramble);
    })
}

/// The salt of the greeting's second line (base64; its first 20 bytes are used).
fn salt(greeting: &[u8; 128]) -> Result<Vec<u8>, TarantoolError> {
    let line = std::str::from_utf8(&greeting[64..])
        .map_err(|_| TarantoolError::Protocol("the greeting's salt is not text".into()))?;
    let salt = base64::engine::general_purpose::STANDARD
        .decode(line.trim_end_matches([' ', '\n', '\0']))
        .map_err(|e| TarantoolError::Protocol(format!("the greeting's salt: {e}")))?;
    if salt.len() < 20 {
        return Err(TarantoolError::Protocol(
            "the greeting's salt is short".into(),
        ));
    }
    Ok(salt)
}

/// `chap-sha1`: sha1(password) XOR sha1(salt[..20] ++ sha1(sha1(password))).
fn scramble(salt: &[u8], password: &str) -> [u8; 20] {
    let once: [u8; 20] = Sha1::digest(password.as_bytes()).into();
    let twice: [u8; 20] = Sha1::digest(once).into();
    let mut hasher = Sha1::new();
    hasher.update(&salt[..20]);
    hasher.update(twice);
    let salted: [u8; 20] = hasher.finalize().into();
    let mut out = [0u8; 20];
    for i in 0..20 {
        out[i] = once[i] ^ salted[i];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_an_optional_user() {
        let plain: Address = "127.0.0.1:3301".parse().unwrap();
        assert_eq!(plain.host_port, "127.0.0.1:3301");
        assert!(plain.user.is_none());
        let full: Address = "tarantool://socialnet:secret@tarantool:3301"
            .parse()
            .unwrap();
        assert_eq!(full.host_port, "tarantool:3301");
        assert_eq!(full.user, Some(("socialnet".into(), "secret".into())));
        assert!("127.0.0.1".parse::<Address>().is_err());
        assert!(":3301".parse::<Address>().is_err());
    }

    #[test]
    fn a_call_packet_is_its_length_then_header_and_body() {
        let packet = call_packet(7, "dialog_send", &[Arg::Int(-5), Arg::Str("привет")]);
        assert_eq!(packet[0], 0xce);
        let length = u32::from_be_bytes(packet[1..5].try_into().unwrap()) as usize;
        assert_eq!(length, packet.len() - 5);
        let mut rest = &packet[5..];
        let header = rmpv::decode::read_value(&mut rest).unwrap();
        let body = rmpv::decode::read_value(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            field(&header, iproto::REQUEST_TYPE).unwrap().as_u64(),
            Some(iproto::CALL)
        );
        assert_eq!(field(&header, iproto::SYNC).unwrap().as_u64(), Some(7));
        assert_eq!(
            field(&body, iproto::FUNCTION_NAME).unwrap().as_str(),
            Some("dialog_send")
        );
        let args = field(&body, iproto::TUPLE).unwrap().as_array().unwrap();
        assert_eq!(args[0].as_i64(), Some(-5));
        assert_eq!(args[1].as_str(), Some("привет"));
    }

    #[test]
    fn errors_and_data_are_told_apart_by_the_answer_type() {
        let encode = |header: Value, body: Value| {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &header).unwrap();
            rmpv::encode::write_value(&mut out, &body).unwrap();
            out
        };
        let ok = encode(
            Value::Map(vec![(0.into(), 0.into()), (1.into(), 9.into())]),
            Value::Map(vec![(0x30.into(), Value::Array(vec![42.into()]))]),
        );
        let (sync, answer) = parse_packet(&ok).unwrap();
        assert_eq!(sync, 9);
        assert_eq!(answer.unwrap(), Value::Array(vec![42.into()]));
        let failed = encode(
            Value::Map(vec![(0.into(), (0x8000 + 32).into()), (1.into(), 3.into())]),
            Value::Map(vec![(0x31.into(), "boom".into())]),
        );
        match parse_packet(&failed).unwrap() {
            (3, Err(e @ TarantoolError::Server { code: 32, .. })) => {
                assert!(e.to_string().ends_with("boom"));
                assert!(!e.is_transient());
            }
            other => panic!("{other:?}"),
        }
        // Still loading after a restart, or not yet with its procedures: try again later.
        let loading = TarantoolError::Server {
            code: 116,
            message: "Instance bootstrap hasn't finished yet".into(),
        };
        assert!(loading.is_transient());
        let undefined = TarantoolError::Server {
            code: 33,
            message: "Procedure 'dialog_send' is not defined".into(),
        };
        assert!(undefined.is_transient());
    }
}
