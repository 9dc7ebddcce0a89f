//! `socialnet fake`: realistic data at scale, loaded with binary `COPY`.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{NaiveDate, Utc};
use clap::Args;
use futures_util::pin_mut;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::names::{feminine_surname, Language, NameData};
use super::progress::Progress;
use crate::auth::PasswordHasher;
use crate::config::DbConfig;
use crate::db;
use crate::users::sql::{create_search_index, drop_search_index};

/// The password of every generated user. Lab data only: one hash, computed once, shared by all.
pub const LAB_PASSWORD: &str = "socialnet-lab";

#[derive(Debug, Clone, Args)]
pub struct FakeUsersArgs {
    #[command(flatten)]
    pub db: DbConfig,
    /// How many users to append.
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    /// Seed for a reproducible run (the same seed gives the same users); random if absent.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Share of users with Russian names in Cyrillic; the rest get English names in Latin script.
    #[arg(long, default_value_t = 0.7)]
    pub cyrillic_share: f64,
    /// Rows per COPY batch (each batch commits on its own).
    #[arg(long, default_value_t = 50_000)]
    pub batch_size: usize,
    /// Keep the search index during the load instead of dropping it and building it afterwards
    /// (much slower for large loads; useful to measure exactly that).
    #[arg(long)]
    pub keep_index: bool,
}

/// What a run did, for the caller to print or check.
#[derive(Debug)]
pub struct FakeUsersReport {
    pub rows: u64,
    pub seed: u64,
    pub load: Duration,
    pub index: Duration,
}

impl FakeUsersReport {
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / (self.load + self.index).as_secs_f64().max(1e-9)
    }
}

/// One generated user, ready for COPY.
pub struct FakeUser {
    pub first_name: String,
    pub second_name: String,
    pub birthdate: NaiveDate,
    pub biography: String,
    pub city: &'static str,
}

/// Draws users with realistic name, age and city frequencies.
pub struct UserFaker {
    data: NameData,
    rng: StdRng,
    cyrillic_share: f64,
    today: NaiveDate,
}

impl UserFaker {
    pub fn new(seed: u64, cyrillic_share: f64) -> Self {
        UserFaker {
            data: NameData::load(),
            rng: StdRng::seed_from_u64(seed),
            cyrillic_share: cyrillic_share.clamp(0.0, 1.0),
            today: Utc::now().date_naive(),
        }
    }

    pub fn next_user(&mut self) -> FakeUser {
        let russian = self.rng.gen_bool(self.cyrillic_share);
        let lang: &Language = if russian {
            &self.data.russian
        } else {
            &self.data.english
        };
        let female = self.rng.gen_bool(0.5);
        let first_name = if female {
            lang.female_first.pick(&mut self.rng)
        } else {
            lang.male_first.pick(&mut self.rng)
        };
        let last = lang.last.pick(&mut self.rng);
        let second_name = if female && lang.russian {
            feminine_surname(last)
        } else {
            last.to_owned()
        };
        // Ages 16 to 80, uniformly by day.
        let age_days = self.rng.gen_range(16 * 365..80 * 365);
        let birthdate = self.today - chrono::Days::new(age_days);
        let words = self.rng.gen_range(2..=5);
        let biography = lang
            .bio_words
            .choose_multiple(&mut self.rng, words)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        FakeUser {
            first_name: first_name.to_owned(),
            second_name,
            birthdate,
            biography,
            city: lang.cities.pick(&mut self.rng),
        }
    }
}

/// Appends `count` users: drops the search index, streams batches through binary COPY while
/// another thread generates the next batch, then rebuilds the index and refreshes statistics.
pub async fn fake_users(args: &FakeUsersArgs) -> anyhow::Result<FakeUsersReport> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.cyrillic_share),
        "--cyrillic-share must be between 0 and 1"
    );
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be positive");
    db::wait_and_ensure_database(&args.db.database_url, args.db.startup_wait()).await?;
    // Index builds on a million rows take longer than a request should.
    let pool = super::bulk_pool(&args.db)?;
    db::migrate(&pool).await?;
    let client = pool.get().await.context("connecting to the database")?;

    let seed = args.seed.unwrap_or_else(rand::random);
    let password_hash =
        PasswordHasher::new(19_456, 2, 1, Duration::from_secs(5))?.hash_blocking(LAB_PASSWORD)?;

    if !args.keep_index {
        drop_search_index(&client).await?;
    }
    let progress = Progress::new("fake users", "rows", args.count);
    let started = Instant::now();

    // Generation runs on a blocking thread, one batch ahead of the COPY.
    let (batches_tx, mut batches_rx) = tokio::sync::mpsc::channel::<Vec<FakeUser>>(2);
    let (count, batch_size, share) = (args.count, args.batch_size, args.cyrillic_share);
    let generator = tokio::task::spawn_blocking(move || {
        let mut faker = UserFaker::new(seed, share);
        let mut left = count;
        while left > 0 {
            let n = left.min(batch_size as u64);
            let batch: Vec<FakeUser> = (0..n).map(|_| faker.next_user()).collect();
            if batches_tx.blocking_send(batch).is_err() {
                break;
            }
            left -= n;
        }
    });

    let mut rows = 0u64;
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::DATE,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
    ];
    while let Some(batch) = batches_rx.recv().await {
        let sink = client
            .copy_in(
                "copy users (first_name, second_name, birthdate, biography, city, password_hash) \
                 from stdin (format binary)",
            )
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        for user in &batch {
            writer
                .as_mut()
                .write(&[
                    &user.first_name,
                    &user.second_name,
                    &user.birthdate,
                    &user.biography,
                    &user.city,
                    &password_hash,
                ])
                .await?;
        }
        rows += writer.finish().await?;
        progress.update(rows);
    }
    generator.await.context("generator thread")?;
    let load = started.elapsed();
    progress.finish(rows);

    let index_started = Instant::now();
    if !args.keep_index {
        eprintln!("building the search index…");
        create_search_index(&client).await?;
    }
    // Vacuum too: it marks the new pages all-visible, which index-only scans (search) rely on.
    client.batch_execute("vacuum (analyze) users").await?;
    Ok(FakeUsersReport {
        rows,
        seed,
        load,
        index: index_started.elapsed(),
    })
}
