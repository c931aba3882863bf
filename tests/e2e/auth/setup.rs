//! Turning authorization on and off: open mode and its warning, configurations refused at
//! start-up, tokens minted by `broker-server token` for each algorithm, and the routes that
//! need no token.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use super::cli::{key_pair, mint, run};
use super::{SECRET, admin_claims, claims, get, insert, sign, sign_with, start};
use crate::support::Server;

/// What the server logs at start-up when it runs without a key.
const OPEN_WARNING: &str = "no token key configured";

/// Polls the server's log until it contains `text`, for at most a few seconds.
async fn wait_for_log(server: &Server, text: &str) -> String {
    for _ in 0..100 {
        let log = server.log();
        if log.contains(text) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the log never said {text:?}:\n{}", server.log())
}

#[tokio::test]
async fn without_a_key_everything_is_allowed_and_a_warning_is_logged() {
    let server = Server::start().await;
    insert(&server, None, "secret", json!(1)).await.expect_status(201);
    get(&server, "/audit/secret", None).await.expect_status(200);
    get(&server, "/metrics", None).await.expect_status(200);
    let mut sse = crate::support::Sse::snapshot(&server).await;
    assert_eq!(sse.next_event().await.event, "secret");
    let log = wait_for_log(&server, OPEN_WARNING).await;
    assert!(log.contains("WARN"), "the open-mode message is a warning:\n{log}");
    // Even an invalid token is not looked at: there is nothing to check it with.
    insert(&server, Some("not-a-jwt"), "secret", json!(2)).await.expect_status(201);

    let secured = start(&[]).await;
    wait_for_log(&secured, "serving").await;
    let log = secured.log();
    assert!(!log.contains(OPEN_WARNING), "a server with a key does not warn:\n{log}");
}

#[tokio::test]
async fn cookie_tokens_with_any_origin_are_refused_at_start_up() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("broker.redb");
    let data = data.to_str().expect("a UTF-8 path");
    let server = ["--port", "0", "--bind", "127.0.0.1", "--data", data, "--jwt-cookie", "t"];
    for origin in [&["--allow-origin", "*"][..], &[]] {
        let args = [&server[..], origin].concat();
        let output = run(&args, &[("BROKER_JWT_SECRET", SECRET)]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started:\n{stdout}\n{stderr}");
        assert!(!stdout.contains("listening"), "{args:?}: {stdout}");
        for expected in ["--jwt-cookie", "--allow-origin", "origin"] {
            assert!(
                stderr.contains(expected),
                "{args:?}: stderr does not name {expected}:\n{stderr}"
            );
        }
    }
}

#[tokio::test]
async fn token_subcommand_mints_hs256_tokens_the_server_accepts() {
    let env = [("BROKER_JWT_SECRET", SECRET)];
    let server = Server::start_with(&[], &env).await;
    let scopes =
        ["--insert", "orders.*", "--events", "orders.*", "--audit", "orders.*", "--sub", "alice"];
    let token = mint(&[&scopes[..], &["--expires-in", "1h"]].concat(), &env).await;
    insert(&server, Some(&token), "orders.a", json!(1)).await.expect_status(201);
    get(&server, "/audit/orders.a", Some(&token)).await.expect_status(200);
    // The scopes are the ones asked for, no wider.
    insert(&server, Some(&token), "secret", json!(2)).await.expect_insufficient_scope();
    get(&server, "/audit/secret", Some(&token)).await.expect_insufficient_scope();
    // A token minted with another secret is refused.
    let other = mint(&scopes, &[("BROKER_JWT_SECRET", super::OTHER_SECRET)]).await;
    insert(&server, Some(&other), "orders.a", json!(3)).await.expect_invalid_token();
}

/// Public-key algorithms and the `openssl genpkey` options that make a key for each.
const KEY_ALGORITHMS: [(&str, &[&str]); 3] = [
    ("EdDSA", &["-algorithm", "ed25519"]),
    ("ES256", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
    ("RS256", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
];

#[tokio::test]
async fn token_subcommand_mints_public_key_tokens_the_server_accepts() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (algorithm, options) in KEY_ALGORITHMS {
        let (private, public) = key_pair(dir.path(), algorithm, options);
        let (other_private, _) = key_pair(dir.path(), &format!("{algorithm}-other"), options);
        let public = public.to_str().expect("a UTF-8 path");
        let server =
            Server::start_with(&["--jwt-alg", algorithm, "--jwt-key-file", public], &[]).await;
        let key = |private: &std::path::Path| {
            let private = private.to_str().expect("a UTF-8 path").to_string();
            ["--jwt-alg".to_string(), algorithm.to_string(), "--jwt-key-file".into(), private]
        };
        let scopes = ["--insert", "orders.*", "--audit", "*"];
        let own = key(&private);
        let own: Vec<&str> = own.iter().map(String::as_str).chain(scopes).collect();
        let token = mint(&own, &[]).await;
        let what = format!("{algorithm} token");
        let answer = insert(&server, Some(&token), "orders.a", json!(1)).await;
        assert_eq!(answer.status, 201, "{what}: {answer:?}");
        insert(&server, Some(&token), "secret", json!(2)).await.expect_insufficient_scope();

        let other = key(&other_private);
        let other: Vec<&str> = other.iter().map(String::as_str).chain(scopes).collect();
        let forged = mint(&other, &[]).await;
        let answer = insert(&server, Some(&forged), "orders.a", json!(3)).await;
        assert_eq!(answer.status, 401, "{what} signed by another key: {answer:?}");
        answer.expect_invalid_token();
        // The public key is public: HS256 with it as the secret must not pass for a signature.
        let pem = std::fs::read(public).expect("read the public key");
        let confused =
            sign_with(&admin_claims(), Algorithm::HS256, &EncodingKey::from_secret(&pem));
        let answer = insert(&server, Some(&confused), "orders.a", json!(4)).await;
        assert_eq!(
            answer.status, 401,
            "HS256 token keyed with the {algorithm} public key: {answer:?}"
        );
        answer.expect_invalid_token();
        assert_eq!(server.health().await.last_id, 1, "{what}: only the valid insert stored");
    }
}

#[tokio::test]
async fn health_checks_need_no_token_and_metrics_needs_one() {
    let server = start(&[]).await;
    for path in ["/healthz", "/readyz"] {
        get(&server, path, None).await.expect_status(200);
    }
    get(&server, "/metrics", None).await.expect_missing_token();
    get(&server, "/metrics", Some("not-a-jwt")).await.expect_invalid_token();
    // Any valid token may read the metrics, even one without scopes.
    let answer = get(&server, "/metrics", Some(&sign(&claims(&[], &[], &[])))).await;
    answer.expect_status(200);
    assert!(answer.body.contains("broker_"), "{answer:?}");
}
