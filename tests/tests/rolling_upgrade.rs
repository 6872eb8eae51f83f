//! Rolling upgrades: a node of the previous release keeps running, and restarts, against a
//! database that a newer node has migrated (docs/decisions/0015-rolling-upgrades.md). A
//! newer release is simulated by a migration this build does not know, recorded as applied.

use iparking_mobile_api::{QuoteRequest, VehicleClass};
use iparking_tests::{Db, Live, Options, TestApp, TestDb};
use sqlx::{Connection, Executor};
use std::sync::Arc;

async fn a_newer_release_migrated(db: &TestDb) {
    let sql = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
               VALUES (99990101000000, 'a newer release', TRUE, X'00', 0)";
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        conn.execute(sql).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        conn.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                      VALUES (99990101000000, 'a newer release', TRUE, '\\x00'::bytea, 0)",
        )
        .await
        .unwrap();
    }
}

async fn an_older_node_runs_on_a_newer_schema(db: Db, live: Live) {
    let test_db = Arc::new(TestDb::create(db).await);
    drop(test_db.store().await); // migrated by this release
    a_newer_release_migrated(&test_db).await;
    // This build is now the older release: it starts (migrating again is a no-op) and serves.
    let t = TestApp::start_with(db, live, Options { share_db: Some(test_db.clone()), ..Options::default() }).await;
    assert_eq!(t.client.readyz().await.unwrap().database, "ok");
    let quote = QuoteRequest {
        point_code: "HK001".into(),
        vehicle_class: VehicleClass::Car,
        minutes: Some(60),
        amount: None,
        start: None,
        channel: None,
    };
    assert_eq!(t.client.quote(&quote).await.unwrap().turns, 1);
    // And restarts.
    t.stop().await;
    let again =
        TestApp::start_with(db, live, Options { share_db: Some(test_db), seed_pilot: false, ..Options::default() })
            .await;
    assert_eq!(again.client.readyz().await.unwrap().database, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_node_runs_on_a_newer_schema_sqlite() {
    an_older_node_runs_on_a_newer_schema(Db::Sqlite, Live::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_node_runs_on_a_newer_schema_postgres() {
    an_older_node_runs_on_a_newer_schema(Db::Postgres, Live::Redis).await;
}
