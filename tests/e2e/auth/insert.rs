//! `POST /insert` with authorization on: no token, bad tokens and bad headers get `401`, a
//! token for other events gets `403`, and none of them stores anything.

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::{
    OTHER_SECRET, admin_audit, admin_claims, bearer, claims, insert, now_secs, send, sign,
    sign_with, start, tampered, unsigned, with,
};
use crate::support::Server;

/// Checks that nothing at all was stored on `server`.
async fn assert_nothing_stored(server: &Server) {
    assert_eq!(server.health().await.last_id, 0, "a refused insert stores nothing");
    assert_eq!(admin_audit(server, "orders.a").await, Vec::<Value>::new());
}

#[tokio::test]
async fn insert_without_a_token_is_401_with_a_bearer_challenge() {
    let server = start(&[]).await;
    insert(&server, None, "orders.a", json!(1)).await.expect_missing_token();
    assert_nothing_stored(&server).await;
}

/// Tokens that must be refused, each with what is wrong with it. Every one would allow the
/// insert if the broker believed it.
fn invalid_tokens() -> Vec<(&'static str, String)> {
    let all = admin_claims();
    let hs256 = |secret: &str| EncodingKey::from_secret(secret.as_bytes());
    let narrow = sign(&claims(&["other"], &[], &[]));
    let signed = sign(&all);
    let (header_and_payload, _) = signed.rsplit_once('.').expect("a JWT has a signature");
    vec![
        ("expired a minute ago", sign(&with(all.clone(), "exp", json!(now_secs() - 60)))),
        ("expired a second ago", sign(&with(all.clone(), "exp", json!(now_secs() - 1)))),
        (
            "not valid before an hour from now",
            sign(&with(all.clone(), "nbf", json!(now_secs() + 3600))),
        ),
        ("without exp", sign(&with(all.clone(), "exp", Value::Null))),
        ("signed with another secret", sign_with(&all, Algorithm::HS256, &hs256(OTHER_SECRET))),
        ("unsigned, alg none", unsigned(&all)),
        ("HS256 with the signature cut off", format!("{header_and_payload}.")),
        ("HS256 without a signature part", header_and_payload.to_string()),
        ("HS384 with the right secret", sign_with(&all, Algorithm::HS384, &hs256(super::SECRET))),
        ("a narrow token's payload swapped for an admin one", tampered(&narrow, &all)),
        ("not a JWT", "not-a-jwt".to_string()),
        ("three empty parts", "..".to_string()),
    ]
}

#[tokio::test]
async fn insert_with_an_invalid_token_is_401_invalid_token_and_stores_nothing() {
    let server = start(&[]).await;
    for (what, token) in invalid_tokens() {
        let answer = insert(&server, Some(&token), "orders.a", json!(1)).await;
        assert_eq!(answer.status, 401, "a token {what} must be refused: {answer:?}");
        answer.expect_invalid_token();
    }
    assert_nothing_stored(&server).await;
}

#[tokio::test]
async fn malformed_authorization_headers_are_401_and_any_case_of_bearer_works() {
    let server = start(&[]).await;
    let token = sign(&admin_claims());
    let body = json!({"event": "orders.a", "data": 1});
    for header in [
        "Basic dXNlcjpwYXNzd29yZA==".to_string(),
        "Bearer".to_string(),
        "Token ".to_string() + &token,
        "Bearer:".to_string() + &token,
        token.clone(),
        "Bearer\t".to_string() + &token,
    ] {
        let answer =
            send(&server, "POST", "/insert", &[("authorization", &header)], Some(&body)).await;
        answer.expect_invalid_token();
    }
    assert_nothing_stored(&server).await;
    // The scheme is case-insensitive (RFC 7235): these are well-formed.
    for header in [bearer(&token), format!("bearer {token}"), format!("BEARER {token}")] {
        let answer =
            send(&server, "POST", "/insert", &[("authorization", &header)], Some(&body)).await;
        answer.expect_status(201);
    }
}

#[tokio::test]
async fn insert_outside_the_token_scope_is_403_and_stores_nothing() {
    let server = start(&[]).await;
    let token = sign(&claims(&["orders.*"], &["*"], &["*"]));
    insert(&server, Some(&token), "orders.a", json!(1)).await.expect_status(201);
    for event in ["secret", "orders", "order.a", "xorders.a", "Orders.a"] {
        let answer = insert(&server, Some(&token), event, json!(2)).await;
        answer.expect_insufficient_scope();
        assert_eq!(admin_audit(&server, event).await, Vec::<Value>::new(), "{event} stored");
    }
    // A token that may receive and audit everything but insert nothing.
    let reader = sign(&claims(&[], &["*"], &["*"]));
    insert(&server, Some(&reader), "orders.b", json!(3)).await.expect_insufficient_scope();
    assert_eq!(server.health().await.last_id, 1, "only the allowed insert was stored");
}

#[tokio::test]
async fn audience_and_issuer_are_checked_when_configured() {
    let server = start(&["--jwt-audience", "broker", "--jwt-issuer", "https://auth.example"]).await;
    let good =
        with(with(admin_claims(), "aud", json!("broker")), "iss", json!("https://auth.example"));
    insert(&server, Some(&sign(&good)), "orders.a", json!(1)).await.expect_status(201);
    let refused = [
        ("another audience", with(good.clone(), "aud", json!("other"))),
        ("no audience", with(good.clone(), "aud", Value::Null)),
        ("another issuer", with(good.clone(), "iss", json!("https://evil.example"))),
        ("no issuer", with(good.clone(), "iss", Value::Null)),
        ("neither", with(with(good.clone(), "aud", Value::Null), "iss", Value::Null)),
    ];
    for (what, claims) in refused {
        let answer = insert(&server, Some(&sign(&claims)), "orders.a", json!(2)).await;
        assert_eq!(answer.status, 401, "a token with {what} must be refused: {answer:?}");
        answer.expect_invalid_token();
    }
    assert_eq!(admin_audit_with(&server, &good).await.len(), 1, "only the good token stored");
}

/// The versions of `orders.a`, read with a token of `claims` widened to every audit.
async fn admin_audit_with(server: &Server, claims: &Value) -> Vec<Value> {
    let mut claims = claims.clone();
    claims["broker"]["audit"] = json!(["*"]);
    let answer = super::get(server, "/audit/orders.a", Some(&sign(&claims))).await;
    answer.expect_status(200);
    answer.json().as_array().expect("a list").clone()
}
