//! Consumer groups, coordinated by the hub (as in Kafka's KIP-848: the
//! broker decides the assignment; members only heartbeat).
//!
//! - Members join with the topics they want and a session timeout; each
//!   heartbeat returns the current generation and the member's partitions.
//! - When members come, go, or miss their session timeout, the partitions
//!   are re-spread: balanced (counts differ by at most one per topic) and
//!   sticky (a member keeps what it had as far as the balance allows), so a
//!   rebalance moves only the partitions that must move.
//! - Every change of assignment bumps the generation. A commit names the
//!   member and its generation, and is refused unless both are current and the
//!   member owns the partitions: a member that was presumed dead cannot
//!   overwrite the progress of the partition's new owner.
//!
//! Membership lives in memory (members rejoin after a hub restart); committed
//! offsets live in the log (redb) and survive restarts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use cairn_proto::group::{GroupState, Membership, PartitionLag};

use cairn_log::{Log, LogError};

/// Shortest and longest session timeouts accepted.
pub const MIN_SESSION: Duration = Duration::from_millis(500);
pub const MAX_SESSION: Duration = Duration::from_secs(300);

/// Why a group request failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("member '{member}' is not in group '{group}' (its session expired or it left); join again")]
    UnknownMember { group: String, member: String },
    #[error("commit from generation {got} of group '{group}' refused: the current generation is {current}; heartbeat to get the new assignment")]
    IllegalGeneration { group: String, got: u32, current: u32 },
    #[error("member '{member}' does not own {topic}/{partition} in group '{group}'; heartbeat to get its assignment")]
    NotOwner { group: String, member: String, topic: String, partition: u32 },
    #[error("session timeout {0:?} is outside 500 ms..300 s")]
    InvalidSessionTimeout(Duration),
    #[error("group '{group}' has {members} live member(s); commit as a member (with member id and generation)")]
    GroupActive { group: String, members: usize },
    #[error("a group needs at least one topic")]
    NoTopics,
    #[error(
        "unknown group '{group}': it has no members and no committed offsets (`cairn group list` shows the groups)"
    )]
    UnknownGroup { group: String },
    #[error(transparent)]
    Log(#[from] LogError),
}

#[derive(Default)]
struct Group {
    generation: u32,
    members: BTreeMap<String, Member>,
}

/// A random number from the standard library's per-process hash seed (drawn
/// from the OS), enough to tell one hub start from another.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish() as u32
}

struct Member {
    topics: BTreeSet<String>,
    session: Duration,
    last_seen: Instant,
    assignment: BTreeSet<(String, u32)>,
}

/// The group coordinator. One per hub.
pub struct Coordinator {
    log: Log,
    groups: Mutex<HashMap<String, Group>>,
    /// Member ids are `<group>-<boot>-<n>`: `boot` is random per hub start,
    /// so a member rejoining under the id it had before a restart can never
    /// take the id of a member that joined since.
    boot: u32,
    next_member: AtomicU64,
    /// Held from a commit's fencing check to its write, so a commit checked
    /// under an old generation cannot land after a newer owner's commit.
    commits: tokio::sync::Mutex<()>,
}

impl Coordinator {
    pub fn new(log: Log) -> Self {
        Coordinator {
            log,
            groups: Mutex::default(),
            boot: random_u32(),
            next_member: AtomicU64::new(1),
            commits: tokio::sync::Mutex::new(()),
        }
    }

    /// Adds (or updates) a member and rebalances.
    pub fn join(
        &self,
        group: &str,
        member_id: Option<&str>,
        topics: &[&str],
        session: Duration,
    ) -> Result<Membership, GroupError> {
        if !(MIN_SESSION..=MAX_SESSION).contains(&session) {
            return Err(GroupError::InvalidSessionTimeout(session));
        }
        if topics.is_empty() {
            return Err(GroupError::NoTopics);
        }
        for t in topics {
            self.log.partition_count(t)?;
        }
        let member_id = match member_id {
            Some(id) => id.to_string(),
            None => format!("{group}-{:08x}-{}", self.boot, self.next_member.fetch_add(1, Ordering::Relaxed)),
        };
        let mut groups = self.groups.lock().expect("groups lock");
        let g = groups.entry(group.to_string()).or_default();
        expire(g, group, &self.log);
        let member = g.members.entry(member_id.clone()).or_insert_with(|| Member {
            topics: BTreeSet::new(),
            session,
            last_seen: Instant::now(),
            assignment: BTreeSet::new(),
        });
        member.topics = topics.iter().map(|t| t.to_string()).collect();
        member.session = session;
        member.last_seen = Instant::now();
        tracing::info!(group, member = %member_id, ?topics, "member joined");
        rebalance(g, group, &self.log);
        Ok(membership(g, &member_id))
    }

