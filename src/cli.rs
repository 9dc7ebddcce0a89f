//! The `socialnet` command line: one subcommand per job.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::app::{self, Application};
use crate::config::{AuthConfig, Config, DbConfig, LogFormat};
use crate::db;
use crate::dialogs;
use crate::lab::bench::{self, BenchCompareArgs, BenchRunArgs};
use crate::lab::dialogs::{
    copy_dialogs, dialog_shards, fake_dialogs, CopyDialogsArgs, DialogShardsArgs, FakeDialogsArgs,
};
use crate::lab::fake::{fake_users, FakeUsersArgs};
use crate::lab::social::{fake_social, FakeSocialArgs};
use crate::shards::ops::{self as shards, Node as ShardNode};
use crate::users::{self, Birthdate, NewUser, Password, PersonName};

#[derive(Debug, Parser)]
#[command(
    name = "socialnet",
    version,
    about = "A social-network backend built to measure what makes web applications fast",
    long_about = "A social-network backend built to measure what makes web applications fast.\n\n\
                  Every option can also be set by the environment variable shown beside it \
                  (see .env.example)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API: creates the database if missing, applies migrations, then serves.
    Serve(Config),
    /// Create the database if missing and apply pending migrations, then exit.
    Migrate(DbConfig),
    /// Create an administrator account (applying migrations first) and print its id.
    CreateSuperuser(SuperuserArgs),
    /// Generate realistic lab data.
    #[command(subcommand)]
    Fake(FakeCommand),
    /// Load a running server and measure it; compare two runs.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The lab's pages: `index` writes the one page of every technique's plots and readings.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Operate the feed cache.
    #[command(subcommand)]
    Feed(FeedCommand),
    /// Operate the unread-message counters.
    #[command(subcommand)]
    Counters(CountersCommand),
    /// Drop, create or inspect the user search index (to measure search with and without it).
    SearchIndex(SearchIndexArgs),
    /// Operate the Citus cluster that shards the dialogs (DATABASE_URL: the coordinator).
    Shards(ShardsArgs),
}

#[derive(Debug, Args)]
pub struct ShardsArgs {
    #[command(flatten)]
    pub db: DbConfig,
    #[command(subcommand)]
    pub action: ShardsAction,
}

#[derive(Debug, Subcommand)]
pub enum ShardsAction {
    /// Nodes, shards, rows and bytes per node, and the skew of rows across nodes.
    Status,
    /// Register workers (PostgreSQL with Citus and this database); distributes the dialog tables
    /// over them if they waited for workers. Then `rebalance` moves existing shards onto new ones.
    AddWorker {
        /// The workers, as the coordinator reaches them.
        #[arg(required = true)]
        nodes: Vec<ShardNode>,
    },
    /// Move shards until every worker holds its share; online (logical replication, needs
    /// wal_level = logical on every node), with progress until done.
    Rebalance,
    /// Move every shard off a worker (it takes no new ones), with progress until done.
    Drain { node: ShardNode },
    /// Take a drained worker out of the cluster.
    Remove { node: ShardNode },
    /// Change the number of shards of the dialog tables (rows are copied; writes wait meanwhile).
    SetCount { count: u32 },
}

#[derive(Debug, Subcommand)]
pub enum FakeCommand {
    /// Append users with realistic names (Russian in Cyrillic, English in Latin), birthdates,
    /// cities and biographies. Every generated user's password is `socialnet-lab`.
    Users(FakeUsersArgs),
    /// Add a follow graph (a few celebrities followed by most, most followed by few) and posts
    /// of realistic lengths spread over time, among the existing users.
    Social(FakeSocialArgs),
    /// Add private messages among the existing users, a few "hot" users writing a large share of
    /// them to many people.
    Dialogs(FakeDialogsArgs),
    /// Show how the stored messages would spread over shards keyed by dialog, by sender or by
    /// message (Citus' hash, computed on plain PostgreSQL).
    DialogShards(DialogShardsArgs),
    /// Copy the database's dialogs into Tarantool (DIALOG_STORE=tarantool then serves them).
    CopyDialogs(CopyDialogsArgs),
}

#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// Rebuild cached feeds from PostgreSQL: one user's, or every user's who follows someone.
    Rebuild(FeedRebuildArgs),
}

#[derive(Debug, Subcommand)]
pub enum CountersCommand {
    /// Rebuild every unread counter from the messages and the read marks (REDIS_URL, and the
    /// dialog store of DIALOG_STORE): cleared first, then recounted while traffic goes on.
    Rebuild(Box<Config>),
}

