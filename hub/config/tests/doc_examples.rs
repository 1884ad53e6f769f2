//! Every TOML example a user may copy from docs/ is a config file `cairn
//! serve` accepts, or an `[[uplink]]` table `cairn uplink add` accepts, and
//! each uplink in it passes its checks: the docs cannot drift from the code.

use std::path::Path;

use cairn_config::uplink::{parse_settings, UplinkSpec};
use cairn_config::Settings;

/// The ```toml blocks of a Markdown file.
fn toml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match (&mut block, line.trim()) {
            (None, "```toml") => block = Some(String::new()),
            (Some(_), "```") => blocks.extend(block.take()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// A client config file (`cairn --client-config`, read by the binary, not
/// by the hub): only these keys.
fn is_client_config(block: &str) -> bool {
    let keys = ["api_key", "api_secret", "tls_ca", "tls_cert", "tls_key"];
    let table: toml::Table = toml::from_str(block).unwrap_or_default();
    !table.is_empty() && table.keys().all(|k| keys.contains(&k.as_str()))
}

#[test]
fn every_toml_example_in_the_docs_is_accepted() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&docs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        for (i, block) in toml_blocks(&std::fs::read_to_string(&path).unwrap()).into_iter().enumerate() {
            let at = format!("{} block {}", path.display(), i + 1);
            if is_client_config(&block) {
                continue;
            }
            let uplinks = match Settings::from_toml(&block) {
                Ok(settings) => settings.uplink,
                // Not a whole file: the keys of one uplink, as `cairn uplink add` takes them.
                Err(file_error) => vec![parse_settings(&block)
                    .unwrap_or_else(|e| panic!("{at} is neither a config file ({file_error}) nor an uplink ({e})"))],
            };
            for uplink in &uplinks {
                UplinkSpec::try_from(uplink).unwrap_or_else(|e| panic!("{at}: {e}"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "the docs have TOML examples ({checked} found)");
}

#[test]
fn the_packaged_config_file_is_accepted_and_keeps_the_data_in_var_lib() {
    // /etc/cairn/cairn.toml of the Debian package (hub/cli/debian/).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/debian/cairn.toml");
    let settings = Settings::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(settings.data_dir.as_deref(), Some(Path::new("/var/lib/cairn")));
    // Every commented key, uncommented, is a valid setting too.
    let uncommented: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with('[') || rest.contains(" = ") && !rest.starts_with(' ') => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let all = Settings::from_toml(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert!(all.mqtt.tls_addr.is_some() && all.uplink.len() == 1, "the keys were uncommented");
    UplinkSpec::try_from(&all.uplink[0]).unwrap();
}
