//! A consumer in a group: the hub assigns it partitions; it reads them from
//! the group's committed offsets and commits its progress.
//!
//! Delivery is at least once: records are handed out by [`GroupConsumer::poll`]
//! and their offsets committed by [`GroupConsumer::commit`] (call it after
//! processing). When partitions move to another member, the new owner starts
//! from the last commit, so nothing is skipped; records processed but not yet
//! committed by the old owner are read again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cairn_proto::frame::ErrorCode;

use super::{Client, ClientError, Membership, Result};

/// Where to start on a partition the group has never committed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest stored record.
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// One record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// (name, value), in record order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A member of a consumer group.
pub struct GroupConsumer {
    client: Client,
    group: String,
    topics: Vec<String>,
    session: Duration,
    start: StartFrom,
    membership: Membership,
    /// Next offset to read per owned partition.
    positions: HashMap<(String, u32), u64>,
    /// Next offset handed out but not yet committed, per partition.
    uncommitted: HashMap<(String, u32), u64>,
    last_heartbeat: Instant,
    next_partition: usize,
    auto_commit: bool,
}

impl GroupConsumer {
    /// Joins `group` for `topics`.
    pub async fn join(
        client: Client,
        group: &str,
        topics: &[&str],
        session: Duration,
        start: StartFrom,
    ) -> Result<GroupConsumer> {
        let membership = client.join_group(group, None, topics, session).await?;
        Ok(GroupConsumer {
            client,
            group: group.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            session,
            start,
            membership,
            positions: HashMap::new(),
            uncommitted: HashMap::new(),
            last_heartbeat: Instant::now(),
            next_partition: 0,
            auto_commit: false,
        })
    }

    /// With auto-commit, each `poll` first commits what the previous `poll`
    /// returned (as Kafka's `enable.auto.commit`): records count as processed
    /// once the application asks for more. Off by default: call
    /// [`GroupConsumer::commit`] after processing.
    pub fn with_auto_commit(mut self, on: bool) -> Self {
        self.auto_commit = on;
        self
    }

    /// Carries on over `client`, a new connection, after the old one broke
    /// or timed out: joins again under this member's id, so the group does
    /// not keep a second, silent member holding partitions until its session
    /// times out. Reading resumes from the group's committed offsets: what
    /// `poll` returned but was not committed comes again.
    pub async fn rejoin(&mut self, client: Client) -> Result<()> {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let membership =
            client.join_group(&self.group, Some(&self.membership.member_id), &topics, self.session).await?;
        self.client = client;
        self.membership = membership;
        self.positions.clear();
        self.uncommitted.clear();
        self.last_heartbeat = Instant::now();
        Ok(())
    }

    /// This member's id, generation and partitions.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Heartbeats when due, picking up a new assignment.
    async fn heartbeat_if_due(&mut self) -> Result<()> {
        if self.last_heartbeat.elapsed() < self.session / 3 {
            return Ok(());
        }
        let beat = self.client.heartbeat(&self.group, &self.membership.member_id).await;
        let membership = match beat {
            Ok(m) => m,
            // Presumed dead (e.g. a long pause): join again under the same id.
            Err(ClientError::Server { code: ErrorCode::UnknownMember, .. }) => {
                let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
                self.client.join_group(&self.group, Some(&self.membership.member_id), &topics, self.session).await?
            }
            Err(e) => return Err(e),
        };
        self.last_heartbeat = Instant::now();
        if membership.generation != self.membership.generation {
            tracing::debug!(generation = membership.generation, assignment = ?membership.assignment, "new assignment");
            // Forget partitions we no longer own; new ones start from the
            // group's committed offsets.
            self.positions.retain(|tp, _| membership.assignment.contains(tp));
            self.uncommitted.retain(|tp, _| membership.assignment.contains(tp));
        }
        self.membership = membership;
        Ok(())
    }

    /// Where to start on a newly owned partition.
    async fn position(&mut self, topic: &str, partition: u32) -> Result<u64> {
        if let Some(&p) = self.positions.get(&(topic.to_string(), partition)) {
            return Ok(p);
        }
        let committed = self.client.fetch_committed(&self.group, topic).await?;
        let committed = committed.iter().find(|(p, _)| *p == partition).and_then(|(_, o)| *o);
        let info = self.client.describe_topic(topic).await?;
        let part = info.partitions.get(partition as usize).copied();
        let (start, end) = part.map_or((0, 0), |p| (p.start_offset, p.end_offset));
        let offset = match (committed, self.start) {
            (Some(c), _) => c.clamp(start, end),
            (None, StartFrom::Earliest) => start,
            (None, StartFrom::Latest) => end,
        };
        if committed.is_none() {
            // Commit the starting point at once: should the partition move
            // before our first commit, its next owner starts here too
            // instead of at a later "latest" (which would skip records).
            let fence = (self.membership.member_id.as_str(), self.membership.generation);
            let _ = self.client.commit_offsets(&self.group, Some(fence), topic, &[(partition, offset)]).await;
        }
        self.positions.insert((topic.to_string(), partition), offset);
        Ok(offset)
    }