#[derive(Debug, Args)]
pub struct FeedRebuildArgs {
    #[command(flatten)]
    pub config: Config,
    /// Only this user's feed.
    #[arg(long, conflicts_with = "all")]
    pub user: Option<String>,
    /// Every feed.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Sweep connection counts for each scenario; write result.json, report.md and SVG plots.
    Run(Box<BenchRunArgs>),
    /// Draw two runs on the same axes with the ratio per step (B / A).
    Compare(BenchCompareArgs),
    /// A mix of writes and reads while a command breaks something (`--event`); afterwards,
    /// every acknowledged write is looked for on the database. Writes outage.md and plots.
    Outage(Box<bench::outage::BenchOutageArgs>),
    /// Write a run's report.md and plots again from its result.json.
    Render {
        /// The run's folder.
        dir: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Write DIR/index.html: every technique's before/after plots and a one-line reading of each
    /// comparison, from the results in DIR (what `scripts/lab/run.sh` writes).
    Index {
        /// The lab folder.
        #[arg(long, default_value = "docs/lab")]
        dir: std::path::PathBuf,
        /// Only check that DIR/index.html is what the results give (fails if not).
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Args)]
pub struct SearchIndexArgs {
    #[command(flatten)]
    pub db: DbConfig,
    #[arg(value_enum)]
    pub action: SearchIndexAction,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SearchIndexAction {
    /// Drop `users_name_search_idx`: search falls back to a sequential scan.
    Drop,
    /// Build it (again).
    Create,
    /// Say whether it exists.
    Status,
}

#[derive(Debug, Args)]
pub struct SuperuserArgs {
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub auth: AuthConfig,
    #[arg(long, env = "SUPERUSER_FIRST_NAME", default_value = "Admin")]
    pub first_name: String,
    #[arg(long, env = "SUPERUSER_SECOND_NAME", default_value = "Admin")]
    pub second_name: String,
    #[arg(long, env = "SUPERUSER_BIRTHDATE", default_value = "1970-01-01")]
    pub birthdate: String,
    /// The administrator's password (8 to 256 characters).
    #[arg(long, env = "SUPERUSER_PASSWORD", hide_env_values = true)]
    pub password: String,
}

impl Cli {
    /// How logs are written for this command (only `serve` can choose JSON).
    pub fn log_format(&self) -> LogFormat {
        match &self.command {
            Command::Serve(config) => config.log_format,
            _ => LogFormat::Text,
        }
    }

    /// The name this process's traces carry (`service.name`).
    pub fn service_name(&self) -> &'static str {
        match &self.command {
            Command::Serve(config) if config.serve.service == crate::config::Service::Dialogs => {
                "socialnet-dialogs"
            }
            _ => "socialnet",
        }
    }
}

/// Runs the parsed command to completion. Logging is the caller's to set up (see `main`).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => {
            let app = Application::build(config).await?;
            app.run_until(app::shutdown_signal()).await
        }
        Command::Migrate(db_config) => {
            db::wait_and_ensure_database(&db_config.database_url, db_config.startup_wait()).await?;
            let pool = db::build_pool(&db_config)?;
            let applied = app::migrate(&pool, &db_config).await?;
            println!(
                "migrations up to date ({} applied now, {} known)",
                applied.len(),
                db::MIGRATIONS.len()
            );
            Ok(())
        }
        Command::Fake(FakeCommand::Users(args)) => {
            let report = fake_users(&args).await?;
            println!(
                "{} users in {:.1}s (load {:.1}s + index {:.1}s): {:.0} rows/s; seed {}",
                report.rows,
                (report.load + report.index).as_secs_f64(),
                report.load.as_secs_f64(),
                report.index.as_secs_f64(),
                report.rows_per_sec(),
                report.seed
            );
            Ok(())
        }
        Command::Fake(FakeCommand::Social(args)) => {
            let report = fake_social(&args).await?;
            println!(
                "{} follows and {} posts in {:.1}s; the most followed user has {} followers; seed {}",
                report.follows,
                report.posts,
                report.elapsed.as_secs_f64(),
                report.top_followers,
                report.seed
            );
            Ok(())
        }
        Command::Fake(FakeCommand::Dialogs(args)) => {
            let report = fake_dialogs(&args).await?;
            println!(
                "{} messages in {} new dialogs in {:.1}s ({:.0} messages/s); hot users {:?} are in {} dialogs; seed {}",
                report.messages,
                report.dialogs,
                report.elapsed.as_secs_f64(),
                report.messages as f64 / report.elapsed.as_secs_f64().max(1e-9),
                report.hot_users,
                report.hot_dialogs,
                report.seed
            );
            Ok(())
        }
        Command::Fake(FakeCommand::DialogShards(args)) => {
            println!("{}", dialog_shards(&args).await?);
            Ok(())
        }
        Command::Fake(FakeCommand::CopyDialogs(args)) => {
            let started = std::time::Instant::now();
            let copied = copy_dialogs(&args).await?;
            println!(
                "{copied} messages copied into tarantool in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Feed(FeedCommand::Rebuild(args)) => {
            anyhow::ensure!(args.all || args.user.is_some(), "say --user ID or --all");
            let only = args
                .user
                .as_deref()
                .map(str::parse::<users::UserId>)
                .transpose()?;
            // The server's own start-up (database, migrations, cache), on a throw-away port.
            let mut config = args.config;
            config.bind = "127.0.0.1:0".parse()?;
            let app = Application::build(config).await?;
            let built = app.state().feeds.rebuild_feeds(only).await?;
            println!("{built} feeds rebuilt");
            Ok(())
        }
        Command::Counters(CountersCommand::Rebuild(config)) => {
            let mut config = *config;
            config.bind = "127.0.0.1:0".parse()?;
            // The server's own start-up, serving dialogs itself whatever DIALOGS_URL says.
            config.dialogs.dialogs_url = None;
            let app = Application::build(config).await?;
            let state = app.state();
            let counters = state.counters.as_ref().ok_or_else(|| {
                anyhow::anyhow!("no unread counters: set REDIS_URL to a Redis that answers")
            })?;
            let started = std::time::Instant::now();
            let rebuilt = dialogs::unread::rebuild_now(&state.dialogs, &state.db, counters).await?;
            println!(
                "unread counters rebuilt in {:.1}s: {} dialog sides, {} unread messages",
                started.elapsed().as_secs_f64(),
                rebuilt.sides,
                rebuilt.unread
            );
            Ok(())
        }
        Command::Bench(BenchCommand::Run(args)) => {
            let (_, dir) = bench::run(&args).await?;
            println!("{}", dir.join("report.md").display());
            Ok(())
        }
        Command::Bench(BenchCommand::Compare(args)) => {
            let (markdown, dir) = bench::compare(&args)?;
            println!("{markdown}");
            eprintln!("written to {}", dir.display());
            Ok(())
        }
        Command::Bench(BenchCommand::Outage(args)) => {
            let (result, dir) = bench::outage::run(&args).await?;
            eprintln!("{}", result.markdown());
            println!("{}", dir.join("outage.md").display());
            Ok(())
        }
        Command::Bench(BenchCommand::Render { dir }) => {
            bench::RunResult::read(&dir)?.write(&dir)?;
            println!("{}", dir.join("report.md").display());
            Ok(())
        }
        Command::Lab(LabCommand::Index { dir, check }) => {
            let page = crate::lab::index::write(&dir, check)?;
            println!(
                "{}: {} comparisons, {} not measured",
                dir.join("index.html").display(),
                page.found,
                page.missing
            );
            Ok(())
        }
        Command::SearchIndex(args) => {
            let pool = crate::lab::bulk_pool(&args.db)?;
            let client = pool.get().await.context("connecting to the database")?;
            let started = std::time::Instant::now();
            match args.action {
                SearchIndexAction::Drop => users::sql::drop_search_index(&client).await?,
                SearchIndexAction::Create => {
                    users::sql::create_search_index(&client).await?;
                    client.batch_execute("analyze users").await?;
                }
                SearchIndexAction::Status => {}
            }
            let exists = users::sql::search_index_exists(&client).await?;
            println!(
                "users_name_search_idx: {} ({} ms)",
                if exists { "present" } else { "absent" },
                started.elapsed().as_millis()
            );
            Ok(())
        }
        Command::Shards(args) => {
            println!("{}", run_shards(args).await?);
            Ok(())
        }
        Command::CreateSuperuser(args) => {
            let id = create_superuser(args).await?;
            println!("{id}");
            Ok(())
        }
    }
}

