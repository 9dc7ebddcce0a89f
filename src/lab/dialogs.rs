//! `socialnet fake dialogs`: private messages among existing users, with a few "hot" users (the
//! Lady Gaga of the network) who write a large share of all messages, each to many people; and
//! `socialnet fake dialog-shards`: how those messages would spread over shards under each choice
//! of key, computed with Citus' own hash on plain PostgreSQL.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures_util::pin_mut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::names::NameData;
use super::social::{post_text, Timeline};
use crate::config::DbConfig;
use crate::db;
use crate::dialogs::DialogKey;
use crate::ids::UserId;

#[derive(Debug, Clone, Args)]
pub struct FakeDialogsArgs {
    #[command(flatten)]
    pub db: DbConfig,
    /// Messages to add.
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Average length of an ordinary dialog, in messages (exponentially distributed).
    #[arg(long, default_value_t = 20.0)]
    pub messages_per_dialog: f64,
    /// Users who write far more than anyone else, each message to a random user.
    #[arg(long, default_value_t = 1)]
    pub hot_users: usize,
    /// Share of all messages written by the hot users (0 to 1).
    #[arg(long, default_value_t = 0.1)]
    pub hot_share: f64,
    /// Messages are spread over this many days up to now.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Seed for a reproducible run; random if absent.
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug)]
pub struct FakeDialogsReport {
    pub messages: u64,
    pub dialogs: u64,
    pub hot_users: Vec<i64>,
    pub hot_dialogs: u64,
    pub seed: u64,
    pub elapsed: Duration,
}

/// A dialog as generated: its pair and how many messages it has (its last message's number).
struct DialogCount {
    low: i64,
    high: i64,
    last: i64,
    /// Messages sent by the low and by the high user.
    sent: [i64; 2],
}

