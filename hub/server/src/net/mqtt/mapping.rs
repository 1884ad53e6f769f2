//! Mapping rules: which Cairn topic and key an MQTT message is stored under.
//!
//! Without rules, MQTT topic `a/b/c` goes to Cairn topic `a` with key
//! `a/b/c` (`topics::cairn_topic`). A rule changes that for the MQTT topics
//! matching its filter, with templates built from the topic's levels:
//!
//! ```toml
//! [[mqtt.mapping]]
//! filter = "factory/+/sensors/#"   # which MQTT topics the rule applies to
//! topic  = "factory-{2}"           # Cairn topic: level 2 is the site
//! key    = "{3}/{4}"               # key (default "{topic}", the whole MQTT topic)
//! ```
//!
//! `{N}` is level N (from 1), `{topic}` the whole MQTT topic. The first rule
//! whose filter matches wins. A template may only name levels the filter
//! guarantees (those before a `#`), so a matching topic always has them.
//!
//! A record stored by a rule carries the MQTT topic in a header
//! (`topics::TOPIC_HEADER`), so subscribers receive it under the topic it was
//! published to; `topics_for` tells a subscription which Cairn topics the
//! rules may have put its messages in.

use std::collections::BTreeSet;

use super::topics::{self, TopicError, INTERNAL_PREFIX};
use cairn_log::validate_topic_name;

/// A rule as written in the config file (`[[mqtt.mapping]]`).
pub use cairn_config::RuleSettings;

/// Why a rule in the config cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("mapping rule filter '{0}' is not a valid MQTT topic filter")]
    BadFilter(String),
    #[error("mapping rule template '{template}': {problem}")]
    BadTemplate { template: String, problem: String },
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// Level N, counted from 1.
    Level(usize),
    Topic,
}

/// A parsed template such as `factory-{2}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Part>);

impl Template {
    /// Parses `text`; `guaranteed` is how many levels every matching topic has.
    fn parse(text: &str, guaranteed: usize) -> Result<Template, MappingError> {
        let bad = |problem: String| MappingError::BadTemplate { template: text.to_string(), problem };
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Text(rest.to_string()));
                    break;
                }
                Some(i) if rest.as_bytes()[i] == b'}' => return Err(bad("'}' without '{'".into())),
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].to_string()));
                    }
                    let close = rest[i..].find('}').ok_or_else(|| bad("'{' without '}'".into()))? + i;
                    let name = &rest[i + 1..close];
                    parts.push(match name {
                        "topic" => Part::Topic,
                        n => match n.parse::<usize>() {
                            Ok(level) if level >= 1 && level <= guaranteed => Part::Level(level),
                            Ok(level) => {
                                return Err(bad(format!(
                                    "level {{{level}}} is not one every matching topic has (levels 1..={guaranteed})"
                                )))
                            }
                            Err(_) => return Err(bad(format!("unknown placeholder {{{n}}}; use {{topic}} or {{N}}"))),
                        },
                    });
                    rest = &rest[close + 1..];
                }
            }
        }
        if parts.is_empty() {
            return Err(bad("empty template".into()));
        }
        Ok(Template(parts))
    }

    fn render(&self, topic: &str, levels: &[&str]) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Topic => out.push_str(topic),
                Part::Level(n) => out.push_str(levels.get(n - 1).copied().unwrap_or_default()),
            }
        }
        out
    }

    /// The template rendered for every topic a subscription `filter` may
    /// receive, when that is one name (the levels it uses are literal in
    /// the filter); `None` when it could be any.
    fn render_for_filter(&self, filter: &str) -> Option<String> {
        let levels: Vec<&str> = filter.split('/').collect();
        let literal = |n: usize| levels.get(n - 1).filter(|l| **l != "+" && **l != "#" && !levels[..n].contains(&"#"));
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Topic if topics::valid_filter(filter) && !filter.contains(['+', '#']) => out.push_str(filter),
                Part::Topic => return None,
                Part::Level(n) => out.push_str(literal(*n)?),
            }
        }
        Some(out)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    filter: String,
    topic: Template,
    key: Template,
}