async fn create_superuser(args: SuperuserArgs) -> anyhow::Result<users::UserId> {
    let user = NewUser {
        first_name: PersonName::parse("first_name", &args.first_name)?,
        second_name: PersonName::parse("second_name", &args.second_name)?,
        birthdate: Some(Birthdate::parse(&args.birthdate)?),
        biography: Some("administrator".to_owned()),
        city: None,
    };
    let password = Password::parse(args.password)?;
    db::wait_and_ensure_database(&args.db.database_url, args.db.startup_wait()).await?;
    let pool = db::build_pool(&args.db)?;
    db::migrate(&pool).await?;
    let hash = app::password_hasher(&args.auth)?
        .hash(password.into_inner())
        .await?;
    let client = pool.get().await.context("connecting to the database")?;
    Ok(users::sql::insert_user(&client, &user, &hash, true).await?)
}

async fn run_shards(args: ShardsArgs) -> anyhow::Result<String> {
    let mut config = db::connection_config(&args.db);
    // Moves and re-sharding run as long as they need.
    config.options("-c statement_timeout=0");
    let client = db::connect(&config)
        .await
        .context("connecting to the coordinator")?;
    let progress = |line: &str| eprintln!("{line}");
    match args.action {
        ShardsAction::Status => shards::status(&client).await,
        ShardsAction::AddWorker { nodes } => {
            let sharding = crate::shards::Sharding::from_config(&args.db)?;
            shards::add_workers(&client, &nodes, &sharding).await
        }
        ShardsAction::Rebalance => {
            // Workers that registered themselves (docker-compose-citus.yml) may not have seen
            // the dialog tables distributed yet.
            crate::shards::prepare(&client, &crate::shards::Sharding::from_config(&args.db)?)
                .await?;
            shards::rebalance(&client, false, progress).await
        }
        ShardsAction::Drain { node } => shards::drain(&client, &node, progress).await,
        ShardsAction::Remove { node } => shards::remove(&client, &node).await,
        ShardsAction::SetCount { count } => shards::set_shard_count(&client, count).await,
    }
}
