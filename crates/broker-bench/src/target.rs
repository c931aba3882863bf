//! The servers a run can measure, and how each one is spoken to: the same job, three wire
//! dialects (ours speaks one, whether on one node or on several).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Target {
    /// This workspace's `broker-server` (hyper + redb).
    Ours,
    /// `broker-server` nodes (two, or `--nodes`) over one stream of a three-node NATS
    /// JetStream cluster: the scale-out setup, with the load spread over the nodes.
    OursNats,
    /// nginx with the nchan module: in-memory channels, written in C.
    Nchan,
    /// The original `broker` 0.2.0 (actix-web + sled), with this API.
    Broker,
}

impl Target {
    /// The name in tables and JSON.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Target::Ours => "ours",
            Target::OursNats => "ours-nats",
            Target::Nchan => "nchan",
            Target::Broker => "broker-0.2.0",
        }
    }

    /// Appends the request that publishes `payload` as a new version of `event`.
    pub(crate) fn publish_request(self, event: &str, payload: &[u8], out: &mut Vec<u8>) {
        let (path, prefix, suffix, header) = match self {
            Target::Ours | Target::OursNats | Target::Broker => {
                ("/insert".to_owned(), "{\"event\":\"", "\",\"data\":", "")
            }
            // One broker event is one nchan channel; the header names the SSE `event:`.
            Target::Nchan => (format!("/pub/{event}"), "", "", "X-EventSource-Event: "),
        };
        let body_len = if prefix.is_empty() {
            payload.len()
        } else {
            prefix.len() + event.len() + suffix.len() + payload.len() + 1
        };
        out.extend_from_slice(b"POST ");
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(
            b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n",
        );
        if !header.is_empty() {
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(event.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {body_len}\r\n\r\n").as_bytes());
        if prefix.is_empty() {
            out.extend_from_slice(payload);
        } else {
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(event.as_bytes());
            out.extend_from_slice(suffix.as_bytes());
            out.extend_from_slice(payload);
            out.push(b'}');
        }
    }

    /// Appends the request that publishes every payload of `payloads` as a new version of
    /// `event`, all in one array: a JSON array of inserts, which only our server takes (it
    /// stores them in one commit).
    pub(crate) fn publish_array_request(
        self,
        event: &str,
        payloads: &[Vec<u8>],
        out: &mut Vec<u8>,
    ) {
        debug_assert!(self.takes_arrays(), "{self} takes no arrays");
        let (prefix, suffix) = ("{\"event\":\"", "\",\"data\":");
        let element = prefix.len() + event.len() + suffix.len() + 1;
        let body_len =
            1 + payloads.iter().map(|payload| element + payload.len() + 1).sum::<usize>();
        out.extend_from_slice(
            b"POST /insert HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n",
        );
        out.extend_from_slice(format!("Content-Length: {body_len}\r\n\r\n").as_bytes());
        out.push(b'[');
        for (index, payload) in payloads.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(event.as_bytes());
            out.extend_from_slice(suffix.as_bytes());
            out.extend_from_slice(payload);
            out.push(b'}');
        }
        out.push(b']');
    }

    /// Whether the server takes several versions in one request (`POST /insert` of an array):
    /// ours does; nchan and broker 0.2.0 have no such form.
    pub(crate) fn takes_arrays(self) -> bool {
        matches!(self, Target::Ours | Target::OursNats)
    }

    /// Whether `status` acknowledges a publish.
    pub(crate) fn published(self, status: u16) -> bool {
        match self {
            Target::Ours | Target::OursNats => status == 201,
            // 201 when subscribers were present, 202 when none.
            Target::Nchan => status == 201 || status == 202,
            Target::Broker => status == 200,
        }
    }

    /// Whether this is another program doing the same job, rather than ours in some setup: the
    /// issue's targets compare ours with peers only.
    pub(crate) fn is_peer(self) -> bool {
        matches!(self, Target::Nchan | Target::Broker)
    }

    /// The request path of a subscriber to `event`, or to every event when `None`.
    pub(crate) fn subscribe_path(self, event: Option<&str>) -> String {
        match (self, event) {
            (Target::Ours | Target::OursNats, Some(event)) => format!("/events?event={event}"),
            (Target::Ours | Target::OursNats | Target::Broker, _) => "/events".to_owned(),
            (Target::Nchan, Some(event)) => format!("/sub/{event}"),
            // nchan has no stream of every channel; the scenarios that need one skip it.
            (Target::Nchan, None) => "/sub/all".to_owned(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The GET request of a subscriber.
pub(crate) fn subscribe_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_requests_declare_their_body_length() {
        for target in [Target::Ours, Target::OursNats, Target::Nchan, Target::Broker] {
            let mut request = Vec::new();
            target.publish_request("bench", br#"{"p":1}"#, &mut request);
            let text = String::from_utf8(request).expect("ASCII");
            let (head, body) = text.split_once("\r\n\r\n").expect("a head");
            assert!(head.contains(&format!("Content-Length: {}", body.len())), "{text}");
            if target == Target::Nchan {
                assert_eq!(body, r#"{"p":1}"#);
            } else {
                let parsed: serde_json::Value = serde_json::from_str(body).expect("JSON");
                assert_eq!(parsed["event"], "bench");
            }
        }
    }

    #[test]
    fn array_requests_declare_their_body_length_and_hold_every_payload_in_order() {
        let payloads = [br#"{"p":1,"s":1}"#.to_vec(), br#"{"p":1,"s":2}"#.to_vec()];
        let mut request = Vec::new();
        Target::Ours.publish_array_request("bench", &payloads, &mut request);
        let text = String::from_utf8(request).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{text}");
        let parsed: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(
            parsed,
            serde_json::json!([
                {"event": "bench", "data": {"p": 1, "s": 1}},
                {"event": "bench", "data": {"p": 1, "s": 2}},
            ])
        );
    }
}