pub async fn fake_dialogs(args: &FakeDialogsArgs) -> anyhow::Result<FakeDialogsReport> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.hot_share),
        "--hot-share is a fraction between 0 and 1"
    );
    anyhow::ensure!(
        args.messages_per_dialog >= 1.0,
        "--messages-per-dialog must be at least 1"
    );
    db::wait_and_ensure_database(&args.db.database_url, args.db.startup_wait()).await?;
    let pool = super::bulk_pool(&args.db)?;
    crate::app::migrate(&pool, &args.db).await?;
    let client = pool.get().await.context("connecting to the database")?;
    let ids = super::user_ids(&client).await?;
    anyhow::ensure!(
        ids.len() > args.hot_users + 1,
        "run `socialnet fake users` first: too few users"
    );
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    // Existing dialogs keep counting from their last message and their senders' counts.
    let mut dialogs: HashMap<i64, DialogCount> = client
        .query(
            "select dialog_id, user_low, user_high, last_message_id, sent_low, sent_high
             from dialogs",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            (
                r.get(0),
                DialogCount {
                    low: r.get(1),
                    high: r.get(2),
                    last: r.get(3),
                    sent: [r.get(4), r.get(5)],
                },
            )
        })
        .collect();
    let existing = dialogs.len();
    let hot: Vec<i64> = (0..args.hot_users)
        .map(|_| ids[rng.gen_range(0..ids.len())])
        .collect();
    let vocabulary = NameData::load().vocabulary();
    let timeline = Timeline::last_days(args.days);
    let pick_other = |rng: &mut StdRng, me: i64| loop {
        let other = ids[rng.gen_range(0..ids.len())];
        if other != me {
            return other;
        }
    };

    // An ordinary dialog runs for a random number of messages, its two people taking turns at
    // random; a hot user's message opens or continues a dialog with someone drawn at random.
    let mut written = 0u64;
    let mut current: Option<(i64, i64, u64)> = None;
    while written < args.messages {
        let batch = (args.messages - written).min(50_000);
        let sink = client
            .copy_in(
                "copy dialog_messages (dialog_id, id, sender_id, recipient_id, text, created_at) \
                 from stdin (format binary)",
            )
            .await?;
        let writer = BinaryCopyInWriter::new(
            sink,
            &[
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TIMESTAMPTZ,
            ],
        );
        pin_mut!(writer);
        for _ in 0..batch {
            let (from, to) = if !hot.is_empty() && rng.gen::<f64>() < args.hot_share {
                let from = hot[rng.gen_range(0..hot.len())];
                (from, pick_other(&mut rng, from))
            } else {
                let (a, b, left) = match current {
                    Some((a, b, left)) if left > 0 => (a, b, left),
                    _ => {
                        let a = ids[rng.gen_range(0..ids.len())];
                        let b = pick_other(&mut rng, a);
                        let length = (-args.messages_per_dialog * (1.0 - rng.gen::<f64>()).ln())
                            .ceil()
                            .max(1.0) as u64;
                        (a, b, length)
                    }
                };
                current = Some((a, b, left - 1));
                if rng.gen_bool(0.5) {
                    (a, b)
                } else {
                    (b, a)
                }
            };
            let key = DialogKey::of(UserId(from), UserId(to));
            let dialog = dialogs.entry(key.id).or_insert(DialogCount {
                low: key.low.0,
                high: key.high.0,
                last: 0,
                sent: [0, 0],
            });
            dialog.last += 1;
            dialog.sent[usize::from(from != key.low.0)] += 1;
            let text = post_text(&mut rng, &vocabulary);
            let at = timeline.at(written, args.messages);
            writer
                .as_mut()
                .write(&[&key.id, &dialog.last, &from, &to, &text, &at])
                .await?;
            written += 1;
        }
        writer.finish().await?;
        eprintln!("fake dialogs: {written} messages");
    }

    // The counters, so that sends through the API continue each dialog's numbering and the
    // unread counters count every message.
    client
        .batch_execute(
            "create temporary table fake_dialogs (dialog_id bigint, user_low bigint, \
             user_high bigint, last_message_id bigint, sent_low bigint, sent_high bigint)",
        )
        .await?;
    let sink = client
        .copy_in("copy fake_dialogs from stdin (format binary)")
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT8; 6]);
    pin_mut!(writer);
    for (id, dialog) in &dialogs {
        writer
            .as_mut()
            .write(&[
                id,
                &dialog.low,
                &dialog.high,
                &dialog.last,
                &dialog.sent[0],
                &dialog.sent[1],
            ])
            .await?;
    }
    writer.finish().await?;
    client
        .batch_execute(
            "insert into dialogs (dialog_id, user_low, user_high, last_message_id, sent_low,
                                  sent_high)
             select dialog_id, user_low, user_high, last_message_id, sent_low, sent_high
             from fake_dialogs
             on conflict (dialog_id) do update set last_message_id = excluded.last_message_id,
                 sent_low = excluded.sent_low, sent_high = excluded.sent_high;
             drop table fake_dialogs;
             analyze dialogs;
             analyze dialog_messages;",
        )
        .await?;
    let hot_dialogs = dialogs
        .values()
        .filter(|d| hot.contains(&d.low) || hot.contains(&d.high))
        .count() as u64;
    Ok(FakeDialogsReport {
        messages: written,
        dialogs: (dialogs.len() - existing) as u64,
        hot_users: hot,
        hot_dialogs,
        seed,
        elapsed: started.elapsed(),
    })
}

#[derive(Debug, Clone, Args)]
pub struct DialogShardsArgs {
    #[command(flatten)]
    pub db: DbConfig,
    /// Shards to split the hash range into, as Citus would.
    #[arg(long, default_value_t = 32)]
    pub shards: u32,
}

