//! `GET /audit/{event}`: every version of exactly one event, oldest first, page by page.

use serde_json::json;

use crate::support::{Server, Version, audit_path, ids};

#[tokio::test]
async fn audit_lists_every_version_of_exactly_that_event_oldest_first() {
    let server = Server::start().await;
    let mut users = Vec::new();
    for (i, event) in ["user", "users", "user", "User", "username", "user"].iter().enumerate() {
        let version = server.insert(event, json!({"i": i})).await;
        if *event == "user" {
            users.push(version);
        }
    }
    let reply = server.get("/audit/user").await;
    assert_eq!(reply.status, 200, "{reply}");
    assert!(reply.header("content-type").unwrap_or_default().starts_with("application/json"));
    assert_eq!(reply.header("link"), None, "a page that is not full has no next link");
    let audit: Vec<Version> = serde_json::from_str(&reply.body).expect("a list of versions");
    // Whole versions, timestamps included, as /insert returned them.
    assert_eq!(audit, users);
}

#[tokio::test]
async fn audit_of_an_event_never_inserted_is_an_empty_array() {
    let server = Server::start().await;
    server.insert("known", json!(1)).await;
    for path in ["/audit/unknown", "/audit/know", "/audit/known2", "/audit/unknown?after=5&limit=3"]
    {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 200, "GET {path}: {reply}");
        assert_eq!(reply.json(), json!([]), "GET {path}");
        assert_eq!(reply.header("link"), None, "GET {path}");
    }
}

/// A query, the positions of the versions in the page it gets, and the `(after, limit)` of the
/// page's next link.
type PageCase = (String, Vec<usize>, Option<(u64, u64)>);

#[tokio::test]
async fn after_and_limit_select_a_page_and_a_full_page_links_to_the_next() {
    let server = Server::start().await;
    let mut paged = Vec::new();
    for i in 0..7 {
        paged.push(server.insert("paged", json!(i)).await.id);
        server.insert("other", json!(i)).await;
    }
    let id = |i: usize| paged[i];
    let cases: Vec<PageCase> = vec![
        (String::new(), (0..7).collect(), None),
        ("?limit=3".into(), vec![0, 1, 2], Some((id(2), 3))),
        (format!("?after={}&limit=3", id(2)), vec![3, 4, 5], Some((id(5), 3))),
        (format!("?limit=3&after={}", id(5)), vec![6], None),
        (format!("?after={}", id(3) - 1), vec![3, 4, 5, 6], None),
        (format!("?after={}", id(3)), vec![4, 5, 6], None),
        ("?after=0".into(), (0..7).collect(), None),
        ("?limit=1".into(), vec![0], Some((id(0), 1))),
        ("?limit=7".into(), (0..7).collect(), Some((id(6), 7))),
        (format!("?after={}&limit=7", id(6)), vec![], None),
        ("?limit=1000".into(), (0..7).collect(), None),
        (format!("?after={}", u64::MAX), vec![], None),
    ];
    for (query, positions, next) in cases {
        let path = format!("/audit/paged{query}");
        let (page, link) = server.audit_page(&path).await;
        let expected: Vec<u64> = positions.iter().map(|&i| id(i)).collect();
        assert_eq!(page.iter().map(|v| v.id).collect::<Vec<_>>(), expected, "GET {path}");
        assert_eq!(link.map(|link| parse_link(&link, "paged")), next, "Link of GET {path}");
    }
}

/// The `(after, limit)` of a next link to an audit page of `event`.
fn parse_link(link: &str, event: &str) -> (u64, u64) {
    let (path, query) = link.split_once('?').unwrap_or_else(|| panic!("no query in {link:?}"));
    assert_eq!(path, audit_path(event), "the next link's path");
    let mut after = None;
    let mut limit = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("after", value)) => after = value.parse().ok(),
            Some(("limit", value)) => limit = value.parse().ok(),
            _ => panic!("unexpected {pair:?} in {link:?}"),
        }
    }
    (after.expect("after= in the link"), limit.expect("limit= in the link"))
}

#[tokio::test]
async fn following_next_links_visits_every_version_once() {
    let server = Server::start().await;
    let mut inserted = Vec::new();
    for i in 0..25 {
        inserted.push(server.insert("long", json!(i)).await);
        if i % 3 == 0 {
            server.insert("interleaved", json!(i)).await;
        }
    }
    let mut visited = Vec::new();
    let mut pages = 0;
    let mut next = Some("/audit/long?limit=4".to_string());
    while let Some(path) = next {
        let (page, link) = server.audit_page(&path).await;
        assert!(page.len() <= 4, "GET {path} has {} versions", page.len());
        visited.extend(page);
        next = link;
        pages += 1;
        assert!(pages <= 7, "more pages than 25 versions fill");
    }
    assert_eq!(pages, 7);
    assert_eq!(visited, inserted);
}

#[tokio::test]
async fn event_names_in_the_path_are_percent_decoded() {
    let server = Server::start().await;
    let names = ["order/created", "café 🦀", "a b", "a?b", "a#b", "100%", "a+b", "semi;colon"];
    for name in names {
        server.insert(name, json!(1)).await;
        server.insert(name, json!(2)).await;
    }
    for name in names {
        // `audit` follows the next link of each full page: the link must encode the name too.
        let path = format!("{}?limit=1", audit_path(name));
        let (first, link) = server.audit_page(&path).await;
        let link = link.unwrap_or_else(|| panic!("GET {path} is a full page without a next link"));
        let (second, _) = server.audit_page(&link).await;
        let all: Vec<Version> = first.into_iter().chain(second).collect();
        let events: Vec<_> = all.iter().map(|version| version.event.as_str()).collect();
        assert_eq!(events, [name, name], "GET {path}, then {link}");
        assert_eq!(ids(&all), ids(&server.audit(name).await));
    }
}

#[tokio::test]
async fn malformed_after_or_limit_is_an_invalid_query() {
    let server = Server::start().await;
    server.insert("e", json!(1)).await;
    let cases = [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("limit=1.5", "limit"),
        ("limit=99999999999999999999999", "limit"),
        ("after=-1", "after"),
        ("after=x", "after"),
        ("after=1.5", "after"),
        ("after=", "after"),
        ("after=18446744073709551616", "after"),
        ("after=1&limit=0", "limit"),
    ];
    for (query, field) in cases {
        let path = format!("/audit/e?{query}");
        let reply = server.get(&path).await;
        let message = reply.expect_error(400, "invalid_query");
        assert!(message.contains(field), "the message for GET {path} names {field}: {message:?}");
    }
}