    /// Keeps a member alive and returns its current assignment.
    pub fn heartbeat(&self, group: &str, member_id: &str) -> Result<Membership, GroupError> {
        let mut groups = self.groups.lock().expect("groups lock");
        let g = groups.get_mut(group).ok_or_else(|| unknown(group, member_id))?;
        expire(g, group, &self.log);
        let member = g.members.get_mut(member_id).ok_or_else(|| unknown(group, member_id))?;
        member.last_seen = Instant::now();
        // Partitions may have been added since the last look.
        rebalance(g, group, &self.log);
        Ok(membership(g, member_id))
    }

    /// Removes a member at once.
    pub fn leave(&self, group: &str, member_id: &str) -> Result<(), GroupError> {
        let mut groups = self.groups.lock().expect("groups lock");
        let g = groups.get_mut(group).ok_or_else(|| unknown(group, member_id))?;
        if g.members.remove(member_id).is_none() {
            return Err(unknown(group, member_id));
        }
        tracing::info!(group, member = member_id, "member left");
        rebalance(g, group, &self.log);
        if g.members.is_empty() {
            groups.remove(group);
        }
        Ok(())
    }

    /// Stores committed offsets. With a member id the commit is fenced by
    /// membership, generation and ownership; without, it is a plain
    /// (standalone) commit as for manually assigned consumers.
    pub async fn commit(
        &self,
        group: &str,
        fence: Option<(&str, u32)>,
        topic: &str,
        offsets: &[(u32, u64)],
    ) -> Result<(), GroupError> {
        let _serial = self.commits.lock().await;
        if let Some((member_id, generation)) = fence {
            let mut groups = self.groups.lock().expect("groups lock");
            let g = groups.get_mut(group).ok_or_else(|| unknown(group, member_id))?;
            expire(g, group, &self.log);
            let member = g.members.get(member_id).ok_or_else(|| unknown(group, member_id))?;
            if generation != g.generation {
                return Err(GroupError::IllegalGeneration {
                    group: group.to_string(),
                    got: generation,
                    current: g.generation,
                });
            }
            for &(p, _) in offsets {
                if !member.assignment.contains(&(topic.to_string(), p)) {
                    return Err(GroupError::NotOwner {
                        group: group.to_string(),
                        member: member_id.to_string(),
                        topic: topic.to_string(),
                        partition: p,
                    });
                }
            }
        } else {
            // A plain commit (manually assigned consumer) must not overwrite
            // the progress of live members.
            let mut groups = self.groups.lock().expect("groups lock");
            if let Some(g) = groups.get_mut(group) {
                expire(g, group, &self.log);
                if !g.members.is_empty() {
                    return Err(GroupError::GroupActive { group: group.to_string(), members: g.members.len() });
                }
            }
        }
        self.log.commit_offsets(group, topic, offsets).await?;
        Ok(())
    }

    /// Committed offset of every partition of `topic` (None: nothing committed).
    pub fn committed(&self, group: &str, topic: &str) -> Result<Vec<(u32, Option<u64>)>, GroupError> {
        let n = self.log.partition_count(topic)?;
        let stored: HashMap<u32, u64> = self.log.committed_offsets(group, topic)?.into_iter().collect();
        Ok((0..n).map(|p| (p, stored.get(&p).copied())).collect())
    }

    /// Every group: live ones and those with committed offsets, with
    /// (live members, generation).
    pub fn list(&self) -> Result<Vec<(String, u32, u32)>, GroupError> {
        let mut out: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        for (name, _) in self.log.list_groups()? {
            out.insert(name, (0, 0));
        }
        let mut groups = self.groups.lock().expect("groups lock");
        for (name, g) in groups.iter_mut() {
            expire(g, name, &self.log);
            if !g.members.is_empty() || out.contains_key(name) {
                out.insert(name.clone(), (g.members.len() as u32, g.generation));
            }
        }
        // Groups whose members are all gone are forgotten (their committed
        // offsets stay in the log).
        groups.retain(|_, g| !g.members.is_empty());
        Ok(out.into_iter().map(|(n, (m, gen))| (n, m, gen)).collect())
    }

