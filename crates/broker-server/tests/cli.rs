//! The binary's command line: help, and settings refused at start with a useful message.

use std::process::Command;

fn broker_server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_broker-server"))
}

#[test]
fn help_documents_every_flag_and_its_environment_variable() {
    let output = broker_server().arg("--help").output().expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    for (flag, env) in [
        ("--bind", "BROKER_BIND"),
        ("--port", "PORT"),
        ("--data", "BROKER_DATA"),
        ("--allow-origin", "BROKER_ALLOW_ORIGIN"),
        ("--heartbeat", "BROKER_HEARTBEAT"),
        ("--retry", "BROKER_RETRY"),
        ("--max-body", "BROKER_MAX_BODY"),
        ("--max-event-name", "BROKER_MAX_EVENT_NAME"),
        ("--max-connections", "BROKER_MAX_CONNECTIONS"),
        ("--header-timeout", "BROKER_HEADER_TIMEOUT"),
        ("--write-timeout", "BROKER_WRITE_TIMEOUT"),
        ("--log-format", "BROKER_LOG_FORMAT"),
        ("--demo", "BROKER_DEMO"),
        ("--drain-delay", "BROKER_DRAIN_DELAY"),
        ("--shutdown-timeout", "BROKER_SHUTDOWN_TIMEOUT"),
        ("--threads", "BROKER_THREADS"),
    ] {
        assert!(help.contains(flag), "--help mentions {flag}");
        assert!(help.contains(&format!("env: {env}")), "--help mentions {env}");
    }
}

#[test]
fn invalid_settings_fail_at_start_and_say_how_to_fix_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("broker.redb");
    for (args, expected) in [
        (&["--allow-origin", "example.com"][..], "is not an origin"),
        (&["--heartbeat", "0s"][..], "--heartbeat must be longer than 0"),
        (&["--heartbeat", "soon"][..], "invalid value 'soon'"),
        (&["--max-body", "0"][..], "--max-body must be at least 1"),
        (&["--threads", "0"][..], "invalid value '0' for '--threads <THREADS>'"),
    ] {
        let output = broker_server()
            .args(args)
            .arg("--data")
            .arg(&data)
            .args(["--port", "0"])
            .output()
            .expect("run broker-server");
        assert!(!output.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
