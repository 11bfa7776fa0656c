//! Other languages use the API through stubs generated from `proto/`: a
//! Python client generated with grpcio-tools (installed by `.ci/services`)
//! creates a deployment and reads it back from a live server.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Backend, start_server};

/// Generates the Python stubs of every file under `proto/` into `out`.
fn generate_python(out: &Path) {
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let files: Vec<String> = ["eucora/v1/common", "eucora/v1/deployment", "eucora/v1/promotion", "eucora/v1/connector"]
        .into_iter()
        .chain(["eucora/v1/risk", "google/api/field_behavior"])
        .map(|file| format!("{file}.proto"))
        .collect();
    let status = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", &format!("-I{}", proto.display())])
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .args(&files)
        .current_dir(&proto)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "grpcio-tools generated the stubs (pip install grpcio-tools)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_generated_from_proto_creates_and_reads_a_deployment() {
    let generated = tempfile::tempdir().unwrap();
    generate_python(generated.path());
    let server = start_server(Backend::Sqlite).await;
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client.py");
    let addr = server.addr.to_string();
    let generated_dir = generated.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(client).arg(&generated_dir).arg(addr).output().expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("\"app_name\": \"vlc\""), "{stdout}");
    server.stop().await;
}
