use clap::Parser;
use reqwest::StatusCode;
use socialnet::cli::{run, Cli};

use crate::helpers::{spawn_app, DatabaseGuard};

#[tokio::test]
async fn migrating_twice_is_harmless() {
    let app = spawn_app().await;
    // spawn_app already migrated; the command runs them again.
    run(Cli::parse_from([
        "socialnet",
        "migrate",
        "--database-url",
        &app.database_url,
    ]))
    .await
    .unwrap();
    let pool =
        socialnet::db::build_pool(&crate::helpers::test_config(&app.database_url).db).unwrap();
    assert!(socialnet::db::migrate(&pool).await.unwrap().is_empty());
    app.register_user("Анна", "Иванова").await;
}

/// Migration 0012 counts, in the dialogs already there, the messages each party has sent and
/// how many of the other's each one's mark covers; the sends and marks after it go on counting,
/// by the new calls and by the old send (0013) alike. The unread counters are these counts.
#[tokio::test]
async fn the_counts_migration_counts_the_dialogs_already_there() {
    let database_url = crate::helpers::fresh_database_url();
    let _database = DatabaseGuard::new(&database_url);
    socialnet::db::wait_and_ensure_database(
        &crate::helpers::parse_url(&database_url),
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap();
    let pool = socialnet::db::build_pool(&crate::helpers::test_config(&database_url).db).unwrap();
    let db = pool.get().await.unwrap();
    // The schema as it was before 0012, with a dialog written by the call of that time.
    db.batch_execute(
        "create table schema_migrations (version integer primary key, name text not null,
                                         applied_at timestamptz not null default now())",
    )
    .await
    .unwrap();
    for migration in &socialnet::db::MIGRATIONS[..11] {
        db.batch_execute(migration.sql).await.unwrap();
        db.execute(
            "insert into schema_migrations (version, name) values ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .unwrap();
    }
    db.batch_execute(
        "insert into users (first_name, second_name, birthdate, password_hash)
         values ('Анна', 'Иванова', '1990-01-01', 'x'), ('Борис', 'Петров', '1990-01-01', 'x');
         select send_dialog_message(7, 1, 2, s, r, 'm')
         from (values (1, 2), (1, 2), (2, 1), (1, 2), (2, 1)) v(s, r);
         update dialogs set read_low = 4, read_high = 1 where dialog_id = 7;",
    )
    .await
    .unwrap();
    assert_eq!(socialnet::db::migrate(&pool).await.unwrap(), [12, 13]);
    let counts = |row: tokio_postgres::Row| (row.get::<_, i64>(0), row.get::<_, i64>(1));
    let sent = "select sent_low, sent_high from dialogs where dialog_id = 7";
    assert_eq!(counts(db.query_one(sent, &[]).await.unwrap()), (3, 2));
    // Messages 1, 2, 4 are low's, 3 and 5 high's: low's mark at 4 covers high's 3; high's at 1
    // covers low's 1.
    let seen = "select seen_low, seen_high from dialogs where dialog_id = 7";
    assert_eq!(counts(db.query_one(seen, &[]).await.unwrap()), (1, 1));
    // Both calls count from there: the new one answers the number and the sender's count.
    let stored: Vec<i64> = db
        .query_one("select store_dialog_message(7, 1, 2, 2, 1, 'm')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, [6, 3]);
    db.execute("select send_dialog_message(7, 1, 2, 1, 2, 'm')", &[])
        .await
        .unwrap();
    assert_eq!(counts(db.query_one(sent, &[]).await.unwrap()), (4, 3));
    // Low reads on to the end (message 7): high's 5 and 6 are newly covered.
    let mark: Vec<i64> = db
        .query_one("select read_dialog(7, 1, 2, true, 100)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(mark, [7, 1, 3]);
    let again: Vec<i64> = db
        .query_one("select read_dialog(7, 1, 2, true, 5)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, [7, 0, 3]);
}

#[tokio::test]
async fn create_superuser_makes_an_admin_who_can_log_in() {
    let app = spawn_app().await;
    run(Cli::parse_from([
        "socialnet",
        "create-superuser",
        "--database-url",
        &app.database_url,
        "--password",
        "admin-password-1",
        "--argon2-memory-kib",
        "1024",
        "--argon2-iterations",
        "1",
    ]))
    .await
    .unwrap();
    let client = app.db().await;
    let row = client
        .query_one("select id, first_name from users where is_admin", &[])
        .await
        .unwrap();
    let (id, name): (i64, String) = (row.get(0), row.get(1));
    assert_eq!(name, "Admin");
    let response = app.login(&id.to_string(), "admin-password-1").await;
    assert_eq!(response.status(), StatusCode::OK);

    // A weak password is refused before anything is written.
    let result = run(Cli::parse_from([
        "socialnet",
        "create-superuser",
        "--database-url",
        &app.database_url,
        "--password",
        "short",
    ]))
    .await;
    assert!(result.is_err());
    let users: i64 = client
        .query_one("select count(*) from users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 1, "only the first administrator was written");
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let database_url = crate::helpers::fresh_database_url();
    let _database = DatabaseGuard::new(&database_url);
    let mut config = crate::helpers::test_config(&database_url);
    // A hash that takes about a second, so that the request is surely sent, accepted and still
    // running when the stop comes 300 ms after it was sent.
    config.auth.argon2_memory_kib = 65_536;
    config.auth.argon2_iterations = 24;
    let app = socialnet::Application::build(config).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    // Registration hashes a password: a request that is still running when shutdown starts.
    let body = crate::helpers::registration("Анна", "Иванова");
    let request = tokio::spawn({
        let client = client.clone();
        let url = format!("{address}/user/register");
        async move { client.post(url).json(&body).send().await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.send(()).unwrap();
    assert!(
        !request.is_finished(),
        "the request finished before the stop: nothing was tested"
    );
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.await.unwrap().unwrap();
    // New connections are refused once it has stopped.
    assert!(client
        .get(format!("{address}/health"))
        .send()
        .await
        .is_err());
}

/// Start-up explains itself when the database cannot be reached: the error names where it
/// looked and the setting that changes it; an error that waiting cannot fix (a role that does
/// not exist) stops it at once, where an unreachable server is waited for.
#[tokio::test]
async fn a_database_that_cannot_be_reached_is_named_and_a_permanent_error_not_waited_for() {
    let url = crate::helpers::fresh_database_url();
    let base = url.rsplit_once('/').unwrap().0.to_owned();
    let nobody = base.replacen("postgres@", "no_such_role@", 1) + "/socialnet";
    let mut config = crate::helpers::test_config(&url);
    config.db.database_url = crate::helpers::parse_url(&nobody);
    config.db.db_startup_wait_secs = 20;
    let started = std::time::Instant::now();
    let error = match socialnet::Application::build(config).await {
        Ok(_) => panic!("started as a role that does not exist"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "waited {:?} for an error that waiting cannot fix",
        started.elapsed()
    );
    assert!(
        error.contains("127.0.0.1:5432") || error.contains("localhost:5432"),
        "{error}"
    );
    assert!(error.contains("DATABASE_URL"), "{error}");
    assert!(error.contains("no_such_role"), "{error}");

    // Nothing listens: waited for, then named.
    let port = crate::helpers::free_port();
    let mut config = crate::helpers::test_config(&url);
    config.db.database_url =
        crate::helpers::parse_url(&format!("postgres://postgres@127.0.0.1:{port}/socialnet"));
    config.db.db_startup_wait_secs = 1;
    let error = match socialnet::Application::build(config).await {
        Ok(_) => panic!("started without a database"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(error.contains("socialnet"), "{error}");
    assert!(!error.contains("`postgres` database"), "{error}");
}

/// A port already taken is found before any database work: at once, naming it.
#[tokio::test]
async fn a_port_already_taken_is_found_before_the_database_is_waited_for() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = crate::helpers::free_port();
    let mut config =
        crate::helpers::test_config(&format!("postgres://postgres@127.0.0.1:{port}/socialnet"));
    config.bind = taken.local_addr().unwrap();
    config.db.db_startup_wait_secs = 20;
    let started = std::time::Instant::now();
    let error = match socialnet::Application::build(config).await {
        Ok(_) => panic!("bound a port already taken"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        error.contains(&taken.local_addr().unwrap().to_string()),
        "{error}"
    );
}