    /// Members, assignment and lag of a group (also when no member is live).
    pub fn describe(&self, group: &str) -> Result<GroupState, GroupError> {
        let (generation, members, mut topics) = {
            let mut groups = self.groups.lock().expect("groups lock");
            match groups.get_mut(group) {
                Some(g) => {
                    expire(g, group, &self.log);
                    let members: Vec<(String, Vec<(String, u32)>)> =
                        g.members.iter().map(|(id, m)| (id.clone(), m.assignment.iter().cloned().collect())).collect();
                    let topics: BTreeSet<String> = g.members.values().flat_map(|m| m.topics.iter().cloned()).collect();
                    (g.generation, members, topics)
                }
                None => (0, Vec::new(), BTreeSet::new()),
            }
        };
        if let Some((_, committed_topics)) = self.log.list_groups()?.into_iter().find(|(g, _)| g == group) {
            topics.extend(committed_topics);
        }
        if members.is_empty() && topics.is_empty() {
            return Err(GroupError::UnknownGroup { group: group.to_string() });
        }
        let owners: HashMap<(String, u32), String> =
            members.iter().flat_map(|(id, a)| a.iter().map(move |tp| (tp.clone(), id.clone()))).collect();
        let mut partitions = Vec::new();
        for topic in &topics {
            let Ok(info) = self.log.describe_topic(topic) else {
                continue;
            };
            let committed: HashMap<u32, u64> = self.log.committed_offsets(group, topic)?.into_iter().collect();
            for p in &info.partitions {
                let committed = committed.get(&p.partition).copied();
                let from = committed.unwrap_or(p.start_offset).max(p.start_offset);
                partitions.push(PartitionLag {
                    topic: topic.clone(),
                    partition: p.partition,
                    committed,
                    end_offset: p.end_offset,
                    lag: p.end_offset.saturating_sub(from),
                    owner: owners.get(&(topic.clone(), p.partition)).cloned(),
                });
            }
        }
        Ok(GroupState { group: group.to_string(), generation, members, partitions })
    }
}

fn unknown(group: &str, member: &str) -> GroupError {
    GroupError::UnknownMember { group: group.to_string(), member: member.to_string() }
}

fn membership(g: &Group, member_id: &str) -> Membership {
    let assignment = g.members.get(member_id).map(|m| m.assignment.iter().cloned().collect()).unwrap_or_default();
    Membership { member_id: member_id.to_string(), generation: g.generation, assignment }
}

/// Drops members whose session ran out, and rebalances if any did.
fn expire(g: &mut Group, group: &str, log: &Log) {
    let now = Instant::now();
    let before = g.members.len();
    g.members.retain(|id, m| {
        let alive = now.duration_since(m.last_seen) <= m.session;
        if !alive {
            tracing::info!(group, member = %id, "member session expired");
        }
        alive
    });
    if g.members.len() != before {
        rebalance(g, group, log);
    }
}

