//! The one write path of pools (`api::write_pool`), as the configuration file and the API take
//! it: the checks come first and nothing is written when one fails; creating starts at
//! generation 1 and replacing bumps it; each write records one event naming its origin; the
//! configuration file's unchanged pools are left alone.

use std::collections::BTreeSet;

use api::{Origin, PoolWrite, PoolWriteError, Written, write_pool};
use rb_core::PoolSpec;
use serde_json::json;
use store::Store;

async fn store() -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "renderburst-api-pool-write-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    (Store::open(&dir.join("renderburst.db")).await.unwrap(), dir)
}

fn spec(max: u32) -> PoolSpec {
    PoolSpec::from_json(
        json!({
            "name": "maya",
            "mode": "vm",
            "vm_sizes": ["Standard_D8s_v5"],
            "image": "Canonical:ubuntu-24_04-lts:server:latest",
            "max": max,
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_config_file_and_the_api_write_pools_the_same_way() {
    let (store, dir) = store().await;
    let declared = BTreeSet::new();

    // The configuration file creates the pool: generation 1, one event by `config`.
    let written = write_pool(
        &store,
        &spec(4),
        PoolWrite::CreateOrReplace,
        &declared,
        Origin::Config,
    )
    .await
    .unwrap();
    assert!(matches!(written, Written::Created(_)), "{written:?}");
    assert_eq!(written.record().generation, 1);
    let log = store.events_after(0, 100).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].kind.as_str(), log[0].actor.as_str()),
        ("pool.created", "config")
    );
    assert_eq!(
        log[0].message,
        "pool maya created from the configuration file"
    );
    assert_eq!(log[0].data["max"], 4, "the spec itself: {}", log[0].data);

    // The same file again: nothing written, no event.
    let again = write_pool(
        &store,
        &spec(4),
        PoolWrite::CreateOrReplace,
        &declared,
        Origin::Config,
    )
    .await
    .unwrap();
    assert!(matches!(again, Written::Unchanged(_)), "{again:?}");
    assert_eq!(again.record().generation, 1);
    assert_eq!(store.events_after(0, 100).await.unwrap().len(), 1);

    // The API replaces it: the generation is bumped, the event names the caller and the change.
    let replaced = write_pool(
        &store,
        &spec(6),
        PoolWrite::Replace,
        &declared,
        Origin::Api { actor: "admin" },
    )
    .await
    .unwrap();
    assert!(matches!(replaced, Written::Replaced { .. }), "{replaced:?}");
    assert_eq!(replaced.record().generation, 2);
    let log = store.events_after(0, 100).await.unwrap();
    assert_eq!(
        (log[1].kind.as_str(), log[1].actor.as_str()),
        ("pool.replaced", "admin")
    );
    assert!(log[1].message.contains("max 4 → 6"), "{}", log[1].message);
    assert_eq!(log[1].data["spec"]["max"], 6, "{}", log[1].data);

    // Creating it again through the API is a conflict; nothing changes.
    let taken = write_pool(
        &store,
        &spec(6),
        PoolWrite::Create,
        &declared,
        Origin::Api { actor: "admin" },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(taken, PoolWriteError::Store(ref e) if e.is_conflict()),
        "{taken:?}"
    );

    // A change a live pool cannot take, from either origin: refused, naming the field.
    let mut batch = spec(6);
    batch.mode = rb_core::PoolMode::Batch;
    for origin in [Origin::Config, Origin::Api { actor: "admin" }] {
        let how = match origin {
            Origin::Config => PoolWrite::CreateOrReplace,
            Origin::Api { .. } => PoolWrite::Replace,
        };
        let refused = write_pool(&store, &batch, how, &declared, origin)
            .await
            .unwrap_err();
        match refused {
            PoolWriteError::Invalid(e) => assert!(!e.field.is_empty(), "{e:?}"),
            other => panic!("{other:?}"),
        }
    }

    // A spec that breaks a rule (max below min): refused before anything is read.
    let mut bad = spec(6);
    bad.min = 7;
    let refused = write_pool(
        &store,
        &bad,
        PoolWrite::CreateOrReplace,
        &declared,
        Origin::Config,
    )
    .await
    .unwrap_err();
    assert!(matches!(refused, PoolWriteError::Invalid(_)), "{refused:?}");

    // Replacing a pool that does not exist: not found.
    let mut other = spec(2);
    other.name = "nuke".into();
    let missing = write_pool(
        &store,
        &other,
        PoolWrite::Replace,
        &declared,
        Origin::Api { actor: "admin" },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(missing, PoolWriteError::Store(ref e) if e.is_not_found()),
        "{missing:?}"
    );

    // Nothing of the refusals was stored.
    assert_eq!(store.events_after(0, 100).await.unwrap().len(), 2);
    let pool = store.get_pool("maya").await.unwrap().unwrap();
    assert_eq!((pool.generation, pool.spec.max), (2, 6));
    assert!(store.get_pool("nuke").await.unwrap().is_none());
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}
