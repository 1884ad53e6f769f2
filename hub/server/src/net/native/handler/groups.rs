//! Consumer groups: join, heartbeat, leave, commit, committed offsets, list,
//! describe; group errors mapped to wire codes.

use std::time::Duration;

use cairn_proto::frame::{
    ErrorCode, GroupDescription, GroupMember, GroupPartition, GroupSummary, RequestBody, ResponseBody,
};

use super::Handler;
use crate::broker::groups::Membership;
use crate::broker::GroupError;
use crate::net::native::outgoing::error_code;
use cairn_proto::acl::{Operation, ResourceKind};

impl Handler {
    pub(super) async fn group_request(&self, id: u32, body: RequestBody<'_>) {
        match body {
            RequestBody::JoinGroup { group, member_id, topics, session_timeout_ms } => {
                let session = Duration::from_millis(u64::from(session_timeout_ms));
                let joined = self.broker.groups().join(group, member_id, &topics, session);
                self.answer_membership(id, joined).await;
            }
            RequestBody::Heartbeat { group, member_id } => {
                let beat = self.broker.groups().heartbeat(group, member_id);
                self.answer_membership(id, beat).await;
            }
            RequestBody::LeaveGroup { group, member_id } => match self.broker.groups().leave(group, member_id) {
                Ok(()) => self.send(id, ResponseBody::Done).await,
                Err(err) => self.send_group_error(id, &err).await,
            },
            RequestBody::CommitOffsets { group, member_id, generation, topic, offsets } => {
                let fence = member_id.map(|m| (m, generation.unwrap_or(u32::MAX)));
                match self.broker.groups().commit(group, fence, topic, &offsets).await {
                    Ok(()) => self.send(id, ResponseBody::Done).await,
                    Err(err) => self.send_group_error(id, &err).await,
                }
            }
            RequestBody::FetchCommitted { group, topic } => match self.broker.groups().committed(group, topic) {
                Ok(offsets) => self.send(id, ResponseBody::Offsets { offsets }).await,
                Err(err) => self.send_group_error(id, &err).await,
            },
            RequestBody::ListGroups => match self.broker.groups().list() {
                Ok(list) => {
                    let groups = list
                        .iter()
                        .filter(|(group, _, _)| self.may(Operation::Describe, ResourceKind::Group, group))
                        .map(|(group, members, generation)| GroupSummary {
                            group,
                            members: *members,
                            generation: *generation,
                        })
                        .collect();
                    self.send(id, ResponseBody::Groups { groups }).await;
                }
                Err(err) => self.send_group_error(id, &err).await,
            },
            RequestBody::DescribeGroup { group } => match self.broker.groups().describe(group) {
                Ok(state) => {
                    let group = GroupDescription {
                        group: &state.group,
                        generation: state.generation,
                        members: state
                            .members
                            .iter()
                            .map(|(m, a)| GroupMember {
                                member_id: m,
                                assignment: a.iter().map(|(t, p)| (t.as_str(), *p)).collect(),
                            })
                            .collect(),
                        partitions: state
                            .partitions
                            .iter()
                            .map(|p| GroupPartition {
                                topic: &p.topic,
                                partition: p.partition,
                                committed: p.committed,
                                end_offset: p.end_offset,
                                lag: p.lag,
                                owner: p.owner.as_deref(),
                            })
                            .collect(),
                    };
                    self.send(id, ResponseBody::Group { group }).await;
                }
                Err(err) => self.send_group_error(id, &err).await,
            },
            _ => self.send_error(id, ErrorCode::UnknownRequest, "not a group request").await,
        }
    }

    async fn answer_membership(&self, id: u32, result: Result<Membership, GroupError>) {
        match result {
            Ok(m) => {
                let body = ResponseBody::Membership {
                    member_id: &m.member_id,
                    generation: m.generation,
                    assignment: m.assignment.iter().map(|(t, p)| (t.as_str(), *p)).collect(),
                };
                self.send(id, body).await;
            }
            Err(err) => self.send_group_error(id, &err).await,
        }
    }

    async fn send_group_error(&self, id: u32, err: &GroupError) {
        let code = match err {
            GroupError::UnknownMember { .. } => ErrorCode::UnknownMember,
            GroupError::IllegalGeneration { .. } | GroupError::NotOwner { .. } => ErrorCode::IllegalGeneration,
            GroupError::InvalidSessionTimeout(_) | GroupError::NoTopics => ErrorCode::InvalidConfig,
            GroupError::GroupActive { .. } => ErrorCode::IllegalGeneration,
            GroupError::UnknownGroup { .. } => ErrorCode::UnknownGroup,
            GroupError::Log(e) => error_code(e),
        };
        self.send_error(id, code, &err.to_string()).await;
    }
}
