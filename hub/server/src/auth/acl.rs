//! Deciding one access: does some rule of this principal (or of `*`) grant
//! this operation on a resource with this name?
//!
//! As in Kafka, nothing is allowed without a rule, and a rule granting
//! read, write, create, delete or alter also grants describe. Two guards keep
//! patterns from reaching further than the operator meant:
//! - `%u` and `%c` are replaced only by names without `/`, `+` or `#`: a
//!   device whose client id is `#` does not turn `devices/%c/#` into a rule
//!   for every device;
//! - the hub's own topics (`__…`, MQTT sessions and retained messages) match
//!   only patterns that start with `__` themselves, so `*` or `#` does not
//!   hand them out.

use std::borrow::Cow;
use std::collections::HashMap;

use cairn_proto::acl::{AclEntry, AclRule, Operation, PatternKind, ResourceKind};

use crate::topic_filter;

/// Who is asking: the principal, and over MQTT the client id.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub principal: &'a str,
    pub client_id: Option<&'a str>,
}

/// The rules, by principal.
#[derive(Debug, Default)]
pub struct Rules {
    by_principal: HashMap<String, Vec<AclEntry>>,
}

impl Rules {
    pub fn new(entries: impl IntoIterator<Item = AclEntry>) -> Rules {
        let mut by_principal: HashMap<String, Vec<AclEntry>> = HashMap::new();
        for entry in entries {
            by_principal.entry(entry.rule.principal.clone()).or_default().push(entry);
        }
        Rules { by_principal }
    }

    /// Every rule, by id.
    pub fn entries(&self) -> Vec<AclEntry> {
        let mut all: Vec<AclEntry> = self.by_principal.values().flatten().cloned().collect();
        all.sort_by_key(|e| e.id);
        all
    }

    fn of<'a>(&'a self, who: &Who<'_>) -> impl Iterator<Item = &'a AclRule> + 'a {
        let own = self.by_principal.get(who.principal).into_iter().flatten();
        let everyone = self.by_principal.get("*").into_iter().flatten();
        own.chain(everyone).map(|e| &e.rule)
    }

    /// Whether `who` may do `op` to the `kind` resource called `name`.
    pub fn allows(&self, who: &Who<'_>, op: Operation, kind: ResourceKind, name: &str) -> bool {
        self.of(who).any(|rule| {
            rule.resource == kind
                && grants(rule, op)
                && (kind == ResourceKind::Cluster
                    || expand(&rule.pattern, who).is_some_and(|p| matches(rule, &p, name)))
        })
    }

    /// Whether `who` may do `op` on every topic the MQTT filter `filter`
    /// matches (a subscription).
    pub fn allows_filter(&self, who: &Who<'_>, op: Operation, filter: &str) -> bool {
        self.of(who).any(|rule| {
            rule.resource == ResourceKind::Topic
                && grants(rule, op)
                && expand(&rule.pattern, who).is_some_and(|p| covers(rule.pattern_kind, &p, filter))
        })
    }
}

fn grants(rule: &AclRule, op: Operation) -> bool {
    rule.operations.iter().any(|&o| o == op || o == Operation::All)
        || (op == Operation::Describe && !rule.operations.is_empty())
}

/// The pattern with `%u` and `%c` replaced; `None` when a name cannot be
/// put in safely (or `%c` is used where there is no client id).
fn expand<'p>(pattern: &'p str, who: &Who<'_>) -> Option<Cow<'p, str>> {
    if !pattern.contains('%') {
        return Some(Cow::Borrowed(pattern));
    }
    let safe = |name: &str| !name.is_empty() && !name.contains(['/', '+', '#']);
    let mut out = pattern.to_string();
    if out.contains("%u") {
        if !safe(who.principal) {
            return None;
        }
        out = out.replace("%u", who.principal);
    }
    if out.contains("%c") {
        let client = who.client_id.filter(|c| safe(c))?;
        out = out.replace("%c", client);
    }
    Some(Cow::Owned(out))
}

fn internal(name: &str) -> bool {
    name.starts_with("__")
}

fn matches(rule: &AclRule, pattern: &str, name: &str) -> bool {
    if internal(name) && !internal(pattern) {
        return false;
    }
    match rule.pattern_kind {
        PatternKind::Literal => pattern == "*" || pattern == name,
        PatternKind::Prefix => name.starts_with(pattern),
        PatternKind::Filter => topic_filter::matches(pattern, name),
    }
}