    /// Returns the next records of the partitions this member owns, waiting
    /// up to `max_wait` when there are none.
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedRecord>> {
        if self.auto_commit && !self.uncommitted.is_empty() {
            self.commit().await?;
        }
        self.heartbeat_if_due().await?;
        let owned = self.membership.assignment.clone();
        if owned.is_empty() {
            tokio::time::sleep(max_wait.min(self.session / 3)).await;
            return Ok(Vec::new());
        }
        // Round-robin over partitions so none starves; the last one tried in
        // a round long-polls when nothing was found.
        let deadline = Instant::now() + max_wait;
        for i in 0..owned.len() {
            let (topic, partition) = &owned[(self.next_partition + i) % owned.len()];
            let last = i + 1 == owned.len();
            let wait = if last {
                deadline.saturating_duration_since(Instant::now()).min(self.session / 3)
            } else {
                Duration::ZERO
            };
            let offset = self.position(topic, *partition).await?;
            let fetch = match self.client.fetch(topic, *partition, offset, 1024 * 1024, wait).await {
                Ok(f) => f,
                Err(ClientError::Server { code: ErrorCode::OffsetOutOfRange, .. }) => {
                    // Retention moved the start past us: resume at the start.
                    self.positions.remove(&(topic.clone(), *partition));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let records: Vec<ConsumedRecord> = fetch
                .records()
                .map(|r| ConsumedRecord {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.map(<[u8]>::to_vec),
                    value: r.value.to_vec(),
                    headers: r.headers.clone().map(|h| (h.name.to_string(), h.value.to_vec())).collect(),
                })
                .collect();
            let next = fetch.next_offset();
            self.positions.insert((topic.clone(), *partition), next);
            if !records.is_empty() {
                self.uncommitted.insert((topic.clone(), *partition), next);
                self.next_partition = (self.next_partition + i + 1) % owned.len();
                return Ok(records);
            }
        }
        Ok(Vec::new())
    }

    /// Commits everything handed out by `poll` so far. A commit refused
    /// because the assignment changed is dropped (the new owner re-reads from
    /// the last successful commit).
    pub async fn commit(&mut self) -> Result<()> {
        let mut by_topic: HashMap<String, Vec<(u32, u64)>> = HashMap::new();
        for ((topic, partition), offset) in self.uncommitted.drain() {
            by_topic.entry(topic).or_default().push((partition, offset));
        }
        for (topic, offsets) in by_topic {
            self.commit_offsets(&topic, &offsets).await?;
        }
        Ok(())
    }

    /// Commits `offsets` of `topic` as this member, fenced by its generation.
    async fn commit_offsets(&mut self, topic: &str, offsets: &[(u32, u64)]) -> Result<()> {
        let fence = (self.membership.member_id.as_str(), self.membership.generation);
        match self.client.commit_offsets(&self.group, Some(fence), topic, offsets).await {
            Ok(()) => Ok(()),
            Err(ClientError::Server { code: ErrorCode::IllegalGeneration | ErrorCode::UnknownMember, message }) => {
                tracing::debug!(%message, "commit fenced; the partitions moved");
                self.last_heartbeat = Instant::now() - self.session;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Commits `record`'s partition up to and including `record`, for an
    /// application that stops partway through what `poll` returned (say,
    /// after a fixed number of records). The records after it on that
    /// partition are neither committed nor skipped: the next `poll` (of this
    /// member or, after a rebalance, of another) returns them again.
    /// Other partitions' records stay uncommitted.
    pub async fn commit_through(&mut self, record: &ConsumedRecord) -> Result<()> {
        let tp = (record.topic.clone(), record.partition);
        let next = record.offset + 1;
        self.uncommitted.remove(&tp);
        self.positions.insert(tp, next);
        self.commit_offsets(&record.topic, &[(record.partition, next)]).await
    }

    /// Leaves the group so its partitions move to others at once.
    pub async fn leave(self) -> Result<()> {
        self.client.leave_group(&self.group, &self.membership.member_id).await
    }
}
