//! MQTT topic filters (`sensors/+/temp`, `a/#`): whether one is valid,
//! whether it matches a topic, and whether one filter covers another. Used by
//! the MQTT listener (subscriptions) and by access rules (`auth`).

/// Whether `filter` is a valid MQTT topic filter (`#` only last and alone in
/// its level, `+` alone in its level).
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        other => !other.contains(['+', '#']),
    })
}

/// Whether MQTT topic `topic` matches `filter`. Topics starting with `$`
/// are not matched by a leading wildcard (MQTT 4.7.2).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match f {
            "#" => return true,
            "+" => {
                if t.next().is_none() {
                    return false;
                }
            }
            level => {
                if t.next() != Some(level) {
                    return false;
                }
            }
        }
    }
    t.next().is_none()
}

/// Whether every topic `filter` matches is also matched by `rule` (a
/// subscription to `filter` reads nothing `rule` does not allow). Both must
/// be valid filters.
pub fn covers(rule: &str, filter: &str) -> bool {
    if filter.starts_with('$') && rule.starts_with(['+', '#']) {
        // As in `matches`: a leading wildcard does not reach `$` topics.
        return false;
    }
    let (rule, filter): (Vec<&str>, Vec<&str>) = (rule.split('/').collect(), filter.split('/').collect());
    for (i, level) in rule.iter().enumerate() {
        match (*level, filter.get(i)) {
            ("#", _) => return true,
            // `a/#` matches `a` too, which `a/+` or `a/b` do not.
            (_, Some(&"#")) => return false,
            ("+", Some(_)) => {}
            (literal, Some(f)) if literal == *f => {}
            (_, Some(_)) => return false,
            // The filter ended: it matches only topics the rule's remaining
            // levels would have to be empty for; `a/#` covers `a`.
            (_, None) => return rule[i..] == ["#"],
        }
    }
    filter.len() == rule.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_covers_a_filter_when_it_matches_everything_the_filter_does() {
        assert!(covers("sensors/#", "sensors/#"));
        assert!(covers("sensors/#", "sensors/+/temp"));
        assert!(covers("sensors/#", "sensors"));
        assert!(covers("sensors/+/temp", "sensors/room-1/temp"));
        assert!(covers("sensors/+/temp", "sensors/+/temp"));
        assert!(covers("#", "a/b"));
        assert!(!covers("sensors/+/temp", "sensors/#"));
        assert!(!covers("sensors/room-1/#", "sensors/+/temp"));
        assert!(!covers("sensors/+", "sensors/a/b"));
        assert!(!covers("sensors/a", "sensors/a/b"));
        assert!(!covers("sensors/a/b", "sensors/a"));
        assert!(!covers("sensors/#", "#"));
        assert!(!covers("sensors/#", "+/temp"));
        assert!(covers("+/temp", "+/temp"));
        assert!(!covers("#", "$SYS/#"));
    }
}
