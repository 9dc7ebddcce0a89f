//! Unread counters: `GET /dialog/unread` and `PUT /dialog/{user_id}/read` on both roads (in
//! process, and through the outbox and RabbitMQ), and each failure the counters must survive:
//! a duplicated or late event, the broker stopped in the middle of a burst, Redis restarted
//! empty, and a random mix of sends, reads and redeliveries, after which the counters must
//! equal a count made from the messages themselves.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use socialnet::cache::UnreadCounters;
use socialnet::config::{Config, DialogStoreKind};
use socialnet::dialogs::events::DialogEvent;

use crate::broker::publish_events;
use crate::feed_cache::{redis_url, use_redis};
use crate::helpers::{
    amqp_url, assert_error, eventually, spawn_app_with, use_broker, OwnRedis, TestApp, TestUser,
};
use crate::rabbit::RabbitNodes;

/// Counters on Redis at `url`, checked for repairs every 200 ms.
fn use_counters(config: &mut Config, url: &str) {
    use_redis(config, url);
    config.dialogs.unread_reconcile_ms = 200;
}

impl TestApp {
    /// `reader`'s unread counts: (total, other user → unread).
    pub async fn unread(&self, reader: &TestUser) -> (i64, BTreeMap<String, i64>) {
        self.try_unread(reader, "/dialog/unread").await.unwrap()
    }

    /// `reader`'s unread counts from `path`, or what the server answered instead.
    pub async fn try_unread(
        &self,
        reader: &TestUser,
        path: &str,
    ) -> Result<(i64, BTreeMap<String, i64>), String> {
        let response = self.get_as(reader, path).await;
        if response.status() != StatusCode::OK {
            return Err(format!(
                "{}: {}",
                response.status(),
                response.text().await.unwrap()
            ));
        }
        let body: Value = response.json().await.unwrap();
        let dialogs = body["dialogs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["user_id"].as_str().unwrap().to_owned(),
                    d["unread"].as_i64().unwrap(),
                )
            })
            .collect();
        Ok((body["total"].as_i64().unwrap(), dialogs))
    }

    /// Waits until `reader`'s counts are `expected` (the events travel asynchronously).
    pub async fn unread_becomes(&self, reader: &TestUser, expected: &[(&TestUser, i64)]) {
        let expected: BTreeMap<String, i64> = expected
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(user, n)| (user.id.clone(), *n))
            .collect();
        let total: i64 = expected.values().sum();
        eventually(Duration::from_secs(20), || {
            let expected = expected.clone();
            async move {
                match self.try_unread(reader, "/dialog/unread").await {
                    Ok((t, dialogs)) if t == total && dialogs == expected => Ok(()),
                    seen => Err(format!("{seen:?}, expected {total} {expected:?}")),
                }
            }
        })
        .await;
    }

    pub async fn mark_read(
        &self,
        reader: &TestUser,
        other: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.put_as(reader, &format!("/dialog/{other}/read"), Some(body))
            .await
    }

    /// Marks `reader`'s dialog with `other` read up to `up_to`; the mark the server answers.
    pub async fn read_up_to(&self, reader: &TestUser, other: &TestUser, up_to: i64) -> i64 {
        let response = self
            .mark_read(reader, &other.id, &json!({ "up_to": up_to.to_string() }))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["read_up_to"].as_str().unwrap().parse().unwrap()
    }

    /// What the counters must say, counted from the messages and the marks in PostgreSQL:
    /// reader → (other → messages from other above the reader's mark).
    pub async fn unread_from_messages(&self) -> BTreeMap<String, BTreeMap<String, i64>> {
        let rows = self
            .db()
            .await
            .query(
                "select m.recipient_id, m.sender_id, count(*)
                 from dialog_messages m join dialogs d using (dialog_id)
                 where m.id > case when m.recipient_id = d.user_low then d.read_low
                                   else d.read_high end
                 group by 1, 2",
                &[],
            )
            .await
            .unwrap();
        let mut expected: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for row in rows {
            expected
                .entry(row.get::<_, i64>(0).to_string())
                .or_default()
                .insert(row.get::<_, i64>(1).to_string(), row.get(2));
        }
        expected
    }

    /// The app's counters, reached as the server reaches them.
    pub async fn counters(&self) -> UnreadCounters {
        let db = self.db().await;
        let namespace = socialnet::db::cache_namespace(&db).await.unwrap();
        UnreadCounters::connect(
            self.config.cache.redis_url.as_deref().unwrap(),
            &self.config.cache.redis_key_prefix,
            &namespace,
            Duration::from_secs(2),
        )
        .await
        .unwrap()
    }

    /// Deletes the test's counters from the shared Redis.
    async fn clear_counters(&self) {
        self.counters().await.clear().await.unwrap();
    }
}

