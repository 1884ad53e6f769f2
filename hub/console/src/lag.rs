//! Consumer groups and how far behind they are, as `cairn group describe`
//! computes it (the broker's own `describe`), idle groups included: a group
//! with no member left is exactly the one whose lag grows unseen.
//!
//! MQTT persistent sessions keep their positions in groups too
//! (`mqtt.<client id>`); there may be thousands, so they are not listed one
//! by one but summed into the messages queued for MQTT sessions.

use cairn_hub::broker::groups::GroupState;
use cairn_hub::broker::Broker;

/// The prefix of the groups holding MQTT sessions' positions.
const MQTT_SESSION_GROUPS: &str = "mqtt.";

/// Beyond this many stored MQTT sessions their queued messages are not
/// summed (each costs a read of its offsets).
const MAX_SESSIONS_SUMMED: usize = 10_000;

/// A consumer group now.
pub(crate) struct GroupLag {
    pub members: u32,
    pub state: GroupState,
}

impl GroupLag {
    pub(crate) fn total(&self) -> u64 {
        self.state.partitions.iter().map(|p| p.lag).sum()
    }
}

/// Every consumer group but MQTT sessions', by name.
pub(crate) fn groups(broker: &Broker) -> Vec<GroupLag> {
    let Ok(list) = broker.groups().list() else { return Vec::new() };
    list.into_iter()
        .filter(|(name, _, _)| !name.starts_with(MQTT_SESSION_GROUPS))
        .filter_map(|(name, members, _)| Some(GroupLag { members, state: broker.groups().describe(&name).ok()? }))
        .collect()
}

/// Messages waiting for MQTT persistent sessions (whether their client is
/// connected or away); `None` past [`MAX_SESSIONS_SUMMED`] sessions.
pub(crate) fn mqtt_queued(broker: &Broker) -> Option<u64> {
    let log = broker.log();
    let groups = log.list_groups().ok()?;
    let sessions: Vec<_> = groups.into_iter().filter(|(g, _)| g.starts_with(MQTT_SESSION_GROUPS)).collect();
    if sessions.len() > MAX_SESSIONS_SUMMED {
        return None;
    }
    let mut queued = 0;
    for (group, topics) in sessions {
        for topic in topics {
            let (Ok(info), Ok(committed)) = (log.describe_topic(&topic), log.committed_offsets(&group, &topic)) else {
                continue;
            };
            for (partition, offset) in committed {
                if let Some(p) = info.partitions.iter().find(|p| p.partition == partition) {
                    queued += p.end_offset.saturating_sub(offset.max(p.start_offset));
                }
            }
        }
    }
    Some(queued)
}
