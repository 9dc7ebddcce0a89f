//! What a benchmark sends: one scenario per kind of operation, fed with real data from the database.

use std::fmt;
use std::str::FromStr;

use anyhow::Context;
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::Rng;

use crate::lab::fake::{UserFaker, LAB_PASSWORD};

/// One kind of operation to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    UserGet,
    UserSearch,
    Login,
    Register,
    Feed,
    PostCreate,
    /// Followers on websockets, their author posting; delivery latency from the create response.
    WsFanout,
    /// A celebrity with many followers (some on websockets) posting in bursts, another author
    /// posting meanwhile; that other post's latency, and the burst's (see burst.rs).
    WsBurst,
    /// A message from one of the token users to a random user.
    DialogSend,
    /// The latest 20 messages of an existing dialog of one of the token users.
    DialogList,
}

impl Scenario {
    pub const ALL: [Scenario; 10] = [
        Scenario::UserGet,
        Scenario::UserSearch,
        Scenario::Login,
        Scenario::Register,
        Scenario::Feed,
        Scenario::PostCreate,
        Scenario::WsFanout,
        Scenario::WsBurst,
        Scenario::DialogSend,
        Scenario::DialogList,
    ];

    /// Whether requests carry a token (obtained before the measured window).
    pub fn needs_tokens(self) -> bool {
        matches!(
            self,
            Scenario::Feed | Scenario::PostCreate | Scenario::DialogSend | Scenario::DialogList
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::UserGet => "user-get",
            Scenario::UserSearch => "user-search",
            Scenario::Login => "login",
            Scenario::Register => "register",
            Scenario::Feed => "feed",
            Scenario::PostCreate => "post-create",
            Scenario::WsFanout => "ws-fanout",
            Scenario::WsBurst => "ws-burst",
            Scenario::DialogSend => "dialog-send",
            Scenario::DialogList => "dialog-list",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {s:?}; known: {}", known.join(", "))
            })
    }
}

/// A request to send: method, path with query, optional JSON body and bearer token.
#[derive(Clone)]
pub struct PlannedRequest {
    pub post: bool,
    pub path: String,
    pub body: Option<Bytes>,
    pub token: Option<String>,
}

/// The data requests are drawn from, read once before any load is sent.
pub struct Workload {
    scenario: Scenario,
    ids: Vec<i64>,
    search_queries: Vec<String>,
    /// Tokens of `ids` (same order), for scenarios that need them.
    pub tokens: Vec<String>,
    /// The other party of each dialog request: by index into `ids` for `dialog-list` (each
    /// token user's existing dialog), any user for `dialog-send`.
    partners: Vec<i64>,
}

/// How many distinct ids or prefix pairs are sampled from the database.
const SAMPLE: i64 = 20_000;
/// How many users act in scenarios that need tokens.
pub const TOKEN_USERS: i64 = 200;

impl Workload {
    /// Samples ids and prefix pairs of existing users so that requests hit real data.
    pub async fn load(scenario: Scenario, db: &tokio_postgres::Client) -> anyhow::Result<Self> {
        let mut workload = Workload {
            scenario,
            ids: Vec::new(),
            search_queries: Vec::new(),
            tokens: Vec::new(),
            partners: Vec::new(),
        };
        // Register needs no data; the websocket scenarios prepare their own.
        if matches!(
            scenario,
            Scenario::Register | Scenario::WsFanout | Scenario::WsBurst
        ) {
            return Ok(workload);
        }
        let row = db
            .query_one("select min(id), max(id) from users", &[])
            .await
            .context("reading user ids (has `socialnet fake users` run?)")?;
        let (Some(min), Some(max)): (Option<i64>, Option<i64>) = (row.get(0), row.get(1)) else {
            anyhow::bail!("the users table is empty: run `socialnet fake users` first");
        };
        let mut rng = rand::thread_rng();
        let candidates: Vec<i64> = (0..SAMPLE).map(|_| rng.gen_range(min..=max)).collect();
        let rows = db
            .query(
                "select id, first_name, second_name from users where id = any($1)",
                &[&candidates],
            )
            .await?;
        anyhow::ensure!(!rows.is_empty(), "no users found to benchmark with");
        if scenario == Scenario::Feed {
            // Readers whose feed is not empty: users who follow someone.
            let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            let readers: Vec<i64> = db
                .query(
                    "select distinct user_id from friends where user_id = any($1) limit $2",
                    &[&ids, &TOKEN_USERS],
                )
                .await
                .context("reading follows (has `socialnet fake social` run?)")?
                .iter()
                .map(|r| r.get(0))
                .collect();
            anyhow::ensure!(
                !readers.is_empty(),
                "nobody follows anybody: run `socialnet fake social` first"
            );
            workload.ids = readers;
            return Ok(workload);
        }
        if scenario == Scenario::DialogList {
            // Existing dialogs, from a random point of the key space: (one party, the other).
            let start: i64 = rng.gen();
            let mut pairs = db
                .query(
                    "select user_low, user_high from dialogs where dialog_id >= $1 order by dialog_id limit $2",
                    &[&start, &TOKEN_USERS],
                )
                .await?;
            if (pairs.len() as i64) < TOKEN_USERS {
                pairs.extend(
                    db.query(
                        "select user_low, user_high from dialogs order by dialog_id limit $1",
                        &[&(TOKEN_USERS - pairs.len() as i64)],
                    )
                    .await?,
                );
            }
            anyhow::ensure!(
                !pairs.is_empty(),
                "there are no dialogs: run `socialnet fake dialogs` first"
            );
            workload.ids = pairs.iter().map(|r| r.get(0)).collect();
            workload.partners = pairs.iter().map(|r| r.get(1)).collect();
            return Ok(workload);
        }
        if scenario == Scenario::DialogSend {
            workload.partners = rows.iter().map(|r| r.get(0)).collect();
        }
        if matches!(scenario, Scenario::PostCreate | Scenario::DialogSend) {
            workload.ids = rows
                .iter()
                .take(TOKEN_USERS as usize)
                .map(|r| r.get(0))
                .collect();
            return Ok(workload);
        }
        for row in &rows {
            workload.ids.push(row.get(0));
            let first: String = row.get(1);
            let second: String = row.get(2);
            // Prefixes of two or three characters, as people type them.
            let first: String = first.chars().take(rng.gen_range(2..=3)).collect();
            let second: String = second.chars().take(rng.gen_range(2..=3)).collect();
            workload.search_queries.push(format!(
                "/user/search?first_name={}&last_name={}",
                percent_encode(&first),
                percent_encode(&second)
            ));
        }
        Ok(workload)
    }

