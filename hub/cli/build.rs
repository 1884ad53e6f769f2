//! Bundles the plugin SDK into the `cairn` binary, so `cairn plugin new`
//! writes a crate that builds anywhere (an installed package, no source
//! tree): the sources of `cairn-plugin-sdk` and `cairn-proto`, the WIT
//! world, and their manifests made standalone (what the workspace's
//! `[workspace.package]` and `[workspace.dependencies]` say, written out, as
//! `cargo package` does). The bundle is `$OUT_DIR/sdk_bundle.rs`: a list of
//! (relative path, contents), laid out as
//!
//! ```text
//! cairn-plugin-sdk/{Cargo.toml,src/…}   cairn-proto/{Cargo.toml,src/…}   wit/cairn.wit
//! ```
//!
//! so the SDK's own `../wit/cairn.wit` and its path to `../cairn-proto` hold.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    let workspace: Table = read_toml(&root.join("Cargo.toml"));
    let mut files: Vec<(String, String)> = Vec::new();
    for (dir, name) in [("plugins/sdk", "cairn-plugin-sdk"), ("proto", "cairn-proto")] {
        let manifest = standalone(&read_toml(&root.join(dir).join("Cargo.toml")), &workspace);
        files.push((format!("{name}/Cargo.toml"), manifest));
        for path in sources(&root.join(dir).join("src")) {
            let relative = path.strip_prefix(root.join(dir)).unwrap().to_string_lossy().replace('\\', "/");
            files.push((format!("{name}/{relative}"), std::fs::read_to_string(&path).unwrap()));
        }
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    files.push(("wit/cairn.wit".into(), std::fs::read_to_string(root.join("plugins/wit/cairn.wit")).unwrap()));
    println!("cargo:rerun-if-changed={}", root.join("plugins/wit").display());
    println!("cargo:rerun-if-changed={}", root.join("Cargo.toml").display());

    let mut out = String::from(
        "/// The plugin SDK's files: (path in the bundle, contents).\npub const FILES: &[(&str, &str)] = &[\n",
    );
    for (path, contents) in &files {
        writeln!(out, "    ({path:?}, {contents:?}),").unwrap();
    }
    out.push_str("];\n");
    std::fs::write(PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("sdk_bundle.rs"), out).unwrap();
}

fn read_toml(path: &Path) -> Table {
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.rs` file under `dir`, in a stable order.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// A member's manifest with every `workspace = true` replaced by what the
/// workspace says, the Cairn crates it uses as sibling paths, and no
/// dev-dependencies (the bundle carries no tests).
fn standalone(member: &Table, workspace: &Table) -> String {
    let ws = workspace["workspace"].as_table().unwrap();
    let mut out = member.clone();
    out.remove("dev-dependencies");
    if let Some(package) = out.get_mut("package").and_then(Value::as_table_mut) {
        let inherited = ws["package"].as_table().unwrap();
        for (key, value) in package.iter_mut() {
            if is_inherited(value) {
                *value = inherited[key.as_str()].clone();
            }
        }
    }
    if let Some(deps) = out.get_mut("dependencies").and_then(Value::as_table_mut) {
        let inherited = ws["dependencies"].as_table().unwrap();
        for (name, dep) in deps.iter_mut() {
            let Some(spec) = dep.as_table().filter(|t| t.get("workspace").is_some()).cloned() else { continue };
            let mut resolved = match &inherited[name.as_str()] {
                Value::String(version) => Table::from_iter([("version".to_string(), Value::String(version.clone()))]),
                Value::Table(t) => t.clone(),
                other => panic!("workspace dependency {name}: {other}"),
            };
            if resolved.contains_key("path") {
                // A Cairn crate: its bundled copy, beside this one.
                resolved.insert("path".into(), Value::String(format!("../{name}")));
            }
            for (key, value) in spec {
                match key.as_str() {
                    "workspace" => {}
                    "features" => {
                        let mut features =
                            resolved.get("features").and_then(Value::as_array).cloned().unwrap_or_default();
                        features.extend(value.as_array().unwrap().iter().cloned());
                        resolved.insert("features".into(), Value::Array(features));
                    }
                    _ => {
                        resolved.insert(key, value);
                    }
                }
            }
            *dep = Value::Table(resolved);
        }
    }
    // [package] first, as people write manifests.
    let package = Table::from_iter(out.remove_entry("package"));
    format!(
        "# Bundled by `cairn plugin new` from Cairn {}; not to be edited.\n{}\n{}",
        ws["package"]["version"].as_str().unwrap(),
        toml::to_string(&package).unwrap(),
        toml::to_string(&out).unwrap()
    )
}

fn is_inherited(value: &Value) -> bool {
    value.as_table().is_some_and(|t| t.get("workspace").and_then(Value::as_bool) == Some(true))
}