/// Whether a pattern allows every topic an MQTT filter matches.
fn covers(kind: PatternKind, pattern: &str, filter: &str) -> bool {
    if internal(filter) && !internal(pattern) {
        return false;
    }
    let wildcard = filter.contains(['+', '#']);
    match kind {
        PatternKind::Literal => pattern == "*" && !filter.starts_with('$') || !wildcard && pattern == filter,
        PatternKind::Prefix => {
            // Everything the filter matches starts with its part before the
            // first wildcard; `a/#` also matches `a` itself.
            let head = match filter.find(['+', '#']) {
                Some(at) => filter[..at].strip_suffix('/').unwrap_or(&filter[..at]),
                None => filter,
            };
            head.starts_with(pattern)
        }
        PatternKind::Filter => topic_filter::covers(pattern, filter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(principal: &str, kind: PatternKind, pattern: &str, ops: &[Operation]) -> AclEntry {
        AclEntry {
            id: 0,
            rule: AclRule {
                principal: principal.into(),
                resource: ResourceKind::Topic,
                pattern_kind: kind,
                pattern: pattern.into(),
                operations: ops.to_vec(),
            },
        }
    }

    fn who<'a>(principal: &'a str, client_id: Option<&'a str>) -> Who<'a> {
        Who { principal, client_id }
    }

    use Operation::*;
    use ResourceKind::Topic;

    #[test]
    fn a_device_rule_with_u_and_c_reaches_only_its_own_topics() {
        let rules = Rules::new([
            rule("*", PatternKind::Filter, "devices/%u/#", &[Write]),
            rule("*", PatternKind::Filter, "cmd/%c", &[Read]),
        ]);
        let d7 = who("dev-7", Some("c-7"));
        assert!(rules.allows(&d7, Write, Topic, "devices/dev-7/temp"));
        assert!(!rules.allows(&d7, Write, Topic, "devices/dev-8/temp"));
        assert!(!rules.allows(&d7, Read, Topic, "devices/dev-7/temp"));
        assert!(rules.allows(&d7, Describe, Topic, "devices/dev-7/temp"));
        assert!(rules.allows_filter(&d7, Read, "cmd/c-7"));
        assert!(!rules.allows_filter(&d7, Read, "cmd/+"));
        // A name with wildcards in it does not widen the pattern.
        assert!(!rules.allows(&who("#", Some("c")), Write, Topic, "devices/x/temp"));
        assert!(!rules.allows_filter(&who("d", Some("+")), Read, "cmd/+"));
        // No client id (the native protocol): %c rules do not apply.
        assert!(!rules.allows(&who("d", None), Read, Topic, "cmd/"));
    }

    #[test]
    fn literal_prefix_and_filter_patterns() {
        let rules = Rules::new([
            rule("dash", PatternKind::Literal, "*", &[Read]),
            rule("app", PatternKind::Prefix, "orders.", &[All]),
            rule("app", PatternKind::Literal, "readings", &[Write]),
        ]);
        let (dash, app) = (who("dash", None), who("app", None));
        assert!(rules.allows(&dash, Read, Topic, "anything"));
        assert!(!rules.allows(&dash, Write, Topic, "anything"));
        assert!(!rules.allows(&dash, Read, Topic, "__mqtt_sessions"), "internal topics need their own rule");
        assert!(!rules.allows(&dash, Read, ResourceKind::Group, "g"), "a topic rule is not a group rule");
        assert!(rules.allows(&app, Delete, Topic, "orders.eu"));
        assert!(!rules.allows(&app, Delete, Topic, "order"));
        assert!(rules.allows(&app, Write, Topic, "readings"));
        assert!(!rules.allows(&app, Write, Topic, "readings2"));
        assert!(!rules.allows(&who("other", None), Read, Topic, "readings"));
        assert!(rules.allows_filter(&dash, Read, "a/#"));
        assert!(!rules.allows_filter(&dash, Read, "$SYS/#"));
        assert!(rules.allows_filter(&app, Read, "orders.eu/+"));
        assert!(!rules.allows_filter(&app, Read, "orders/#"));
    }
}