/// Where one MQTT message is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub topic: String,
    pub key: String,
    /// A rule decided it (the record then carries the MQTT topic in a header).
    pub mapped: bool,
}

/// Which Cairn topics a subscription reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicsRead {
    /// These (created when missing).
    Named(BTreeSet<String>),
    /// Every topic, also those created later.
    All,
}

/// The configured rules, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    rules: Vec<Rule>,
}

impl Mapping {
    /// Checks and parses the config's rules.
    pub fn new(rules: &[RuleSettings]) -> Result<Mapping, MappingError> {
        let rules = rules
            .iter()
            .map(|r| {
                if !topics::valid_filter(&r.filter) || r.filter.starts_with('$') {
                    return Err(MappingError::BadFilter(r.filter.clone()));
                }
                let guaranteed = r.filter.split('/').take_while(|l| *l != "#").count();
                Ok(Rule {
                    filter: r.filter.clone(),
                    topic: Template::parse(&r.topic, guaranteed)?,
                    key: Template::parse(r.key.as_deref().unwrap_or("{topic}"), guaranteed)?,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Mapping { rules })
    }

    /// The Cairn topic and key of a message published to `mqtt_topic`.
    pub fn route(&self, mqtt_topic: &str) -> Result<Route, TopicError> {
        let default_topic = topics::cairn_topic(mqtt_topic);
        let Some(rule) = self.rules.iter().find(|r| topics::matches(&r.filter, mqtt_topic)) else {
            return match default_topic {
                Ok(topic) => Ok(Route { topic: topic.to_string(), key: mqtt_topic.to_string(), mapped: false }),
                // A valid MQTT topic whose first level cannot name a Cairn topic.
                Err(TopicError::FirstLevel(_)) => {
                    Ok(Route { topic: topics::OTHER_TOPIC.to_string(), key: mqtt_topic.to_string(), mapped: true })
                }
                Err(e) => Err(e),
            };
        };
        // The checks of the default path that do not depend on the first level.
        if let Err(e @ (TopicError::Empty | TopicError::Wildcard(_) | TopicError::Reserved(_))) = default_topic {
            return Err(e);
        }
        let levels: Vec<&str> = mqtt_topic.split('/').collect();
        let topic = rule.topic.render(mqtt_topic, &levels);
        if validate_topic_name(&topic).is_err() {
            return Err(TopicError::Mapped { mqtt: mqtt_topic.to_string(), topic });
        }
        if topic.starts_with(INTERNAL_PREFIX) {
            return Err(TopicError::Reserved(mqtt_topic.to_string()));
        }
        Ok(Route { topic, key: rule.key.render(mqtt_topic, &levels), mapped: true })
    }

    /// The Cairn topics holding messages a subscription to `filter` may
    /// receive: the default topic of its first level, and the topics of the
    /// rules whose filters overlap it.
    pub fn topics_for(&self, filter: &str) -> TopicsRead {
        let mut named = BTreeSet::new();
        match topics::filter_topic(filter).map(|first| (first, topics::cairn_topic(first))) {
            Some((first, Ok(_))) => {
                named.insert(first.to_string());
            }
            // `/a`, `a b/#`: stored in the topic for such names.
            Some((_, Err(TopicError::Empty | TopicError::FirstLevel(_)))) => {
                named.insert(topics::OTHER_TOPIC.to_string());
            }
            Some(_) => {} // `$…` and the hub's own: no message is stored there
            None => return TopicsRead::All,
        }
        for rule in self.rules.iter().filter(|r| topics::overlaps(&r.filter, filter)) {
            match rule.topic.render_for_filter(filter) {
                Some(topic) if validate_topic_name(&topic).is_ok() && !topic.starts_with(INTERNAL_PREFIX) => {
                    named.insert(topic);
                }
                Some(_) => {}
                None => return TopicsRead::All,
            }
        }
        TopicsRead::Named(named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(filter: &str, topic: &str, key: Option<&str>) -> RuleSettings {
        RuleSettings { filter: filter.into(), topic: topic.into(), key: key.map(Into::into) }
    }

    #[test]
    fn without_rules_the_first_level_is_the_topic() {
        let m = Mapping::default();
        let r = m.route("sensors/room1/temp").unwrap();
        assert_eq!((r.topic.as_str(), r.key.as_str(), r.mapped), ("sensors", "sensors/room1/temp", false));
        // Any other valid MQTT topic name goes to one topic, under its name.
        for name in ["bad topic/x", "/TopicA", "café/z"] {
            let r = m.route(name).unwrap();
            assert_eq!((r.topic.as_str(), r.key.as_str(), r.mapped), (topics::OTHER_TOPIC, name, true));
        }
        assert!(matches!(m.route("$TopicA/B"), Err(TopicError::Reserved(_))));
        assert!(matches!(m.route("__mqtt_retained/x"), Err(TopicError::Reserved(_))));
        for filter in ["/TopicA", "/#", "x y/+"] {
            let read = m.topics_for(filter);
            assert!(matches!(&read, TopicsRead::Named(t) if t.contains(topics::OTHER_TOPIC)), "{filter}: {read:?}");
        }
    }

    #[test]
    fn the_first_matching_rule_chooses_topic_and_key() {
        let m = Mapping::new(&[
            rule("factory/+/sensors/#", "factory-{2}", Some("{3}/{2}")),
            rule("factory/#", "factory-misc", None),
        ])
        .unwrap();
        let r = m.route("factory/berlin/sensors/t1").unwrap();
        assert_eq!((r.topic.as_str(), r.key.as_str(), r.mapped), ("factory-berlin", "sensors/berlin", true));
        let r = m.route("factory/status").unwrap();
        assert_eq!((r.topic.as_str(), r.key.as_str()), ("factory-misc", "factory/status"));
        assert_eq!(m.route("other/x").unwrap().topic, "other");
        // A level that makes an invalid Cairn topic name is refused, clearly.
        let err = m.route("factory/a b/sensors/t").unwrap_err().to_string();
        assert!(err.contains("factory-a b"), "{err}");
        assert!(matches!(m.route("factory/+/sensors/x"), Err(TopicError::Wildcard(_))));
    }

    #[test]
    fn bad_rules_are_refused_with_what_is_wrong() {
        let err = Mapping::new(&[rule("a/#/b", "t", None)]).unwrap_err();
        assert_eq!(err, MappingError::BadFilter("a/#/b".into()));
        let err = Mapping::new(&[rule("a/+/#", "t-{3}", None)]).unwrap_err().to_string();
        assert!(err.contains("{3}") && err.contains("1..=2"), "{err}");
        let err = Mapping::new(&[rule("a/+", "t-{site}", None)]).unwrap_err().to_string();
        assert!(err.contains("{site}"), "{err}");
        assert!(Mapping::new(&[rule("a/+", "t-{1", None)]).is_err());
        assert!(Mapping::new(&[rule("a/+", "t}", None)]).is_err());
        assert!(Mapping::new(&[rule("a/+", "", None)]).is_err());
    }

    #[test]
    fn subscriptions_read_the_topics_rules_may_have_used() {
        let m =
            Mapping::new(&[rule("factory/+/sensors/#", "factory-{2}", None), rule("lab/#", "lab-data", None)]).unwrap();
        let named = |v: &[&str]| TopicsRead::Named(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(m.topics_for("factory/berlin/sensors/+"), named(&["factory", "factory-berlin"]));
        assert_eq!(m.topics_for("factory/+/sensors/t1"), TopicsRead::All);
        assert_eq!(m.topics_for("lab/x"), named(&["lab", "lab-data"]));
        assert_eq!(m.topics_for("other/#"), named(&["other"]));
        assert_eq!(m.topics_for("+/x"), TopicsRead::All);
    }

    #[test]
    fn filters_overlap_when_a_topic_matches_both() {
        assert!(topics::overlaps("a/+/c", "a/b/#"));
        assert!(topics::overlaps("a/#", "a"));
        assert!(topics::overlaps("+", "x"));
        assert!(!topics::overlaps("a/b", "a/c"));
        assert!(!topics::overlaps("a", "a/b"));
        assert!(!topics::overlaps("a/+", "a/b/c"));
    }
}
