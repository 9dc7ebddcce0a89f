//! `socialnet fake social`: a follow graph with a heavy tail (a few "celebrities" followed by
//! most users, most users followed by few) and posts with realistic lengths spread over time.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use futures_util::pin_mut;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::names::NameData;
use super::progress::Progress;
use crate::config::DbConfig;
use crate::db;

#[derive(Debug, Clone, Args)]
pub struct FakeSocialArgs {
    #[command(flatten)]
    pub db: DbConfig,
    /// Average number of users each user follows (exponentially distributed, capped at 1000).
    #[arg(long, default_value_t = 30.0)]
    pub follows_per_user: f64,
    /// Skew of popularity: who gets followed is Zipf-distributed over users with this exponent
    /// (1.0: the most popular user is followed by most users; 0: uniform).
    #[arg(long, default_value_t = 1.0)]
    pub popularity_skew: f64,
    /// Average number of posts per user (who posts is skewed too).
    #[arg(long, default_value_t = 5.0)]
    pub posts_per_user: f64,
    /// Posts are spread over this many days up to now, in id order.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Seed for a reproducible run; random if absent.
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug)]
pub struct FakeSocialReport {
    pub follows: u64,
    pub posts: u64,
    pub seed: u64,
    pub elapsed: Duration,
    /// Followers of the most followed user.
    pub top_followers: i64,
}

/// Draws ranks 0..n with probability ∝ 1 / (rank + 1)^skew, by inverting the cumulative weights.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, skew: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|rank| {
                total += 1.0 / ((rank + 1) as f64).powf(skew);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample<R: Rng>(&self, rng: &mut R) -> usize {
        let total = *self.cumulative.last().unwrap_or(&1.0);
        let target = rng.gen::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c < target)
            .min(self.cumulative.len() - 1)
    }
}

pub async fn fake_social(args: &FakeSocialArgs) -> anyhow::Result<FakeSocialReport> {
    anyhow::ensure!(
        args.follows_per_user >= 0.0 && args.posts_per_user >= 0.0,
        "averages must not be negative"
    );
    db::wait_and_ensure_database(&args.db.database_url, args.db.startup_wait()).await?;
    let pool = super::bulk_pool(&args.db)?;
    db::migrate(&pool).await?;
    let client = pool.get().await.context("connecting to the database")?;
    let ids = super::user_ids(&client).await?;
    anyhow::ensure!(
        ids.len() >= 2,
        "run `socialnet fake users` first: fewer than two users exist"
    );
    let seed = args.seed.unwrap_or_else(rand::random);
    let started = Instant::now();

    // Popularity ranks over a shuffled copy of the ids, so celebrities are anywhere in the table.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_popularity = ids.clone();
    by_popularity.shuffle(&mut rng);
    let zipf = Zipf::new(ids.len(), args.popularity_skew);

    client
        .batch_execute(
            "create temporary table fake_friends (user_id bigint, friend_id bigint) on commit preserve rows",
        )
        .await?;
    let mut follows = 0u64;
    let drawing = Progress::new("fake social: follows", "users", ids.len() as u64);
    let mut users_done = 0u64;
    for chunk in ids.chunks(50_000) {
        let sink = client
            .copy_in("copy fake_friends (user_id, friend_id) from stdin (format binary)")
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT8]);
        pin_mut!(writer);
        for &user in chunk {
            let wanted = ((-args.follows_per_user * (1.0 - rng.gen::<f64>()).ln()).round()
                as usize)
                .min(1000)
                .min(ids.len() - 1);
            let mut chosen = HashSet::with_capacity(wanted);
            let mut attempts = 0;
            while chosen.len() < wanted && attempts < wanted * 20 {
                attempts += 1;
                let friend = by_popularity[zipf.sample(&mut rng)];
                if friend != user && chosen.insert(friend) {
                    writer.as_mut().write(&[&user, &friend]).await?;
                }
            }
            follows += chosen.len() as u64;
        }
        writer.finish().await?;
        users_done += chunk.len() as u64;
        drawing.update(users_done);
    }
    drawing.finish(users_done);
    eprintln!("fake social: adding {follows} follows to the friends table…");
    let inserting = Instant::now();
    let inserted_follows = client
        .execute(
            "insert into friends (user_id, friend_id) select user_id, friend_id from fake_friends on conflict do nothing",
            &[],
        )
        .await?;
    client.batch_execute("drop table fake_friends").await?;
    eprintln!(
        "fake social: {inserted_follows} follows ({follows} drawn) added in {:.1}s",
        inserting.elapsed().as_secs_f64()
    );

    // Posts: prolific authors are skewed too (a separate, milder ranking), times grow with ids.
    let total_posts = (args.posts_per_user * ids.len() as f64).round() as u64;
    let mut by_activity = ids.clone();
    by_activity.shuffle(&mut rng);
    let activity = Zipf::new(ids.len(), 0.7);
    let vocabulary = NameData::load().vocabulary();
    let timeline = Timeline::last_days(args.days);
    let mut posts = 0u64;
    let posting = Progress::new("fake social: posts", "posts", total_posts);
    while posts < total_posts {
        let batch = (total_posts - posts).min(50_000);
        let sink = client
            .copy_in("copy posts (author_id, text, created_at) from stdin (format binary)")
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::TIMESTAMPTZ]);
        pin_mut!(writer);
        for _ in 0..batch {
            let author = by_activity[activity.sample(&mut rng)];
            let text = post_text(&mut rng, &vocabulary);
            let at = timeline.at(posts, total_posts);
            writer.as_mut().write(&[&author, &text, &at]).await?;
            posts += 1;
        }
        writer.finish().await?;
        posting.update(posts);
    }
    posting.finish(posts);
    eprintln!("fake social: vacuuming and analysing friends and posts…");
    client
        .batch_execute("vacuum (analyze) friends, posts")
        .await?;
    let top_followers: i64 = client
        .query_one(
            "select coalesce(max(n), 0) from (select count(*) n from friends group by friend_id) f",
            &[],
        )
        .await?
        .get(0);
    Ok(FakeSocialReport {
        follows: inserted_follows,
        posts,
        seed,
        elapsed: started.elapsed(),
        top_followers,
    })
}