    /// The next request of this scenario.
    /// The user ids whose tokens the scenario needs.
    pub fn token_users(&self) -> &[i64] {
        if self.scenario.needs_tokens() {
            &self.ids
        } else {
            &[]
        }
    }

    pub fn next(&self, rng: &mut SmallRng, faker: &mut Option<UserFaker>) -> PlannedRequest {
        match self.scenario {
            Scenario::UserGet => PlannedRequest {
                post: false,
                path: format!("/user/get/{}", self.ids[rng.gen_range(0..self.ids.len())]),
                body: None,
                token: None,
            },
            Scenario::UserSearch => PlannedRequest {
                post: false,
                path: self.search_queries[rng.gen_range(0..self.search_queries.len())].clone(),
                body: None,
                token: None,
            },
            // Driven by fanout.rs and burst.rs, never through this request loop.
            Scenario::WsFanout | Scenario::WsBurst => PlannedRequest {
                post: false,
                path: "/health".to_owned(),
                body: None,
                token: None,
            },
            Scenario::Feed => PlannedRequest {
                post: false,
                path: "/post/feed?offset=0&limit=10".to_owned(),
                body: None,
                token: Some(self.tokens[rng.gen_range(0..self.tokens.len())].clone()),
            },
            Scenario::PostCreate => {
                let text = format!("lab post {}", rng.gen::<u32>());
                PlannedRequest {
                    post: true,
                    path: "/post/create".to_owned(),
                    body: Some(Bytes::from(serde_json::json!({ "text": text }).to_string())),
                    token: Some(self.tokens[rng.gen_range(0..self.tokens.len())].clone()),
                }
            }
            Scenario::DialogSend => {
                let sender = rng.gen_range(0..self.ids.len());
                let pick = rng.gen_range(0..self.partners.len());
                let mut to = self.partners[pick];
                if to == self.ids[sender] {
                    // Not to oneself: the next sampled user instead.
                    to = self.partners[(pick + 1) % self.partners.len()];
                }
                let text = format!("lab message {}", rng.gen::<u32>());
                PlannedRequest {
                    post: true,
                    path: format!("/dialog/{to}/send"),
                    body: Some(Bytes::from(serde_json::json!({ "text": text }).to_string())),
                    token: Some(self.tokens[sender].clone()),
                }
            }
            Scenario::DialogList => {
                let i = rng.gen_range(0..self.ids.len());
                PlannedRequest {
                    post: false,
                    path: format!("/dialog/{}/list?limit=20", self.partners[i]),
                    body: None,
                    token: Some(self.tokens[i].clone()),
                }
            }
            Scenario::Login => {
                let id = self.ids[rng.gen_range(0..self.ids.len())];
                let body = serde_json::json!({"id": id.to_string(), "password": LAB_PASSWORD});
                PlannedRequest {
                    post: true,
                    path: "/login".to_owned(),
                    body: Some(Bytes::from(body.to_string())),
                    token: None,
                }
            }
            Scenario::Register => {
                let faker = faker.get_or_insert_with(|| UserFaker::new(rng.gen(), 0.7));
                let user = faker.next_user();
                registration(&user, &user.biography)
            }
        }
    }
}

/// `POST /user/register` of a generated user (password of `socialnet fake users`), with the
/// biography given.
pub fn registration(user: &crate::lab::fake::FakeUser, biography: &str) -> PlannedRequest {
    let body = serde_json::json!({
        "first_name": user.first_name,
        "second_name": user.second_name,
        "birthdate": user.birthdate.to_string(),
        "biography": biography,
        "city": user.city,
        "password": LAB_PASSWORD,
    });
    PlannedRequest {
        post: true,
        path: "/user/register".to_owned(),
        body: Some(Bytes::from(body.to_string())),
        token: None,
    }
}

/// Percent-encodes everything but unreserved URL characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip() {
        for scenario in Scenario::ALL {
            assert_eq!(scenario.name().parse::<Scenario>().unwrap(), scenario);
        }
        assert!("dialog-sent".parse::<Scenario>().is_err());
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_bytes() {
        assert_eq!(percent_encode("Ан a&b"), "%D0%90%D0%BD%20a%26b");
        assert_eq!(percent_encode("Jo-n_.~"), "Jo-n_.~");
    }
}
