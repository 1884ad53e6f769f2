//! Consumer groups: join, heartbeat, leave, commit and read offsets,
//! list and describe.

use std::time::Duration;

use cairn_proto::frame::{RequestBody, ResponseBody};

use crate::{Client, GroupState, Membership, PartitionLag, Result};

impl Client {
    /// Joins a consumer group (or rejoins with `member_id`).
    pub async fn join_group(
        &self,
        group: &str,
        member_id: Option<&str>,
        topics: &[&str],
        session_timeout: Duration,
    ) -> Result<Membership> {
        let body = RequestBody::JoinGroup {
            group,
            member_id,
            topics: topics.to_vec(),
            session_timeout_ms: session_timeout.as_millis().min(u128::from(u32::MAX)) as u32,
        };
        self.request(body, membership_of).await
    }

    /// Keeps a membership alive; returns the current assignment.
    pub async fn heartbeat(&self, group: &str, member_id: &str) -> Result<Membership> {
        self.request(RequestBody::Heartbeat { group, member_id }, membership_of).await
    }

    pub async fn leave_group(&self, group: &str, member_id: &str) -> Result<()> {
        self.request(RequestBody::LeaveGroup { group, member_id }, |r| matches!(r, ResponseBody::Done).then_some(()))
            .await
    }

    /// Commits offsets (next offset to read) for partitions of `topic`;
    /// `fence` = (member id, generation) for a group member.
    pub async fn commit_offsets(
        &self,
        group: &str,
        fence: Option<(&str, u32)>,
        topic: &str,
        offsets: &[(u32, u64)],
    ) -> Result<()> {
        let body = RequestBody::CommitOffsets {
            group,
            member_id: fence.map(|f| f.0),
            generation: fence.map(|f| f.1),
            topic,
            offsets: offsets.to_vec(),
        };
        self.request(body, |r| matches!(r, ResponseBody::Done).then_some(())).await
    }

    /// A group's committed offset per partition of `topic`.
    pub async fn fetch_committed(&self, group: &str, topic: &str) -> Result<Vec<(u32, Option<u64>)>> {
        self.request(RequestBody::FetchCommitted { group, topic }, |r| match r {
            ResponseBody::Offsets { offsets } => Some(offsets),
            _ => None,
        })
        .await
    }

    /// (group, live members, generation) for every group.
    pub async fn list_groups(&self) -> Result<Vec<(String, u32, u32)>> {
        self.request(RequestBody::ListGroups, |r| match r {
            ResponseBody::Groups { groups } => {
                Some(groups.iter().map(|g| (g.group.to_string(), g.members, g.generation)).collect())
            }
            _ => None,
        })
        .await
    }

    /// Members, assignment and per-partition lag of a group.
    pub async fn describe_group(&self, group: &str) -> Result<GroupState> {
        self.request(RequestBody::DescribeGroup { group }, |r| match r {
            ResponseBody::Group { group: g } => Some(GroupState {
                group: g.group.to_string(),
                generation: g.generation,
                members: g
                    .members
                    .iter()
                    .map(|m| (m.member_id.to_string(), m.assignment.iter().map(|(t, p)| (t.to_string(), *p)).collect()))
                    .collect(),
                partitions: g
                    .partitions
                    .iter()
                    .map(|p| PartitionLag {
                        topic: p.topic.to_string(),
                        partition: p.partition,
                        committed: p.committed,
                        end_offset: p.end_offset,
                        lag: p.lag,
                        owner: p.owner.map(str::to_string),
                    })
                    .collect(),
            }),
            _ => None,
        })
        .await
    }
}

fn membership_of(r: ResponseBody<'_>) -> Option<Membership> {
    match r {
        ResponseBody::Membership { member_id, generation, assignment } => Some(Membership {
            member_id: member_id.to_string(),
            generation,
            assignment: assignment.into_iter().map(|(t, p)| (t.to_string(), p)).collect(),
        }),
        _ => None,
    }
}
