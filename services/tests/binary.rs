//! The `eucora` binary as an operator runs it: `--help`, `migrate` (twice),
//! `serve` answering `eucora health`, and stopping cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_eucora");

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, env) in [
        ("--listen", "EUCORA_LISTEN"),
        ("--database-url", "EUCORA_DATABASE_URL"),
        ("--database-max-connections", "EUCORA_DATABASE_MAX_CONNECTIONS"),
        ("--database-acquire-timeout", "EUCORA_DATABASE_ACQUIRE_TIMEOUT"),
        ("--health-probe-interval", "EUCORA_HEALTH_PROBE_INTERVAL"),
        ("--shutdown-grace", "EUCORA_SHUTDOWN_GRACE"),
        ("--database-operation-timeout", "EUCORA_DATABASE_OPERATION_TIMEOUT"),
        ("--max-connections", "EUCORA_MAX_CONNECTIONS"),
        ("--connection-idle-timeout", "EUCORA_CONNECTION_IDLE_TIMEOUT"),
        ("--max-streams-per-connection", "EUCORA_MAX_STREAMS_PER_CONNECTION"),
        ("--max-watch-streams", "EUCORA_MAX_WATCH_STREAMS"),
        ("--log-format", "EUCORA_LOG_FORMAT"),
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
        assert!(help.contains(env), "{env} missing from:\n{help}");
    }
    assert!(help.contains("serve") && help.contains("migrate"));
}

#[test]
fn migrate_twice_then_serve_and_stop_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("eucora.db").display());
    for _ in 0..2 {
        let status = Command::new(BIN).args(["migrate", "--database-url", &url]).status().unwrap();
        assert!(status.success());
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", "127.0.0.1:0"])
        .env("EUCORA_DATABASE_URL", &url)
        .env("EUCORA_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // `eucora health` answers 0 once the server is SERVING, 1 for a server that is not there.
    let healthy = |addr: &str| Command::new(BIN).args(["health", "--addr", addr]).output().unwrap();
    let started = Instant::now();
    while !healthy(&format!("127.0.0.1:{port}")).status.success() {
        assert!(started.elapsed() < Duration::from_secs(20), "never SERVING");
        std::thread::sleep(Duration::from_millis(50));
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let absent = healthy(&closed.to_string());
    assert_eq!(absent.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&absent.stderr).contains("connecting"), "says why");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "exit {:?}", output.status);
    let logs = String::from_utf8_lossy(&output.stdout);
    let first = logs.lines().next().expect("a log line");
    assert!(first.starts_with('{') && first.contains("\"level\""), "JSON logs: {first}");
    assert!(logs.contains("stopped"), "{logs}");
}