/// Spreads each topic's partitions over the members subscribed to it:
/// balanced, keeping current owners where the balance allows. Bumps the
/// generation if any member's assignment changed.
fn rebalance(g: &mut Group, group: &str, log: &Log) {
    let mut subscribers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, m) in &g.members {
        for t in &m.topics {
            subscribers.entry(t.clone()).or_default().push(id.clone());
        }
    }
    let mut next: BTreeMap<String, BTreeSet<(String, u32)>> =
        g.members.keys().map(|id| (id.clone(), BTreeSet::new())).collect();
    for (topic, members) in &subscribers {
        let n = log.partition_count(topic).unwrap_or(0);
        let current = |id: &String| -> Vec<u32> {
            g.members[id].assignment.iter().filter(|(t, p)| t == topic && *p < n).map(|(_, p)| *p).collect()
        };
        // Members holding the most get the larger quotas: fewer moves.
        let mut order: Vec<(usize, &String)> = members.iter().map(|id| (current(id).len(), id)).collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let m = order.len() as u32;
        let quota = |i: usize| (n / m + u32::from((i as u32) < n % m)) as usize;
        let mut taken = BTreeSet::new();
        for (i, (_, id)) in order.iter().enumerate() {
            for p in current(id).into_iter().take(quota(i)) {
                taken.insert(p);
                next.get_mut(*id).expect("member").insert((topic.clone(), p));
            }
        }
        let mut free = (0..n).filter(|p| !taken.contains(p));
        for (i, (_, id)) in order.iter().enumerate() {
            let mine = next.get_mut(*id).expect("member");
            while mine.iter().filter(|(t, _)| t == topic).count() < quota(i) {
                match free.next() {
                    Some(p) => {
                        mine.insert((topic.clone(), p));
                    }
                    None => break,
                }
            }
        }
    }
    let changed = g.members.iter().any(|(id, m)| m.assignment != next[id]);
    if changed {
        for (id, m) in g.members.iter_mut() {
            m.assignment = next.remove(id).unwrap_or_default();
        }
        g.generation = g.generation.wrapping_add(1);
        tracing::info!(group, generation = g.generation, members = g.members.len(), "rebalanced");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_log::{LogOptions, TopicConfig};

    async fn coordinator(partitions: u32) -> (tempfile::TempDir, Coordinator) {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(
            dir.path().join("c.redb"),
            LogOptions { retention_check_interval: None, ..LogOptions::default() },
        )
        .unwrap();
        log.create_topic("t", TopicConfig::with_partitions(partitions)).await.unwrap();
        (dir, Coordinator::new(log))
    }

    fn parts(m: &Membership) -> Vec<u32> {
        m.assignment.iter().map(|(_, p)| *p).collect()
    }

    const S: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn balanced_and_sticky() {
        let (_d, c) = coordinator(6).await;
        let a = c.join("g", Some("a"), &["t"], S).unwrap();
        assert_eq!(parts(&a), vec![0, 1, 2, 3, 4, 5]);
        c.join("g", Some("b"), &["t"], S).unwrap();
        c.join("g", Some("c"), &["t"], S).unwrap();
        let views: Vec<Membership> = ["a", "b", "c"].iter().map(|m| c.heartbeat("g", m).unwrap()).collect();
        let mut all: Vec<u32> = views.iter().flat_map(parts).collect();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4, 5], "every partition owned once");
        assert!(views.iter().all(|v| v.assignment.len() == 2), "{views:?}");
        // "a" kept two of the partitions it had.
        assert!(parts(&views[0]).iter().all(|p| parts(&a).contains(p)));

        // "b" leaves: only its partitions move.
        let before_a = parts(&views[0]);
        let before_c = parts(&views[2]);
        c.leave("g", "b").unwrap();
        let a2 = c.heartbeat("g", "a").unwrap();
        let c2 = c.heartbeat("g", "c").unwrap();
        assert!(before_a.iter().all(|p| parts(&a2).contains(p)));
        assert!(before_c.iter().all(|p| parts(&c2).contains(p)));
        assert_eq!(a2.assignment.len() + c2.assignment.len(), 6);
        assert!(a2.generation > views[0].generation);
    }

    #[tokio::test]
    async fn commits_are_fenced_by_generation_and_ownership() {
        let (_d, c) = coordinator(2).await;
        let a = c.join("g", Some("a"), &["t"], S).unwrap();
        c.commit("g", Some(("a", a.generation)), "t", &[(0, 5)]).await.unwrap();
        let b = c.join("g", Some("b"), &["t"], S).unwrap();
        assert!(b.generation > a.generation);
        let err = c.commit("g", Some(("a", a.generation)), "t", &[(0, 6)]).await.unwrap_err();
        assert!(matches!(err, GroupError::IllegalGeneration { .. }), "{err}");
        let b_part = b.assignment[0].1;
        let a_now = c.heartbeat("g", "a").unwrap();
        let err = c.commit("g", Some(("a", a_now.generation)), "t", &[(b_part, 1)]).await.unwrap_err();
        assert!(matches!(err, GroupError::NotOwner { .. }), "{err}");
        assert!(matches!(c.heartbeat("g", "zed"), Err(GroupError::UnknownMember { .. })));
        assert_eq!(c.committed("g", "t").unwrap()[0], (0, Some(5)));
        // Plain (unfenced) commits only once nobody is consuming.
        let err = c.commit("g", None, "t", &[(0, 1)]).await.unwrap_err();
        assert!(matches!(err, GroupError::GroupActive { members: 2, .. }), "{err}");
        c.leave("g", "a").unwrap();
        c.leave("g", "b").unwrap();
        c.commit("g", None, "t", &[(0, 1)]).await.unwrap();
        assert_eq!(c.committed("g", "t").unwrap()[0], (0, Some(1)));
    }

    #[tokio::test]
    async fn expired_members_lose_their_partitions() {
        let (_d, c) = coordinator(4).await;
        c.join("g", Some("a"), &["t"], Duration::from_millis(500)).unwrap();
        c.join("g", Some("b"), &["t"], S).unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let b = c.heartbeat("g", "b").unwrap();
        assert_eq!(parts(&b), vec![0, 1, 2, 3]);
        let state = c.describe("g").unwrap();
        assert_eq!(state.members.len(), 1);
        assert_eq!(state.partitions.len(), 4);
        assert!(state.partitions.iter().all(|p| p.owner.as_deref() == Some("b")));
    }
}
