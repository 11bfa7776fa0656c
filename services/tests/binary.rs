//! The `eucora` binary as an operator runs it: `--help` of every subcommand
//! (every flag clap knows, with its variable), `migrate` (twice), `serve` on
//! ports it picks and logs, answering `eucora health`, and stopping cleanly
//! on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use clap::CommandFactory;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_eucora");

/// `--help` of `args` (no subcommand: the top level).
fn help(args: &[&str]) -> String {
    let output = Command::new(BIN).args(args).arg("--help").output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

/// Every flag clap knows for `command`, with its environment variable.
fn flags(command: &clap::Command) -> Vec<(String, Option<String>)> {
    command
        .get_arguments()
        .filter_map(|arg| {
            let flag = format!("--{}", arg.get_long()?);
            Some((flag, arg.get_env().map(|env| env.to_string_lossy().into_owned())))
        })
        .filter(|(flag, _)| flag != "--help" && flag != "--version")
        .collect()
}

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    let cli = eucora_services::config::Cli::command();
    for (args, command) in [
        (vec![], cli.clone()),
        (vec!["serve"], cli.find_subcommand("serve").unwrap().clone()),
        (vec!["migrate"], cli.find_subcommand("migrate").unwrap().clone()),
        (vec!["health"], cli.find_subcommand("health").unwrap().clone()),
    ] {
        let help = help(&args);
        let flags = flags(&command);
        assert!(flags.len() >= 3, "{args:?}: {flags:?}");
        for (flag, env) in flags {
            assert!(help.contains(&flag), "{flag} missing from {args:?} --help:\n{help}");
            if let Some(env) = env {
                assert!(help.contains(&env), "{env} missing from {args:?} --help:\n{help}");
            }
        }
    }
    let top = help(&[]);
    assert!(top.contains("serve") && top.contains("migrate") && top.contains("health"));
    // `migrate` shows what migrating uses, and nothing of serving.
    let migrate = help(&["migrate"]);
    assert!(migrate.contains("--database-url") && migrate.contains("--log-format"));
    for serving in ["--listen", "--metrics-listen", "--controller-interval", "--max-connections"] {
        assert!(!migrate.contains(serving), "{serving} in migrate --help:\n{migrate}");
    }
}

#[test]
fn an_unauthenticated_server_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("eucora.db").display());
    let serve = |extra: &[&str]| {
        Command::new(BIN)
            .args(["serve", "--listen", "0.0.0.0:0", "--metrics-listen", "127.0.0.1:0", "--database-url", &url])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = serve(&[]);
    assert!(!refused.status.success());
    let logs = String::from_utf8_lossy(&refused.stdout);
    assert!(logs.contains("refusing to serve") && logs.contains("--insecure-no-auth"), "{logs}");
    let dev = serve(&["--dev-auth"]);
    assert!(!dev.status.success());
    assert!(String::from_utf8_lossy(&dev.stdout).contains("--dev-auth accepts documented tokens"));
}

#[test]
fn auth_token_prints_a_token_once_and_stores_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let output = Command::new(BIN)
        .args(["auth", "token", "--name", "alice", "--roles", "operator,approver", "--auth-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(!stored.contains(&token), "the token itself is never stored");
    let identities = eucora_services::auth::Identities::load(&file).unwrap();
    assert_eq!(identities.tokens.identify(&token).unwrap().name, "alice");
    let token_for = |name: &str, roles: &str| {
        Command::new(BIN).args(["auth", "token", "--name", name, "--roles", roles, "--auth-file"]).arg(&file).output()
    };
    assert!(!token_for("alice", "viewer").unwrap().status.success(), "an identity is added once");
    assert!(!token_for("bob", "root").unwrap().status.success(), "roles are the five known ones");
}

#[test]
fn migrate_twice_then_serve_and_stop_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("eucora.db").display());
    for _ in 0..2 {
        let status = Command::new(BIN).args(["migrate", "--database-url", &url]).status().unwrap();
        assert!(status.success());
    }

    // Port 0: the server picks free ports and says which (no race for a port picked in advance).
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .env("EUCORA_DATABASE_URL", &url)
        .env("EUCORA_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut logs = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let addr = loop {
        let line = logs.next().expect("the server logs where it listens").unwrap();
        if line.contains("\"listening\"") {
            let fields: serde_json::Value = serde_json::from_str(&line).unwrap();
            break fields["fields"]["grpc_addr"].as_str().expect("grpc_addr").to_owned();
        }
        seen.push(line);
    };
    // Ready when grpc.health.v1 says SERVING: `eucora health` answers 0 then, 1 for a server that is not there.
    let healthy = |addr: &str| Command::new(BIN).args(["health", "--addr", addr]).output().unwrap();
    let started = Instant::now();
    while !healthy(&addr).status.success() {
        assert!(started.elapsed() < Duration::from_secs(20), "never SERVING");
        std::thread::sleep(Duration::from_millis(50));
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let absent = healthy(&closed.to_string());
    assert_eq!(absent.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&absent.stderr).contains("connecting"), "says why");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let rest: Vec<String> = logs.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}");
    let first = seen.first().or(rest.first()).expect("a log line");
    assert!(first.starts_with('{') && first.contains("\"level\""), "JSON logs: {first}");
    assert!(rest.iter().any(|line| line.contains("stopped")), "{rest:?}");
}
