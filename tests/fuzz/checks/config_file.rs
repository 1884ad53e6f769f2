// The config file as `cairn serve --config` reads it, and an uplink's TOML
// as `cairn uplink add` sends it to a running hub: text parsed into the
// settings types (`cairn_config`), then each `[[uplink]]` checked into the
// spec an uplink runs from, and a checked uplink's topic templates
// rendered. Every error must have a message. (Shared by the fuzz target and
// the stable regression test, tests/tests/fuzz_corpus.rs.)

use std::borrow::Cow;

use cairn_config::uplink::{parse_settings, Target, UplinkSpec};
use cairn_config::Settings;

/// What each placeholder renders as: a long value, so no length is assumed.
fn value(name: &str) -> Cow<'static, str> {
    Cow::Owned(format!("{name}/{}", "x".repeat(300)))
}

fn check(uplink: &cairn_config::UplinkSettings) {
    match UplinkSpec::try_from(uplink) {
        Ok(spec) => {
            assert!(!spec.remote_topic.render(value).is_empty(), "a checked template renders something");
            if let Target::Mqtt(mqtt) = &spec.target {
                let _ = mqtt.local_topic.render(value);
            }
            assert!(spec.group().starts_with("__uplink."));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Settings::from_toml(text) {
        Ok(settings) => {
            settings.uplink.iter().for_each(check);
            for addrs in [&settings.mqtt.addr, &settings.mqtt.tls_addr, &settings.mqtt.ws_addr].into_iter().flatten() {
                assert!(!addrs.to_vec().is_empty() || matches!(addrs, cairn_config::Addrs::Many(_)));
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match parse_settings(text) {
        Ok(uplink) => check(&uplink),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