/// Times spread evenly over the last days up to now, in the order things are generated.
pub(crate) struct Timeline {
    end: DateTime<Utc>,
    span: chrono::Duration,
}

impl Timeline {
    pub(crate) fn last_days(days: u32) -> Self {
        Timeline {
            end: Utc::now(),
            span: chrono::Duration::days(i64::from(days)),
        }
    }

    /// The time of the `done`-th of `total` things.
    pub(crate) fn at(&self, done: u64, total: u64) -> DateTime<Utc> {
        let progress = done as f64 / total.max(1) as f64;
        self.end - self.span
            + chrono::Duration::milliseconds(
                (self.span.num_milliseconds() as f64 * progress) as i64,
            )
    }
}

/// A post of realistic length: mostly one short line, sometimes a paragraph, rarely a long text.
pub(crate) fn post_text<R: Rng>(rng: &mut R, vocabulary: &[&str]) -> String {
    let words = match rng.gen_range(0..100) {
        0..=59 => rng.gen_range(3..12),
        60..=89 => rng.gen_range(12..50),
        _ => rng.gen_range(50..200),
    };
    let mut text = String::with_capacity(words * 10);
    for i in 0..words {
        if i > 0 {
            text.push_str(if rng.gen_ratio(1, 8) { ". " } else { " " });
        }
        text.push_str(vocabulary[rng.gen_range(0..vocabulary.len())]);
    }
    text.push('.');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_puts_most_weight_on_the_first_ranks() {
        let zipf = Zipf::new(10_000, 1.0);
        let mut rng = StdRng::seed_from_u64(1);
        let draws: Vec<usize> = (0..10_000).map(|_| zipf.sample(&mut rng)).collect();
        let top10 = draws.iter().filter(|&&r| r < 10).count();
        // Ranks 0..10 hold H(10)/H(10000) ≈ 29 % of the weight.
        assert!((2_400..3_400).contains(&top10), "{top10}");
        assert!(draws.iter().all(|&r| r < 10_000));
        let uniform = Zipf::new(100, 0.0);
        let low = (0..10_000)
            .filter(|_| uniform.sample(&mut rng) < 50)
            .count();
        assert!((4_500..5_500).contains(&low), "{low}");
    }
}
