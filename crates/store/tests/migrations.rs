//! Every migration, applied in order on a database holding the data the schema before it
//! could hold (the bors habit): a migration that drops, mangles or fails on real rows is
//! caught here, not on a studio's database at the first start of a new version.
//!
//! `migration_seeds/NNNN.sql` is the data written right after migration `NNNN` (in the
//! schema as of that version; a seed file is optional for migrations that add no table or
//! column). After the last migration every table must hold a row, so a new migration that
//! adds a table comes with its seed. Then the store opens the database and reads the data
//! back through its own methods.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use store::{MIGRATOR, Store};

mod common;

use common::TempDir;

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/migration_seeds")
}

fn seed(version: i64) -> Option<String> {
    std::fs::read_to_string(seed_dir().join(format!("{version:04}.sql"))).ok()
}

async fn connect(path: &Path) -> SqlitePool {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .expect("open sqlite")
}

/// The migrations up to and including `version`, as the daemon of that version had them.
fn migrator_up_to(version: i64) -> Migrator {
    Migrator {
        migrations: Cow::Owned(
            MIGRATOR
                .iter()
                .filter(|m| m.version <= version)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    }
}

async fn tables(db: &SqlitePool) -> Vec<String> {
    sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("name"))
    .collect()
}

async fn schema(db: &SqlitePool) -> Vec<(String, String, String)> {
    sqlx::query(
        "SELECT type, name, COALESCE(sql, '') AS sql FROM sqlite_master \
         WHERE name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx_migrations%' ORDER BY type, name",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get("type"), r.get("name"), r.get("sql")))
    .collect()
}

#[tokio::test]
async fn every_migration_applies_on_the_data_of_the_one_before() {
    let dir = TempDir::new("migrations-chain");
    let path = dir.db();
    let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    assert!(!versions.is_empty());
    // Seeds name real migrations (a typo would silently seed nothing).
    for entry in std::fs::read_dir(seed_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let v: i64 = name
            .strip_suffix(".sql")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("seed file {name} is not NNNN.sql"));
        assert!(versions.contains(&v), "seed {name} names no migration");
    }

    let db = connect(&path).await;
    for &v in &versions {
        migrator_up_to(v)
            .run(&db)
            .await
            .unwrap_or_else(|e| panic!("migration {v:04} on the data before it: {e}"));
        if let Some(sql) = seed(v) {
            sqlx::raw_sql(&sql)
                .execute(&db)
                .await
                .unwrap_or_else(|e| panic!("seed {v:04}: {e}"));
        }
        let bad: Vec<String> = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        assert!(
            bad.is_empty(),
            "after {v:04}: foreign keys broken in {bad:?}"
        );
    }
    let ok: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(ok, "ok");
    let mut empty = vec![];
    for t in tables(&db).await {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{t}\""))
            .fetch_one(&db)
            .await
            .unwrap();
        if n == 0 {
            empty.push(t);
        }
    }
    assert!(
        empty.is_empty(),
        "tables without data after the chain: {empty:?}: add rows to crates/store/tests/migration_seeds/ \
         for the migration that created them"
    );

    // The chain ends in the schema a fresh database gets.
    let fresh_dir = TempDir::new("migrations-fresh");
    let fresh = connect(&fresh_dir.db()).await;
    MIGRATOR.run(&fresh).await.unwrap();
    assert_eq!(schema(&db).await, schema(&fresh).await);

    // What the migrations did to old rows.
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT owner_token_sha256 FROM requests WHERE id = '6f1c2b1e-9a55-4d1e-8f3a-2d7c1e0b9a03'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        owner.as_deref(),
        Some("a".repeat(64).as_str()),
        "0009 gives a request made by a named token that token as owner"
    );
    let created_events: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE kind = 'request.created'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        created_events, 1,
        "0003's trigger logs requests made after it"
    );
    db.close().await;

    // The daemon of today opens it and reads every kind of row back.
    let store = Store::open(&path)
        .await
        .expect("the store opens the migrated database");
    assert_eq!(
        store.owner_id().await.unwrap(),
        "0b7e4c1a-2f3d-4e5a-9b6c-7d8e9f0a1b2c",
        "the owner id that tags our Azure resources survives"
    );
    let pools = store.list_pools().await.unwrap();
    let names: Vec<&str> = pools.iter().map(|p| p.spec.name.as_str()).collect();
    assert_eq!(names, ["maya", "nuke"], "first-wave specs still parse");
    let maya = store.get_pool("maya").await.unwrap().unwrap();
    assert_eq!((maya.spec.target, maya.spec.max), (3, 50));
    let vms = store.list_vms(Some("maya")).await.unwrap();
    assert_eq!(vms.len(), 3);
    let open = store.open_intents().await.unwrap();
    assert_eq!(open.len(), 1, "the open intent is still there for recovery");
    assert_eq!(open[0].node, "maya-00003");
    let live = store
        .list_requests(Some("maya"), false, 2_000)
        .await
        .unwrap();
    assert_eq!(live.len(), 2);
    assert_eq!(store.list_schedules().await.unwrap().len(), 1);
    let nuke = store.get_batch_state("nuke").await.unwrap().unwrap();
    assert_eq!(nuke.preempted_total, 2);
    assert_eq!(
        store
            .pool_for_enroll_token_hash(&"c".repeat(64))
            .await
            .unwrap()
            .as_deref(),
        Some("maya"),
        "0008 moved the enrollment token of 0007 into the keys"
    );
    assert_eq!(
        store
            .node_for_token_hash(&"b".repeat(64))
            .await
            .unwrap()
            .as_deref(),
        Some("maya-00001")
    );
    assert_eq!(
        store
            .node_ips()
            .await
            .unwrap()
            .get("maya-00001")
            .map(String::as_str),
        Some("10.0.0.4")
    );
    assert_eq!(store.list_tokens().await.unwrap().len(), 1);
    let held = store.list_backoffs(Some("maya")).await.unwrap();
    assert_eq!(held.len(), 1, "0012's backoff survives");
    assert_eq!((held[0].streak, held[0].permanent), (3, true));
    assert_eq!(
        store.reusable_names("maya").await.unwrap(),
        ["maya-00004"],
        "a reserved name of a failed create is still reused"
    );
}
