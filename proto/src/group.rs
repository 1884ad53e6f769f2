//! Consumer groups as a member and `cairn group describe` see them. The hub
//! decides membership and assignment; these are its answers.

use alloc::string::String;
use alloc::vec::Vec;

/// A member's view after joining or heartbeating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub member_id: String,
    pub generation: u32,
    pub assignment: Vec<(String, u32)>,
}

/// One partition's progress in a group, for `describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: u32,
    pub committed: Option<u64>,
    pub end_offset: u64,
    pub lag: u64,
    pub owner: Option<String>,
}

/// What `describe` shows of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    pub group: String,
    pub generation: u32,
    pub members: Vec<(String, Vec<(String, u32)>)>,
    pub partitions: Vec<PartitionLag>,
}