/// Sends, reads and their counts, as one reader and one writer see them.
pub async fn unread_scenario(app: &TestApp) {
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    let vera = app.user("Вера", "Сидорова").await;
    app.unread_becomes(&boris, &[]).await;
    for text in ["раз", "два", "три"] {
        app.send_ok(&anna, &boris, text).await;
    }
    app.send_ok(&vera, &boris, "привет").await;
    app.send_ok(&vera, &boris, "ты тут?").await;
    app.unread_becomes(&boris, &[(&anna, 3), (&vera, 2)]).await;
    // A writer's own messages are not unread for them.
    app.unread_becomes(&anna, &[]).await;

    assert_eq!(app.read_up_to(&boris, &anna, 2).await, 2);
    app.unread_becomes(&boris, &[(&anna, 1), (&vera, 2)]).await;
    // An older mark changes nothing; one past the end is the end.
    assert_eq!(app.read_up_to(&boris, &anna, 1).await, 2);
    assert_eq!(app.read_up_to(&boris, &anna, 1_000).await, 3);
    app.unread_becomes(&boris, &[(&vera, 2)]).await;
    // A bare number is accepted too.
    let response = app
        .mark_read(&boris, &vera.id, &json!({ "up_to": 1 }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.unread_becomes(&boris, &[(&vera, 1)]).await;

    // A reply counts for the other side; boris's mark stays where it was.
    app.send_ok(&boris, &anna, "отвечаю").await;
    app.unread_becomes(&anna, &[(&boris, 1)]).await;
    app.send_ok(&anna, &boris, "четыре").await;
    app.unread_becomes(&boris, &[(&anna, 1), (&vera, 1)]).await;
}

/// Outbox rows written on the app's database so far, drained or not (the identity's last value).
async fn outbox_rows_written(app: &TestApp) -> i64 {
    app.db()
        .await
        .query_one(
            "select coalesce(pg_sequence_last_value(pg_get_serial_sequence('outbox', 'id')), 0)",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Only a mark that rises is an event: the same mark again, a lower one, or one past the end
/// that clamps to the mark held writes no outbox row, and the counts stay right.
pub async fn only_a_raised_mark_is_told(app: &TestApp) {
    let olga = app.user("Ольга", "Белова").await;
    let pavel = app.user("Павел", "Белов").await;
    for text in ["раз", "два"] {
        app.send_ok(&olga, &pavel, text).await;
    }
    let before = outbox_rows_written(app).await;
    assert_eq!(app.read_up_to(&pavel, &olga, 1).await, 1);
    assert_eq!(app.read_up_to(&pavel, &olga, 2).await, 2);
    let raised = outbox_rows_written(app).await;
    assert_eq!(raised, before + 2, "each raise is one event");
    assert_eq!(app.read_up_to(&pavel, &olga, 2).await, 2);
    assert_eq!(app.read_up_to(&pavel, &olga, 1).await, 2);
    assert_eq!(app.read_up_to(&pavel, &olga, 1_000).await, 2);
    assert_eq!(
        outbox_rows_written(app).await,
        raised,
        "a mark that did not rise wrote an event"
    );
    app.unread_becomes(&pavel, &[]).await;
    // A message after the mark: the next read rises again, and is told.
    app.send_ok(&olga, &pavel, "три").await;
    app.unread_becomes(&pavel, &[(&olga, 1)]).await;
    let sent = outbox_rows_written(app).await;
    assert_eq!(app.read_up_to(&pavel, &olga, 1_000).await, 3);
    assert_eq!(outbox_rows_written(app).await, sent + 1);
    app.unread_becomes(&pavel, &[]).await;
}

/// Every malformed mark is a clear 4xx, never a 500.
pub async fn bad_reads_scenario(app: &TestApp) {
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    for body in [
        json!({ "up_to": "0" }),
        json!({ "up_to": "abc" }),
        json!({ "up_to": "-1" }),
        json!({ "up_to": -1 }),
        json!({ "up_to": "99999999999999999999" }),
        json!({ "up_to": null }),
        json!({}),
        json!([1]),
    ] {
        let response = app.mark_read(&boris, &anna.id, &body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let own = app
        .mark_read(&boris, &boris.id, &json!({ "up_to": "1" }))
        .await;
    assert_error(own, StatusCode::BAD_REQUEST).await;
    let nobody = app
        .mark_read(&boris, "999999999", &json!({ "up_to": "1" }))
        .await;
    assert_error(nobody, StatusCode::NOT_FOUND).await;
    let bad_id = app.mark_read(&boris, "abc", &json!({ "up_to": "1" })).await;
    assert_error(bad_id, StatusCode::BAD_REQUEST).await;
    // A dialog with no message yet: nothing to read.
    assert_eq!(app.read_up_to(&boris, &anna, 5).await, 0);
    // A mark as high as the schema allows is the end of the dialog, on every store (Tarantool
    // reads numbers from 2^47 up as 64-bit integers, which Lua's arithmetic does not take).
    app.send_ok(&anna, &boris, "одно").await;
    for up_to in [
        json!("100000000000000"),
        json!("140737488355329"),
        json!("999999999999999999"),
        json!(100_000_000_000_000u64),
        json!(9_223_372_036_854_775_807u64),
    ] {
        let response = app
            .mark_read(&boris, &anna.id, &json!({ "up_to": up_to }))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "up_to {up_to}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["read_up_to"], "1", "up_to {up_to}");
    }
    let anonymous = app.get("/dialog/unread").await;
    assert_error(anonymous, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn counts_follow_sends_and_reads_in_process() {
    let app = spawn_app_with(|c| use_counters(c, &redis_url())).await;
    unread_scenario(&app).await;
    bad_reads_scenario(&app).await;
    app.clear_counters().await;
}

#[tokio::test]
async fn counts_follow_sends_and_reads_through_rabbitmq() {
    let app = spawn_app_with(|c| {
        use_counters(c, &redis_url());
        use_broker(c, &amqp_url());
    })
    .await;
    unread_scenario(&app).await;
    only_a_raised_mark_is_told(&app).await;
    // The events went through the outbox, which the relay drains.
    eventually(Duration::from_secs(10), || async {
        let rows: i64 = app
            .db()
            .await
            .query_one("select count(*) from outbox", &[])
            .await
            .unwrap()
            .get(0);
        if rows == 0 {
            Ok(())
        } else {
            Err(format!("{rows} events still in the outbox"))
        }
    })
    .await;
    app.clear_counters().await;
}

#[tokio::test]
async fn counts_follow_sends_and_reads_on_tarantool() {
    let app = spawn_app_with(|c| {
        use_counters(c, &redis_url());
        c.dialogs.dialog_store = DialogStoreKind::Tarantool;
        c.dialogs.tarantool_url = crate::tarantool::tarantool_url().parse().unwrap();
    })
    .await;
    unread_scenario(&app).await;
    bad_reads_scenario(&app).await;
    // The marks are in Tarantool with the messages: counters lost are rebuilt from there.
    let gleb = app.user("Глеб", "Орлов").await;
    let dina = app.user("Дина", "Орлова").await;
    for text in ["раз", "два", "три"] {
        app.send_ok(&gleb, &dina, text).await;
    }
    app.read_up_to(&dina, &gleb, 1).await;
    app.unread_becomes(&dina, &[(&gleb, 2)]).await;
    app.clear_counters().await;
    app.unread_becomes(&dina, &[(&gleb, 2)]).await;
    app.clear_counters().await;
}

#[tokio::test]
async fn on_tarantool_only_a_raised_mark_is_told_through_rabbitmq() {
    let app = spawn_app_with(|c| {
        use_counters(c, &redis_url());
        use_broker(c, &amqp_url());
        c.dialogs.dialog_store = DialogStoreKind::Tarantool;
        c.dialogs.tarantool_url = crate::tarantool::tarantool_url().parse().unwrap();
    })
    .await;
    only_a_raised_mark_is_told(&app).await;
    app.clear_counters().await;
}

/// On Tarantool, a dialog write and its outbox row share no transaction: with the outbox locked
/// past the statement timeout, the message and the mark are kept (200) but their events are not
/// written. The dialog is then marked stale, and the reconciliation merges it from the store:
/// the counts come right without a full rebuild, where before they stayed off for good.
#[tokio::test]
async fn on_tarantool_a_write_whose_event_was_lost_is_counted_by_the_repair() {
    let app = spawn_app_with(|c| {
        use_counters(c, &redis_url());
        use_broker(c, &amqp_url());
        c.db.db_statement_timeout_ms = 500;
        c.dialogs.dialog_store = DialogStoreKind::Tarantool;
        c.dialogs.tarantool_url = crate::tarantool::tarantool_url().parse().unwrap();
    })
    .await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    let vera = app.user("Вера", "Сидорова").await;
    app.send_ok(&anna, &boris, "раз").await;
    app.send_ok(&vera, &boris, "привет").await;
    app.unread_becomes(&boris, &[(&anna, 1), (&vera, 1)]).await;

    // The outbox locked for two seconds: each write waits out the statement timeout.
    let mut admin = app.db().await;
    let lock = admin.transaction().await.unwrap();
    lock.batch_execute("lock table outbox in access exclusive mode")
        .await
        .unwrap();
    app.send_ok(&anna, &boris, "два").await;
    app.send_ok(&anna, &boris, "три").await;
    assert_eq!(app.read_up_to(&boris, &vera, 1).await, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.rollback().await.unwrap();

    app.unread_becomes(&boris, &[(&anna, 3)]).await;
    app.clear_counters().await;
}

/// A mark made while a send to the same dialog is in flight counts that message right: the
/// read waits for the send's lock and then counts the messages above the mark in a snapshot
/// that has it, so the store's two counts agree. (Counted in the statement's first snapshot,
/// the message in flight was missed, its reader's `seen` one too high for good.)
#[tokio::test]
async fn a_mark_made_while_a_send_is_in_flight_counts_that_message() {
    let app = spawn_app_with(|c| use_counters(c, &redis_url())).await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    app.send_ok(&anna, &boris, "раз").await;
    app.send_ok(&anna, &boris, "два").await;
    let (a, b): (i64, i64) = (anna.id.parse().unwrap(), boris.id.parse().unwrap());
    let key =
        socialnet::dialogs::DialogKey::of(socialnet::users::UserId(a), socialnet::users::UserId(b));
    // A send of the third message, its transaction open: the dialog's row is locked.
    let mut sender = app.db().await;
    let send = sender.transaction().await.unwrap();
    let stored: Vec<i64> = send
        .query_one(
            "select store_dialog_message($1, $2, $3, $4, $5, 'в пути')",
            &[&key.id, &key.low.0, &key.high.0, &a, &b],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, [3, 3]);
    // Boris marks what he has seen, up to the second; it waits for the lock.
    let mark = {
        let app = crate::helpers::TestApp::at(app.address.clone(), &app.database_url);
        let boris = TestUser {
            id: boris.id.clone(),
            token: boris.token.clone(),
        };
        let anna_id = anna.id.clone();
        tokio::spawn(async move {
            app.mark_read(&boris, &anna_id, &json!({ "up_to": "2" }))
                .await
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    send.commit().await.unwrap();
    assert_eq!(mark.await.unwrap(), StatusCode::OK);
    // The send's own event, which the request would have applied.
    app.counters().await.message_sent(b, a, 3).await.unwrap();
    app.unread_becomes(&boris, &[(&anna, 1)]).await;
    app.clear_counters().await;
}

/// A dialog marked stale is merged from the store at the next reconciliation, and only then:
/// counters lost for one user (the deployment's `built` mark kept, so no rebuild comes) stay
/// lost until the dialog is marked. On PostgreSQL, whose own writes never lose an event.
#[tokio::test]
async fn a_dialog_marked_stale_is_merged_from_the_store() {
    let app = spawn_app_with(|c| use_counters(c, &redis_url())).await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    for text in ["раз", "два", "три"] {
        app.send_ok(&anna, &boris, text).await;
    }
    app.read_up_to(&boris, &anna, 1).await;
    app.unread_becomes(&boris, &[(&anna, 2)]).await;
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = &app.config.cache.redis_key_prefix;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*:{{{}}}*", boris.id))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        app.unread(&boris).await.0,
        0,
        "repaired with nothing marked"
    );
    let (low, high) = {
        let (a, b) = (anna.id.parse::<i64>().unwrap(), boris.id.parse().unwrap());
        (a.min(b), a.max(b))
    };
    app.counters()
        .await
        .mark_dialog_stale(low, high)
        .await
        .unwrap();
    app.unread_becomes(&boris, &[(&anna, 2)]).await;
    app.clear_counters().await;
}

/// A dialog flooded with messages costs the counters one field, not one entry a message: what
/// Redis holds for the reader stays the same size from the first unread message to the 300th.
#[tokio::test]
async fn a_flooded_dialog_costs_the_counters_one_field() {
    let app = spawn_app_with(|c| use_counters(c, &redis_url())).await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    let redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = app.config.cache.redis_key_prefix.clone();
    let held = |mut redis: redis::aio::MultiplexedConnection| {
        let pattern = format!("{prefix}:*{{{}}}*", boris.id);
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut redis)
                .await
                .unwrap();
            let mut bytes = 0;
            for key in &keys {
                let usage: i64 = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                bytes += usage;
            }
            (keys.len(), bytes)
        }
    };
    app.send_ok(&anna, &boris, "первое").await;
    app.unread_becomes(&boris, &[(&anna, 1)]).await;
    let (keys, one) = held(redis.clone()).await;
    for n in 2..=300 {
        app.send_ok(&anna, &boris, &format!("ещё {n}")).await;
    }
    app.unread_becomes(&boris, &[(&anna, 300)]).await;
    let (keys_after, flooded) = held(redis.clone()).await;
    assert_eq!((keys, keys_after), (1, 1), "one hash for the reader");
    assert!(
        flooded <= one + 16,
        "{one} bytes for one unread message, {flooded} for 300"
    );
    app.clear_counters().await;
}

#[tokio::test]
async fn without_redis_the_counts_answer_503_and_the_marks_are_kept() {
    let app = spawn_app_with(|_| {}).await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    for text in ["раз", "два", "три"] {
        app.send_ok(&anna, &boris, text).await;
    }
    // A deployment without counters: no retry will help, so no Retry-After and no 503.
    let off = app.get_as(&boris, "/dialog/unread").await;
    assert!(off.headers().get("retry-after").is_none());
    let message = assert_error(off, StatusCode::NOT_IMPLEMENTED).await;
    assert!(message.contains("REDIS_URL"), "{message}");
    assert_eq!(app.read_up_to(&boris, &anna, 2).await, 2);

    // An instance with Redis builds the counters from the messages and the marks.
    let with_counters = app.spawn_beside(|c| use_counters(c, &redis_url())).await;
    with_counters.unread_becomes(&boris, &[(&anna, 1)]).await;
    with_counters.clear_counters().await;
}

#[tokio::test]
async fn a_redelivered_or_late_event_counts_nothing_more() {
    let app = spawn_app_with(|c| {
        use_counters(c, &redis_url());
        use_broker(c, &amqp_url());
    })
    .await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    for text in ["раз", "два", "три"] {
        app.send_ok(&anna, &boris, text).await;
    }
    app.read_up_to(&boris, &anna, 1).await;
    app.unread_becomes(&boris, &[(&anna, 2)]).await;

    // Every event again, as redeliveries would bring them, the read among them older than the
    // sends it covers; and one as the version before wrote it, with no count, which marks the
    // dialog for repair.
    let (a, b) = (anna.id.parse().unwrap(), boris.id.parse().unwrap());
    let mut events = vec![DialogEvent::Read {
        reader: b,
        other: a,
        up_to: 1,
        seen: Some(1),
    }];
    for id in [3, 1, 2, 3] {
        events.push(DialogEvent::MessageSent {
            id,
            from: a,
            to: b,
            sent: Some(id),
        });
    }
    events.push(DialogEvent::MessageSent {
        id: 2,
        from: a,
        to: b,
        sent: None,
    });
    let events: Vec<_> = events
        .iter()
        .map(|e| (e.kind(), serde_json::to_string(e).unwrap()))
        .collect();
    publish_events(&app, &events).await;
    // A send after the duplicates shows that they had their turn.
    app.send_ok(&anna, &boris, "четыре").await;
    app.unread_becomes(&boris, &[(&anna, 3)]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.unread_becomes(&boris, &[(&anna, 3)]).await;
    app.clear_counters().await;
}

#[tokio::test]
async fn a_burst_across_a_broker_outage_is_counted_once_it_is_back() {
    let rabbit = RabbitNodes::start(1).await;
    let app = spawn_app_with(|c| {
        use_counters(c, &redis_url());
        use_broker(c, &rabbit.url(1));
    })
    .await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    let vera = app.user("Вера", "Сидорова").await;
    for i in 0..10 {
        app.send_ok(&anna, &boris, &format!("до {i}")).await;
    }
    app.unread_becomes(&boris, &[(&anna, 10)]).await;

    // Mid-burst the broker stops: sends and reads still succeed, their events wait in the
    // outbox.
    let stopper = {
        let rabbit = rabbit.clone();
        tokio::spawn(async move { rabbit.stop_node(1).await })
    };
    for i in 0..15 {
        app.send_ok(&anna, &boris, &format!("во время {i}")).await;
        app.send_ok(&vera, &boris, &format!("вера {i}")).await;
    }
    stopper.await.unwrap();
    for i in 0..5 {
        app.send_ok(&vera, &boris, &format!("после {i}")).await;
    }
    assert_eq!(app.read_up_to(&boris, &anna, 20).await, 20);
    rabbit.start_node(1).await;

    app.unread_becomes(&boris, &[(&anna, 5), (&vera, 20)]).await;
    let expected = app.unread_from_messages().await;
    assert_eq!(expected[&boris.id][&anna.id], 5);
    assert_eq!(expected[&boris.id][&vera.id], 20);
    app.clear_counters().await;
}

#[tokio::test]
async fn counters_lost_with_a_restarted_redis_are_rebuilt_from_the_messages() {
    let mut redis = OwnRedis::start().await;
    let app = spawn_app_with(|c| use_counters(c, &redis.url())).await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    for i in 0..5 {
        app.send_ok(&anna, &boris, &format!("до {i}")).await;
    }
    app.read_up_to(&boris, &anna, 2).await;
    app.unread_becomes(&boris, &[(&anna, 3)]).await;

    // Redis goes away: sends go on (their counts cannot be applied), reads answer 503.
    redis.stop();
    for i in 0..4 {
        app.send_ok(&anna, &boris, &format!("без redis {i}")).await;
    }
    let down = app.get_as(&boris, "/dialog/unread").await;
    assert_error(down, StatusCode::SERVICE_UNAVAILABLE).await;
    // It comes back empty: the reconciliation rebuilds the counters from the messages.
    redis.restart().await;
    app.unread_becomes(&boris, &[(&anna, 7)]).await;
    app.send_ok(&anna, &boris, "после").await;
    app.unread_becomes(&boris, &[(&anna, 8)]).await;
}

#[tokio::test]
async fn after_any_mix_of_sends_reads_and_redeliveries_the_counts_equal_the_messages() {
    let app = spawn_app_with(|c| use_counters(c, &redis_url())).await;
    let mut users = Vec::new();
    for name in ["Анна", "Борис", "Вера", "Глеб"] {
        users.push(app.user(name, "Тестова").await);
    }
    let counters = app.counters().await;
    let ids: Vec<i64> = users.iter().map(|u| u.id.parse().unwrap()).collect();
    let seed: u64 = rand::random();
    let mut rng = SmallRng::seed_from_u64(seed);
    // Every event applied so far, to redeliver any of them at any time; each dialog's messages
    // as (number, sender), from which the events' counts are worked out.
    let mut applied: Vec<DialogEvent> = Vec::new();
    let mut dialogs: BTreeMap<(usize, usize), Vec<(i64, usize)>> = BTreeMap::new();
    for _ in 0..150 {
        let (a, b) = (rng.gen_range(0..4), rng.gen_range(0..4));
        if a == b {
            continue;
        }
        match rng.gen_range(0..10) {
            0..=5 => {
                app.send_ok(&users[a], &users[b], "m").await;
                let messages = dialogs.entry((a.min(b), a.max(b))).or_default();
                let id = messages.len() as i64 + 1;
                messages.push((id, a));
                let sent = messages.iter().filter(|(_, from)| *from == a).count();
                applied.push(DialogEvent::MessageSent {
                    id,
                    from: ids[a],
                    to: ids[b],
                    sent: Some(sent as i64),
                });
            }
            6..=7 => {
                let up_to = rng.gen_range(1..=12);
                let mark = app.read_up_to(&users[a], &users[b], up_to).await;
                if mark > 0 {
                    let messages = &dialogs[&(a.min(b), a.max(b))];
                    let seen = messages
                        .iter()
                        .filter(|&&(id, from)| from == b && id <= mark)
                        .count();
                    applied.push(DialogEvent::Read {
                        reader: ids[a],
                        other: ids[b],
                        up_to: mark,
                        seen: Some(seen as i64),
                    });
                }
            }
            _ => {
                // A redelivery of any earlier event, however late.
                if !applied.is_empty() {
                    let event = applied[rng.gen_range(0..applied.len())].clone();
                    event.apply(&counters).await.unwrap();
                }
            }
        }
    }
    let expected = app.unread_from_messages().await;
    for (i, user) in users.iter().enumerate() {
        let (total, dialogs) = app.unread(user).await;
        let want = expected.get(&user.id).cloned().unwrap_or_default();
        assert_eq!(dialogs, want, "user {i}, seed {seed}");
        assert_eq!(total, want.values().sum::<i64>(), "user {i}, seed {seed}");
    }
    app.clear_counters().await;
}

#[tokio::test]
async fn the_rebuild_command_repairs_counters_gone_wrong() {
    let app = spawn_app_with(|c| use_counters(c, &redis_url())).await;
    let anna = app.user("Анна", "Иванова").await;
    let boris = app.user("Борис", "Петров").await;
    for i in 0..4 {
        app.send_ok(&anna, &boris, &format!("{i}")).await;
    }
    app.read_up_to(&boris, &anna, 1).await;
    app.unread_becomes(&boris, &[(&anna, 3)]).await;
    // Counts that disagree with the messages: a message that does not exist counted for each.
    let counters = app.counters().await;
    let (a, b): (i64, i64) = (anna.id.parse().unwrap(), boris.id.parse().unwrap());
    assert!(counters.message_sent(b, a, 5).await.unwrap());
    assert!(counters.message_sent(a, b, 1).await.unwrap());
    app.unread_becomes(&boris, &[(&anna, 4)]).await;
    app.unread_becomes(&anna, &[(&boris, 1)]).await;

    // Off the test's own thread, which also runs the server (and its reconciliation): blocked
    // on the command, it would hold a rebuild's claim that the command waits for.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_socialnet"));
    command
        .args(["counters", "rebuild"])
        .env("DATABASE_URL", &app.database_url)
        .env("REDIS_URL", app.config.cache.redis_url.as_deref().unwrap())
        .env("REDIS_KEY_PREFIX", &app.config.cache.redis_key_prefix)
        .env("RUST_LOG", "warn");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("3 unread messages"), "{stdout}");
    app.unread_becomes(&boris, &[(&anna, 3)]).await;
    app.unread_becomes(&anna, &[]).await;
    app.clear_counters().await;
}
