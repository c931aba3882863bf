//! What the cluster thinks of itself, read from each node's monitoring endpoint: whether it is
//! ready (leaders agreed on, every replica caught up), and who leads.

use serde_json::Value;

use super::NatsCluster;

impl NatsCluster {
    /// `Ok` once every running node answers `/healthz` with 200 (JetStream is enabled and in
    /// contact with the meta leader), they agree on the meta leader, the leader counts each of
    /// them as current, and every stream is caught up on every running node.
    pub(super) async fn ready(&self) -> Result<(), String> {
        for i in self.up() {
            let url = self.monitor_url(i, "/healthz");
            let reply = self.client.get(&url).send().await.map_err(|error| format!("{error}"))?;
            if !reply.status().is_success() {
                let body = reply.text().await.unwrap_or_default();
                return Err(format!("node {i}'s /healthz says {body}"));
            }
        }
        let leader = self.agreed_meta_leader().await?;
        let jsz = self.monitor(leader, "/jsz").await?;
        let replicas = jsz["meta_cluster"]["replicas"].as_array().cloned().unwrap_or_default();
        for i in self.up().filter(|&i| i != leader) {
            let name = &self.nodes[i].name;
            let current = replicas.iter().any(|replica| {
                replica["name"] == name.as_str() && replica["current"] == Value::Bool(true)
            });
            if !current {
                return Err(format!("the meta leader n{leader} does not count {name} as current"));
            }
        }
        self.streams_caught_up().await
    }

    /// `Ok` once every stream that a running node holds has a running leader, and each running
    /// node that the leader lists as a replica has it, is counted current by the leader, and
    /// holds every message the leader held when asked. A node just restarted answers `/healthz`
    /// with 200 while its replica of a stream still names no leader and holds no message, so
    /// this is what says it is back.
    /// With writes going on a follower may stay a little behind; the harness waits on a quiet
    /// cluster.
    async fn streams_caught_up(&self) -> Result<(), String> {
        let mut held = Vec::new();
        for i in self.up() {
            held.extend(self.replicas_on(i).await?.into_iter().map(|detail| (i, detail)));
        }
        for (_, detail) in &held {
            let stream = detail["name"].as_str().unwrap_or_default();
            let leader = held.iter().find(|(i, other)| {
                other["name"] == stream && other["cluster"]["leader"] == self.nodes[*i].name
            });
            let Some((_, leader)) = leader else {
                return Err(format!("stream {stream} has no running leader"));
            };
            let last_seq = leader["state"]["last_seq"].as_u64().unwrap_or_default();
            let listed = leader["cluster"]["replicas"].as_array().cloned().unwrap_or_default();
            for replica in listed {
                let Some(j) = self.running_node(replica["name"].as_str().unwrap_or_default())
                else {
                    continue;
                };
                let held_by_j = held.iter().find(|(i, other)| *i == j && other["name"] == stream);
                let behind = held_by_j.is_none_or(|(_, other)| {
                    other["state"]["last_seq"].as_u64().unwrap_or_default() < last_seq
                });
                if replica["current"] != Value::Bool(true) || behind {
                    return Err(format!("n{j} is not caught up on stream {stream}"));
                }
            }
        }
        Ok(())
    }

    /// The meta leader, if every running node names the same running node.
    pub(super) async fn agreed_meta_leader(&self) -> Result<usize, String> {
        let mut named = Vec::new();
        for i in self.up() {
            let jsz = self.monitor(i, "/jsz").await?;
            named.push(jsz["meta_cluster"]["leader"].as_str().unwrap_or_default().to_owned());
        }
        let first = named.first().ok_or("every node is down")?;
        match self.running_node(first) {
            Some(leader) if named.iter().all(|name| name == first) => Ok(leader),
            _ => Err(format!("the running nodes name the meta leaders {named:?}")),
        }
    }

    /// The leader of `stream` as the first running node that knows one reports it, if that
    /// node runs.
    pub(super) async fn reported_stream_leader(&self, stream: &str) -> Result<usize, String> {
        let mut named = Vec::new();
        for i in self.up() {
            let Some(detail) = self.replica_or_none(i, stream).await? else { continue };
            let leader = detail["cluster"]["leader"].as_str().unwrap_or_default();
            if let Some(leader) = self.running_node(leader) {
                return Ok(leader);
            }
            named.push(leader.to_owned());
        }
        Err(format!("the running nodes name the leaders {named:?}"))
    }

    /// Node `i`'s entry for `stream` in its `/jsz?streams=true`, if it holds a replica.
    pub(super) async fn replica_or_none(
        &self,
        i: usize,
        stream: &str,
    ) -> Result<Option<Value>, String> {
        let replicas = self.replicas_on(i).await?;
        Ok(replicas.into_iter().find(|detail| detail["name"] == stream))
    }

    /// Node `i`'s entries in its `/jsz?streams=true`, one for each stream it holds a replica of.
    async fn replicas_on(&self, i: usize) -> Result<Vec<Value>, String> {
        let jsz = self.monitor(i, "/jsz?streams=true").await?;
        let accounts = jsz["account_details"].as_array().cloned().unwrap_or_default();
        Ok(accounts
            .iter()
            .flat_map(|account| account["stream_detail"].as_array().cloned().unwrap_or_default())
            .collect())
    }
}
