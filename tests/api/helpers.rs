//! `spawn_app()`: a real server on a free port, backed by a fresh PostgreSQL database that is
//! dropped when the test ends, and the guards and waits the tests share.

use std::future::Future;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use socialnet::config::{Config, DatabaseUrl, DbConfig, LogFormat};
use socialnet::Application;

/// The server every test database lives on; its `postgres` database must be reachable.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub database_url: String,
    pub config: Config,
    /// Held by the first instance on a database: dropping it drops the database. Peers on the
    /// same database hold none.
    _database: Option<DatabaseGuard>,
}

/// The first column of every row a query returns.
pub async fn first_column<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    db: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<T> {
    db.query(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// What the lab tools get in these tests: a small pool and no statement timeout.
pub fn lab_db_config(database_url: &str) -> DbConfig {
    DbConfig {
        db_pool_size: Some(2),
        db_pool_timeout_ms: 5_000,
        db_statement_timeout_ms: 0,
        ..test_config(database_url).db
    }
}

/// The library's test settings (`Config::for_tests`) on this database.
pub fn test_config(database_url: &str) -> Config {
    Config::for_tests(parse_url(database_url))
}

pub fn parse_url(url: &str) -> DatabaseUrl {
    url.parse()
        .unwrap_or_else(|e| panic!("{url} is not a valid URL: {e}"))
}

/// Drops its database when it goes out of scope: at the end of a test, and also when the test
/// fails halfway (a panic unwinds through it).
pub struct DatabaseGuard(DatabaseUrl);

impl DatabaseGuard {
    pub fn new(url: &str) -> Self {
        DatabaseGuard(parse_url(url))
    }
}

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        let url = self.0.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; use a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            if let Err(e) = runtime.block_on(socialnet::db::drop_database(&url)) {
                eprintln!("could not drop test database: {e:#}");
            }
        })
        .join();
    }
}

/// A process a test started, killed when the test ends however it ends.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Redis of a test's own, on a port of its own, so that the test can stop and restart it;
/// without persistence, so a restart empties it, as a crash of the shared one would.
pub struct OwnRedis {
    pub port: u16,
    process: Option<ChildGuard>,
}

impl OwnRedis {
    pub async fn start() -> OwnRedis {
        let mut redis = OwnRedis {
            port: free_port(),
            process: None,
        };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        // Dropping the guard kills the process and waits for it.
        self.process = None;
    }

    /// Stops it if it runs, starts it again (empty) and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        self.process = Some(ChildGuard(
            std::process::Command::new("redis-server")
                .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
                .args(["--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server is installed"),
        ));
        let port = self.port;
        eventually(Duration::from_secs(5), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(drop)
                .map_err(|e| format!("redis-server on {port}: {e}"))
        })
        .await;
    }
}

/// Calls `check` until it succeeds, at growing intervals (10 ms to 100 ms), for at most
/// `timeout`; past it, panics with what `check` last said. For whatever happens asynchronously
/// (fan-out, relays, health checks).
pub async fn eventually<T, Fut>(timeout: Duration, mut check: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("not within {timeout:?}: {last}")
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
    }
}

/// A unique database URL on the test server.
pub fn fresh_database_url() -> String {
    let name = format!("socialnet_test_{}", uuid::Uuid::new_v4().simple());
    let base = server_url();
    let (without_query, query) = base
        .split_once('?')
        .map_or((base.as_str(), ""), |(a, b)| (a, b));
    let cut = without_query.rfind('/').expect("URL has a path");
    let mut url = format!("{}/{}", &without_query[..cut], name);
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Config)) -> TestApp {
    // TEST_LOG=1 shows the server's logs (RUST_LOG filters them).
    if std::env::var_os("TEST_LOG").is_some() {
        drop(socialnet::telemetry::init(
            LogFormat::Text,
            "socialnet-tests",
        ));
    }
    let database_url = fresh_database_url();
    let mut config = test_config(&database_url);
    customise(&mut config);
    start(config, &database_url, true).await
}