/// How the stored messages would spread over `shards` hash-range shards under three keys: the
/// dialog (this schema), the sender, and a global message id. Uses `hashint8`, the hash Citus
/// applies to a bigint distribution column, and Citus' equal split of its int4 range, so on
/// plain PostgreSQL it shows what Citus would do.
pub async fn dialog_shards(args: &DialogShardsArgs) -> anyhow::Result<String> {
    anyhow::ensure!(args.shards > 0, "--shards must be positive");
    let pool = super::bulk_pool(&args.db)?;
    let client = pool.get().await.context("connecting to the database")?;
    let shards = args.shards as i32;
    let mut out = String::new();
    writeln!(
        out,
        "| key | messages on the busiest shard | mean per shard | skew (busiest / mean) | shards a list query reads |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|")?;
    for (label, expression, reads) in [
        ("dialog (this schema)", "dialog_id", "1"),
        ("sender", "sender_id", "2 (both senders)"),
        ("message id (global)", "(dialog_id # id)", "all"),
    ] {
        let row = client
            .query_one(
                &format!(
                    "with per_shard as (
                         select width_bucket(hashint8({expression})::bigint, -2147483648, 2147483648, $1) as shard,
                                count(*) as n
                         from dialog_messages group by 1
                     )
                     select coalesce(max(n), 0)::bigint, coalesce(sum(n), 0)::bigint from per_shard"
                ),
                &[&shards],
            )
            .await?;
        let (max, total): (i64, i64) = (row.get(0), row.get(1));
        let mean = total as f64 / f64::from(shards);
        let skew = if total > 0 { max as f64 / mean } else { 0.0 };
        writeln!(out, "| {label} | {max} | {mean:.0} | {skew:.2} | {reads} |")?;
    }
    Ok(out)
}

#[derive(Debug, Clone, Args)]
pub struct CopyDialogsArgs {
    #[command(flatten)]
    pub db: DbConfig,
    /// The Tarantool to copy into (`--tarantool-url`).
    #[command(flatten)]
    pub dialogs: crate::config::DialogsConfig,
}

/// Copies every message of the database's dialog tables into Tarantool (`dialog_load` of
/// deploy/tarantool/dialogs.lua), under the database's number, so that a server with
/// `DIALOG_STORE=tarantool` serves the same dialogs; returns the messages copied. Copying again
/// replaces what is there.
pub async fn copy_dialogs(args: &CopyDialogsArgs) -> anyhow::Result<u64> {
    use crate::tarantool::{Arg, Tarantool};
    use rmpv::Value;

    const BATCH: i64 = 2_000;
    let pool = crate::lab::bulk_pool(&args.db)?;
    let client = pool.get().await?;
    let database = db::database_number(&**client).await?;
    let tarantool = Tarantool::new(args.dialogs.tarantool_url.clone(), Duration::from_secs(60));
    let statement = client
        .prepare(
            // The pair is the sender and the recipient, in order: no join with `dialogs`
            // (which, planned as a hash join, read the whole table for every batch).
            "select dialog_id, least(sender_id, recipient_id), greatest(sender_id, recipient_id),
                    id, sender_id, recipient_id, text,
                    (extract(epoch from created_at) * 1000000)::int8
             from dialog_messages
             where (dialog_id, id) > ($1, $2)
             order by dialog_id, id
             limit $3",
        )
        .await?;
    let total: i64 = client
        .query_one("select count(*) from dialog_messages", &[])
        .await?
        .get(0);
    let progress = indicatif::ProgressBar::new(total as u64);
    let (mut after, mut copied) = ((i64::MIN, 0i64), 0u64);
    loop {
        let rows = client
            .query(&statement, &[&after.0, &after.1, &BATCH])
            .await?;
        let Some(last) = rows.last() else { break };
        after = (last.get(0), last.get(3));
        let batch = Value::Array(
            rows.iter()
                .map(|row| {
                    Value::Array(vec![
                        row.get::<_, i64>(0).into(),
                        row.get::<_, i64>(1).into(),
                        row.get::<_, i64>(2).into(),
                        row.get::<_, i64>(3).into(),
                        row.get::<_, i64>(4).into(),
                        row.get::<_, i64>(5).into(),
                        row.get::<_, String>(6).into(),
                        row.get::<_, i64>(7).into(),
                    ])
                })
                .collect(),
        );
        tarantool
            .call("dialog_load", &[Arg::Int(database), Arg::Value(&batch)])
            .await
            .context("loading into tarantool")?;
        copied += rows.len() as u64;
        progress.set_position(copied);
    }
    progress.finish_and_clear();
    Ok(copied)
}
