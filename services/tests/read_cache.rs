//! The read cache that serves Gets and List pages: on PostgreSQL other
//! replicas write too, so a deployment one replica kept must show another's
//! save at once; on SQLite this process's own saves replace what it kept.

mod common;

use std::sync::Arc;

use common::{Backend, TestDatabase, new_deployment};
use eucora_services::domain::Deployment;
use eucora_services::store::{CreateOutcome, DeploymentFilter, NewCreate, Store, StoreConfig, StoreError};
use uuid::Uuid;

on_every_backend!(
    a_save_through_another_store_shows_at_once,
    concurrent_gets_each_see_saves_made_elsewhere,
    a_page_asked_for_after_a_create_shows_it_while_the_same_page_is_being_read
);

async fn created(store: &Store, app: &str) -> Deployment {
    let (deployment, events) = new_deployment(app);
    let item = NewCreate { request_id: app, fingerprint: app, deployment: &deployment, events: &events };
    match store.create_deployments(&[item]).await.remove(0).unwrap() {
        CreateOutcome::Created(deployment) => deployment,
        other => panic!("{other:?}"),
    }
}

/// A reader and a writer on one new database: two stores (two replicas) on
/// PostgreSQL; on SQLite (one process per database) the same store twice.
async fn reader_and_writer(backend: Backend) -> (TestDatabase, Arc<Store>, Arc<Store>) {
    let database = TestDatabase::create(backend).await;
    let reader = Arc::new(Store::connect(&StoreConfig::new(&database.url)).await.unwrap());
    reader.migrate().await.unwrap();
    let writer = match backend {
        Backend::Postgres => Arc::new(Store::connect(&StoreConfig::new(&database.url)).await.unwrap()),
        Backend::Sqlite => reader.clone(),
    };
    (database, reader, writer)
}

async fn a_save_through_another_store_shows_at_once(backend: Backend) {
    let (_database, reader, writer) = reader_and_writer(backend).await;
    let deployment = created(&reader, "firefox").await;
    let _other = created(&reader, "chrome").await;
    // Kept by the reader, by a Get and by a List page.
    assert_eq!(reader.get_deployment(deployment.id).await.unwrap().revision, 0);
    let listed = reader.list_deployments(&DeploymentFilter::default(), None, 10).await.unwrap().items;
    assert_eq!(listed.len(), 2);

    let mut changed = writer.get_deployment(deployment.id).await.unwrap();
    changed.status_reason = "changed elsewhere".into();
    writer.save_deployment(&changed, &[]).await.unwrap();

    let got = reader.get_deployment(deployment.id).await.unwrap();
    assert_eq!((got.revision, got.status_reason.as_str()), (1, "changed elsewhere"));
    let listed = reader.list_deployments(&DeploymentFilter::default(), None, 10).await.unwrap().items;
    let shown = listed.iter().find(|d| d.id == deployment.id).expect("listed");
    assert_eq!((shown.revision, shown.status_reason.as_str()), (1, "changed elsewhere"));
    assert!(reader.get_deployment(Uuid::now_v7()).await.is_err(), "an unknown id is not found");
}

/// Many Gets at once, of kept deployments some of which another store has
/// saved since, and of ids that do not exist: on PostgreSQL their revision
/// checks are read together, in statements of several ids; each Get must
/// still get its own deployment as last saved, or NOT_FOUND.
async fn concurrent_gets_each_see_saves_made_elsewhere(backend: Backend) {
    let (_database, reader, writer) = reader_and_writer(backend).await;
    let mut deployments = Vec::new();
    for n in 0..45 {
        let deployment = created(&reader, &format!("app-{n}")).await;
        reader.get_deployment(deployment.id).await.unwrap();
        deployments.push(deployment);
    }
    // Every third saved once elsewhere, every fifth twice.
    let mut expected = Vec::new();
    for (n, deployment) in deployments.iter().enumerate() {
        let saves = if n % 5 == 0 { 2 } else { usize::from(n % 3 == 0) };
        let mut changed = deployment.clone();
        for save in 0..saves {
            changed.status_reason = format!("saved {save} elsewhere");
            changed = writer.save_deployment(&changed, &[]).await.unwrap();
        }
        expected.push((deployment.id, Some((changed.revision, changed.status_reason))));
    }
    expected.extend((0..5).map(|_| (Uuid::now_v7(), None)));

    let gets = expected.iter().cycle().take(expected.len() * 3).map(|(id, _)| reader.get_deployment(*id));
    let got = futures_util::future::join_all(gets).await;
    for ((id, wanted), got) in expected.iter().cycle().zip(got) {
        match (wanted, got) {
            (Some(wanted), Ok(got)) => assert_eq!(&(got.revision, got.status_reason), wanted, "deployment {id}"),
            (None, Err(StoreError::NotFound(missing))) => assert_eq!(missing, *id),
            (wanted, got) => panic!("deployment {id}: wanted {wanted:?}, got {got:?}"),
        }
    }
}

/// Identical List pages asked for at once share one read of their keys;
/// a page asked for after a create finished must still show it, however
/// many reads of the same page are running when it asks.
async fn a_page_asked_for_after_a_create_shows_it_while_the_same_page_is_being_read(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = Arc::new(Store::connect(&StoreConfig::new(&database.url)).await.unwrap());
    store.migrate().await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let pollers: Vec<_> = (0..8)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    store.list_deployments(&DeploymentFilter::default(), None, 5).await.unwrap();
                }
            })
        })
        .collect();
    for n in 0..40 {
        let deployment = created(&store, &format!("app-{n}")).await;
        let page = store.list_deployments(&DeploymentFilter::default(), None, 5).await.unwrap();
        assert_eq!(page.items.first().map(|d| d.id), Some(deployment.id), "create {n} is first on the page");
    }
    stop.cancel();
    for poller in pollers {
        poller.await.unwrap();
    }
}