/// An app on the database at `database_url` (created if needed, dropped at the end).
pub async fn spawn_app_on(database_url: &str, customise: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(database_url);
    customise(&mut config);
    start(config, database_url, true).await
}

/// The HTTP client of a test: a timeout long enough for a slow machine, never a hang.
fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A loopback port that is free now (for a process the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(config: Config, database_url: &str, owns_database: bool) -> TestApp {
    let database_url = database_url.to_owned();
    // Taken before the build: a database created by a build that then fails is dropped too.
    let database = owns_database.then(|| DatabaseGuard::new(&database_url));
    let app = Application::build(config.clone())
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        address,
        client: test_client(),
        database_url,
        config,
        _database: database,
    }
}

impl TestApp {
    /// A second instance with the same configuration, on the same database.
    pub async fn spawn_peer(&self) -> TestApp {
        start(self.config.clone(), &self.database_url, false).await
    }

    /// A server some other way started (a process of the binary, say) at `address`, on
    /// `database_url`, which the caller keeps and drops.
    pub fn at(address: String, database_url: &str) -> TestApp {
        TestApp {
            address,
            client: test_client(),
            database_url: database_url.to_owned(),
            config: test_config(database_url),
            _database: None,
        }
    }

    /// Another server on the same database, configured from this one's settings by `customise`
    /// (another service of the deployment, say).
    pub async fn spawn_beside(&self, customise: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = self.config.clone();
        customise(&mut config);
        start(config, &self.database_url, false).await
    }
}

/// The broker the tests use (`TEST_AMQP_URL`).
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// Sends the app's events through RabbitMQ at `url`, under names of its own that the broker
/// removes once the test has left them unused for a minute.
pub fn use_broker(config: &mut Config, url: &str) {
    config.broker.amqp_url = Some(url.to_owned());
    config.broker.amqp_prefix = database_name(config);
    config.broker.amqp_queue_expires_ms = 60_000;
}

/// The test's database name: unique, so also a prefix for its keys and queue names.
pub fn database_name(config: &Config) -> String {
    config
        .db
        .database()
        .expect("a test database is named")
        .to_owned()
}

/// A registration body with sane defaults, to be tweaked per test.
pub fn registration(first: &str, second: &str) -> Value {
    json!({
        "first_name": first,
        "second_name": second,
        "birthdate": "1990-05-17",
        "biography": "чтение, походы",
        "city": "Москва",
        "password": "correct horse battery",
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// A GET that must answer 200, its JSON body read as `T`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn register(&self, body: &Value) -> Response {
        self.post_json("/user/register", body).await
    }

    /// Registers a user with the default password and returns its id.
    pub async fn register_user(&self, first: &str, second: &str) -> String {
        let response = self.register(&registration(first, second)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["user_id"]
            .as_str()
            .expect("user_id is a string")
            .to_owned()
    }

    pub async fn login(&self, id: &str, password: &str) -> Response {
        self.post_json("/login", &json!({"id": id, "password": password}))
            .await
    }
}

/// Asserts the contract's error shape and status, returning the message.
pub async fn assert_error(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status, "unexpected status");
    let header_id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id echoed")
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["code"], json!(status.as_u16()));
    assert_eq!(body["request_id"], json!(header_id));
    let message = body["message"].as_str().expect("message is a string");
    assert!(!message.is_empty());
    message.to_owned()
}

/// A registered user and a token of theirs.
pub struct TestUser {
    pub id: String,
    pub token: String,
}

impl TestApp {
    pub async fn user(&self, first: &str, second: &str) -> TestUser {
        let id = self.register_user(first, second).await;
        self.logged_in(&id, "correct horse battery").await
    }

    /// An existing user (say, a generated one), logged in.
    pub async fn logged_in(&self, id: &str, password: &str) -> TestUser {
        let response = self.login(id, password).await;
        assert_eq!(response.status(), StatusCode::OK);
        let token = response.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        TestUser {
            id: id.to_owned(),
            token,
        }
    }

