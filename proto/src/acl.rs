//! Access control as both sides see it: API keys, and the rules that say
//! which principal may do what to which resource (docs/security.md).
//!
//! The model is Kafka's: a rule grants a principal some operations on the
//! resources whose names match a pattern. Nothing is allowed without a rule,
//! except to admin keys. The hub decides (`cairn_hub::auth`); these are the
//! types it stores and sends.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// What kind of thing a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// Topics. Over MQTT the pattern is matched against the MQTT topic
    /// (`sensors/room-1/temp`); over the native protocol, against the Cairn
    /// topic (`sensors`).
    Topic,
    /// Consumer groups.
    Group,
    /// WebAssembly plugins (by plugin name).
    Plugin,
    /// The hub itself: metrics (describe), API keys and ACLs (alter). The
    /// pattern is ignored.
    Cluster,
}

/// How a rule's pattern matches a resource name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternKind {
    /// The name equals the pattern (`*` matches every name).
    Literal,
    /// The name starts with the pattern.
    Prefix,
    /// An MQTT topic filter (`sensors/%u/#`, `+/status`).
    Filter,
}

/// What may be done. `All` grants every other one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Consume a topic (fetch, MQTT subscribe), use a group or a plugin.
    Read,
    /// Produce to a topic (MQTT publish, retained, will), upload a plugin.
    Write,
    /// Create a topic.
    Create,
    /// Delete a topic.
    Delete,
    /// Change a topic's settings or its plugin attachments; on the cluster,
    /// manage keys and ACLs.
    Alter,
    /// See that it exists and its settings, counters, lag.
    Describe,
    All,
}

/// One access rule: `principal` may do `operations` to the `resource`s
/// whose names match `pattern`.
///
/// In patterns, `%u` stands for the principal's name and `%c` for the MQTT
/// client id, so one rule can give every device its own topics. A
/// principal of `*` is every authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRule {
    pub principal: String,
    pub resource: ResourceKind,
    pub pattern_kind: PatternKind,
    pub pattern: String,
    pub operations: Vec<Operation>,
}

/// A stored rule and the id that removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    pub id: u64,
    pub rule: AclRule,
}

/// What is shown of an API key: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    /// The key id (`ck_…`), the MQTT username.
    pub key: String,
    /// Who the key acts as: the name ACL rules grant to.
    pub principal: String,
    /// Admin keys may do everything.
    pub admin: bool,
    pub description: String,
    pub created_ms: i64,
}

/// A name that is not one of a set's values, with the values it could be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub expected: &'static str,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?} (expected one of: {})", self.what, self.name, self.expected)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for UnknownName {}

/// Names on the command line and in docs, the same as on the wire.
macro_rules! named {
    ($ty:ident, $what:literal, $($variant:ident = $name:literal),+) => {
        impl $ty {
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownName {
                        what: $what,
                        name: s.into(),
                        expected: concat!($($name, " "),+),
                    }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named!(ResourceKind, "resource", Topic = "topic", Group = "group", Plugin = "plugin", Cluster = "cluster");
named!(PatternKind, "pattern kind", Literal = "literal", Prefix = "prefix", Filter = "filter");
named!(
    Operation,
    "operation",
    Read = "read",
    Write = "write",
    Create = "create",
    Delete = "delete",
    Alter = "alter",
    Describe = "describe",
    All = "all"
);

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names_and_parse_back() {
        for op in [
            Operation::Read,
            Operation::Write,
            Operation::Create,
            Operation::Delete,
            Operation::Alter,
            Operation::Describe,
            Operation::All,
        ] {
            let cbor = serde_cbor::to_vec(&op).unwrap();
            let serde_name: String = serde_cbor::from_slice(&cbor).unwrap();
            assert_eq!(serde_name, op.name());
            assert_eq!(op.name().parse::<Operation>(), Ok(op));
        }
        for kind in [ResourceKind::Topic, ResourceKind::Group, ResourceKind::Plugin, ResourceKind::Cluster] {
            assert_eq!(kind.name().parse::<ResourceKind>(), Ok(kind));
        }
        let err = "writ".parse::<Operation>().unwrap_err().to_string();
        assert!(err.contains("\"writ\"") && err.contains("write"), "{err}");
    }
}
