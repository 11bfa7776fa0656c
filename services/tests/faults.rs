//! Fault tests of the store on SQLite: a full disk, a database file made
//! unwritable, deleted or replaced under the server. Each asserts that nothing acknowledged is
//! lost, that the failure is UNAVAILABLE with a clear message, that health
//! says NOT_SERVING meanwhile, and that service comes back by itself.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Options, TestDatabase, assert_code, create_request, eventually_health, start_server_on};
use eucora::auth::Authenticated;
use eucora::v1 as pb;
use eucora::v1::deployment_service_client::DeploymentServiceClient;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// A size-limited tmpfs mounted for one test (CI and developers run as root
/// on this project's machines), unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a {size} tmpfs needs root (this project's machines run tests as root)");
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a ballast file, leaving about `keep` bytes free.
    fn fill_leaving(&self, keep: u64) -> PathBuf {
        let ballast = self.path().join("ballast");
        let free = fs_free(self.path());
        std::fs::write(&ballast, vec![0u8; usize::try_from(free.saturating_sub(keep)).unwrap()]).expect("ballast");
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn fs_free(path: &Path) -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(path).output().expect("df");
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df avail")
}

/// The id of the first create to succeed within 5 s: writes have resumed.
async fn create_once_writable(client: &DeploymentServiceClient<Authenticated>, prefix: &str) -> String {
    let attempt = AtomicU32::new(0);
    common::eventually("creates to succeed again", Duration::from_secs(5), || {
        let request_id = format!("{prefix}-{}", attempt.fetch_add(1, Ordering::SeqCst));
        let mut client = client.clone();
        async move {
            let created = client.create_deployment(create_request(&request_id, "firefox", 10)).await.ok()?;
            Some(created.into_inner().deployment.unwrap().id)
        }
    })
    .await
}

/// The server restarted on its database, after checking every `acknowledged` create reads back.
async fn restarted_keeping(server: common::TestServer, acknowledged: &[String]) -> common::TestServer {
    let database = server.shut_down().await;
    let server = start_server_on(database, Options::default()).await;
    let mut client = server.deployments();
    for id in acknowledged {
        let request = pb::GetDeploymentRequest { deployment_id: id.clone() };
        client.get_deployment(request).await.unwrap_or_else(|s| panic!("acknowledged {id} lost: {s:?}"));
    }
    server
}

/// Creates until the disk refuses writes; then frees space. Every create
/// that was acknowledged must be there after a restart, failures must be
/// UNAVAILABLE, health must follow, and writes must resume by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_no_acknowledged_create_and_recovers() {
    let disk = SmallDisk::mount("4m");
    let database = TestDatabase::sqlite_at(&disk.path().join("eucora.db"));
    let server = start_server_on(database, Options::default()).await;
    eventually_health(&server, ServingStatus::Serving).await;
    let ballast = disk.fill_leaving(256 * 1024);

    let mut client = server.deployments();
    let mut acknowledged = Vec::new();
    let mut refusals = 0;
    let mut attempt = 0;
    while refusals < 20 {
        attempt += 1;
        assert!(attempt < 5000, "the disk never filled");
        // Several in flight, so that failures meet concurrent transactions.
        let calls = (0..4).map(|i| {
            let mut client = client.clone();
            let request = create_request(&format!("full-{attempt}-{i}"), &format!("app-{attempt}-{i}"), 10);
            async move { client.create_deployment(request).await }
        });
        for result in futures_util::future::join_all(calls).await {
            match result {
                Ok(response) => acknowledged.push(response.into_inner().deployment.unwrap().id),
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "a full disk is UNAVAILABLE: {}", status.message());
                    refusals += 1;
                }
            }
        }
    }
    assert!(!acknowledged.is_empty(), "some creates fit before the disk filled");
    eventually_health(&server, ServingStatus::NotServing).await;
    let refused = client.create_deployment(create_request("full-refused", "app-refused", 10)).await;
    let status = assert_code(refused, Code::Unavailable);
    assert!(status.message().contains("database"), "the message says what is wrong: {}", status.message());

    // Everything acknowledged so far reads back while the disk is still full.
    for id in &acknowledged {
        let request = pb::GetDeploymentRequest { deployment_id: id.clone() };
        client.get_deployment(request).await.unwrap_or_else(|s| panic!("acknowledged {id} unreadable: {s:?}"));
    }

    // Space comes back: service resumes with no restart.
    std::fs::remove_file(&ballast).expect("free space");
    eventually_health(&server, ServingStatus::Serving).await;
    acknowledged.push(create_once_writable(&client, "after-full").await);

    // An outside writer can take the write lock: no connection was left inside a transaction.
    let db_path = disk.path().join("eucora.db");
    let outside = Command::new("sqlite3")
        .arg(&db_path)
        .arg("BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS outside_probe(x); ROLLBACK;")
        .output()
        .expect("sqlite3 (installed by .ci/services)");
    assert!(outside.status.success(), "outside writer blocked: {}", String::from_utf8_lossy(&outside.stderr));

    // A restart finds every acknowledged create exactly once.
    let server = restarted_keeping(server, &acknowledged).await;
    let listed = common::all_deployments(&mut server.deployments()).await.len();
    assert_eq!(listed, acknowledged.len(), "exactly the acknowledged creates are stored");
    server.stop().await;
}