    pub async fn put_as(&self, user: &TestUser, path: &str, body: Option<&Value>) -> Response {
        let request = self.client.put(self.url(path)).bearer_auth(&user.token);
        match body {
            Some(body) => request.json(body),
            None => request,
        }
        .send()
        .await
        .unwrap()
    }

    pub async fn get_as(&self, user: &TestUser, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn follow(&self, follower: &TestUser, author: &TestUser) {
        let response = self
            .put_as(follower, &format!("/friend/set/{}", author.id), None)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// A valid token for any id, signed with the secret the server keeps in its database: what
    /// a user holds whose account was deleted after logging in.
    pub async fn token_for(&self, user: i64) -> String {
        let secret = socialnet::auth::secret::stored_secret(&self.db().await)
            .await
            .unwrap()
            .expect("the server made its secret");
        socialnet::auth::TokenKeys::new(&secret, Duration::from_secs(60))
            .issue(socialnet::users::UserId(user))
            .unwrap()
    }

    pub async fn unfollow(&self, follower: &TestUser, author: &TestUser) {
        let response = self
            .put_as(follower, &format!("/friend/delete/{}", author.id), None)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// Creates a post and returns its id.
    pub async fn post(&self, author: &TestUser, text: &str) -> String {
        let response = self
            .client
            .post(self.url("/post/create"))
            .bearer_auth(&author.token)
            .json(&json!({ "text": text }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<String>().await.unwrap()
    }

    /// The texts of a feed page.
    pub async fn feed_texts(&self, reader: &TestUser, query: &str) -> Vec<String> {
        let response = self.get_as(reader, &format!("/post/feed?{query}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        response
            .json::<Vec<Value>>()
            .await
            .unwrap()
            .iter()
            .map(|p| p["text"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl TestApp {
    /// A connection of its own to this app's database.
    pub async fn db(&self) -> tokio_postgres::Client {
        socialnet::db::connect(&self.database_url.parse().unwrap())
            .await
            .unwrap()
    }

    pub fn database_name(&self) -> String {
        self.database_url.rsplit('/').next().unwrap().to_owned()
    }

    /// Cuts the server off from its database: new connections refused, open ones killed.
    /// Returns the admin connection that `restore_database` needs.
    pub async fn cut_off_database(&self) -> tokio_postgres::Client {
        let admin = socialnet::db::connect(&server_url().parse().unwrap())
            .await
            .unwrap();
        let name = self.database_name();
        admin
            .batch_execute(&format!(
                "alter database \"{name}\" allow_connections false"
            ))
            .await
            .unwrap();
        admin
            .execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1",
                &[&name],
            )
            .await
            .unwrap();
        admin
    }

    pub async fn restore_database(&self, admin: &tokio_postgres::Client) {
        admin
            .batch_execute(&format!(
                "alter database \"{}\" allow_connections true",
                self.database_name()
            ))
            .await
            .unwrap();
    }

    /// The profile of a user, registered with `body`, as the API returns it.
    pub async fn register_and_read(&self, body: &Value) -> Value {
        let response = self.register(body).await;
        assert_eq!(response.status(), StatusCode::OK);
        let id = response.json::<Value>().await.unwrap()["user_id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.get_json(&format!("/user/get/{id}")).await
    }
}

/// Runs `node tests/browser/SCRIPT ARGS…` (headless Chromium through playwright-core, which
/// scripts/test.sh installs there) and gives the one JSON line it prints; panics with its output
/// when it fails. It blocks: from an async test, call it in `spawn_blocking`.
pub fn browser_script(script: &str, args: &[&str]) -> Value {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run scripts/test.sh (npm ci in tests/browser)"
    );
    let output = std::process::Command::new("node")
        .current_dir(&dir)
        .arg(script)
        .args(args)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}