/// The database directory removed under a running server: writes would go
/// into unlinked files and vanish, so they are refused and health says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_database_refuses_writes_and_is_not_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start_server_on(TestDatabase::sqlite_at(&dir.path().join("eucora.db")), Options::default()).await;
    let mut client = server.deployments();
    client.create_deployment(create_request("before-delete", "firefox", 10)).await.expect("create before");
    eventually_health(&server, ServingStatus::Serving).await;

    std::fs::remove_dir_all(dir.path()).expect("delete the database directory");
    let refused = client.create_deployment(create_request("after-delete", "firefox", 10)).await;
    let status = assert_code(refused, Code::Unavailable);
    assert!(status.message().contains("no longer there"), "{}", status.message());
    eventually_health(&server, ServingStatus::NotServing).await;
    server.stop().await;
}

/// The database file swapped for another one (a restore done under a
/// running server): writes are refused until a restart opens the new file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_database_refuses_writes_and_is_not_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("eucora.db");
    let server = start_server_on(TestDatabase::sqlite_at(&path), Options::default()).await;
    let mut client = server.deployments();
    client.create_deployment(create_request("before-swap", "firefox", 10)).await.expect("create before");
    eventually_health(&server, ServingStatus::Serving).await;

    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).expect("copy");
    std::fs::rename(&copy, &path).expect("swap in the copy");
    let refused = client.create_deployment(create_request("after-swap", "firefox", 10)).await;
    let status = assert_code(refused, Code::Unavailable);
    assert!(status.message().contains("replaced"), "{}", status.message());
    eventually_health(&server, ServingStatus::NotServing).await;
    server.stop().await;
}

/// Files made immutable (`chattr +i`) for a test, made writable again on drop
/// (a failed test must not leave a directory nobody can delete).
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(paths: Vec<PathBuf>) -> Immutable {
        let status = Command::new("chattr").arg("+i").args(&paths).status().expect("run chattr");
        assert!(status.success(), "chattr +i needs root and ext4 (this project's machines: /tmp is ext4)");
        Immutable(paths)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

/// The database file, its write-ahead log and their directory made
/// unwritable under a running server (`chattr +i`: on ext4 this stops writes
/// through descriptors already open, as a read-only remount cannot while
/// they are open): writes fail UNAVAILABLE saying why, never INTERNAL, reads
/// still answer, health says NOT_SERVING, and service resumes with no
/// restart once the files are writable again; nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_database_refuses_writes_and_recovers() {
    let dir = tempfile::tempdir_in("/tmp").expect("temp dir on /tmp");
    let path = dir.path().join("eucora.db");
    let server = start_server_on(TestDatabase::sqlite_at(&path), Options::default()).await;
    let mut client = server.deployments();
    let mut acknowledged = vec![common::create(&mut client, "before-lock", "firefox", 10).await.id];
    eventually_health(&server, ServingStatus::Serving).await;

    let files: Vec<PathBuf> = ["eucora.db", "eucora.db-wal"].iter().map(|f| dir.path().join(f)).collect();
    assert!(files.iter().all(|f| f.exists()), "WAL mode keeps a log beside the database");
    let locked = Immutable::set(files.into_iter().chain([dir.path().to_path_buf()]).collect());
    for n in 0..3 {
        let refused = client.create_deployment(create_request(&format!("locked-{n}"), "firefox", 10)).await;
        let status = assert_code(refused, Code::Unavailable);
        assert!(status.message().contains("database"), "the message says what is wrong: {}", status.message());
    }
    eventually_health(&server, ServingStatus::NotServing).await;
    let listed = client.list_deployments(pb::ListDeploymentsRequest::default()).await.expect("reads still answer");
    assert_eq!(listed.into_inner().deployments.len(), 1);

    drop(locked);
    eventually_health(&server, ServingStatus::Serving).await;
    acknowledged.push(create_once_writable(&client, "after-lock").await);

    restarted_keeping(server, &acknowledged).await.stop().await;
}
