//! The plugin runtime against the real example plugins (built by
//! scripts/build-plugins.sh) and against hostile modules written in WAT.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_hub::wasm::{Limits, PluginError, PluginInstance, Runtime};
use cairn_proto::{BatchView, BatchWriter, OwnedRecord};

/// The example plugin `crate_name` as built by scripts/build-plugins.sh.
fn example(crate_name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm32-unknown-unknown/release")
        .join(format!("{crate_name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}): run `bash scripts/build-plugins.sh` first", path.display()))
}

fn runtime() -> (tempfile::TempDir, Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(dir.path()).unwrap();
    (dir, runtime)
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// One batch of (key, value) records, timestamps 1000, 1001, ...
fn batch(values: &[(&str, &str)]) -> Vec<u8> {
    let mut writer = BatchWriter::new(Vec::new()).unwrap();
    for (i, (key, value)) in values.iter().enumerate() {
        let headers = [("unit", &b"C"[..])];
        writer.push_parts(Some(key.as_bytes()), value.as_bytes(), 1000 + i as i64, headers.iter().copied()).unwrap();
    }
    writer.finish().unwrap()
}

fn records(batch: &[u8]) -> Vec<OwnedRecord> {
    BatchView::parse(batch).unwrap().records().map(|r| OwnedRecord::from(&r)).collect()
}

fn values(batch: &[u8]) -> Vec<String> {
    records(batch).into_iter().map(|r| String::from_utf8(r.value).unwrap()).collect()
}

#[test]
fn threshold_keeps_readings_at_or_above_min() {
    let (_dir, runtime) = runtime();
    let plugin = runtime.load(&example("cairn_plugin_threshold")).unwrap();
    assert!(!plugin.from_cache());
    let mut instance = plugin.instantiate(&params(&[("min", "20")]), Limits::default()).unwrap();
    let input = batch(&[("r1", "19.5"), ("r2", "20"), ("r3", "7"), ("r4", "25.25")]);
    let processed = instance.process(&input).unwrap();
    assert_eq!(processed.outputs.len(), 1);
    assert_eq!(processed.outputs[0].topic, None);
    let kept = records(processed.outputs[0].batch.as_bytes());
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].key.as_deref(), Some(&b"r2"[..]));
    assert_eq!(kept[0].value, b"20");
    assert_eq!(kept[0].timestamp, 1001);
    assert_eq!(kept[0].headers, vec![("unit".to_string(), b"C".to_vec())]);
    assert_eq!(kept[1].key.as_deref(), Some(&b"r4"[..]));
    assert_eq!(kept[1].timestamp, 1003);
    assert!(processed.fuel_used > 0 && processed.fuel_used < Limits::default().fuel_per_batch);

    // Everything dropped: no output at all.
    let processed = instance.process(&batch(&[("r1", "3")])).unwrap();
    assert!(processed.outputs.is_empty());
}

#[test]
fn threshold_errors_are_typed() {
    let (_dir, runtime) = runtime();
    let plugin = runtime.load(&example("cairn_plugin_threshold")).unwrap();
    match plugin.instantiate(&params(&[]), Limits::default()) {
        Err(PluginError::Init(message)) => assert!(message.contains("min"), "{message}"),
        other => panic!("expected Init, got {:?}", other.err()),
    }
    let mut instance = plugin.instantiate(&params(&[("min", "1")]), Limits::default()).unwrap();
    match instance.process(&batch(&[("r1", "warm")])) {
        Err(PluginError::Failed(message)) => assert!(message.contains("not a number"), "{message}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    // The plugin returned an error (no trap): the same instance goes on.
    assert_eq!(values(instance.process(&batch(&[("r1", "2")])).unwrap().outputs[0].batch.as_bytes()), ["2"]);
    assert_eq!(instance.instantiations(), 1);
}

#[test]
fn celsius_to_fahrenheit_rewrites_values() {
    let (_dir, runtime) = runtime();
    let plugin = runtime.load(&example("cairn_plugin_celsius_to_fahrenheit")).unwrap();
    let mut instance = plugin.instantiate(&[], Limits::default()).unwrap();
    let processed = instance.process(&batch(&[("a", "21.5"), ("b", "0"), ("c", "-40")])).unwrap();
    assert_eq!(processed.outputs.len(), 1);
    assert_eq!(values(processed.outputs[0].batch.as_bytes()), ["70.7", "32.0", "-40.0"]);
    let out = records(processed.outputs[0].batch.as_bytes());
    assert_eq!(out[2].key.as_deref(), Some(&b"c"[..]));
    assert_eq!(out[2].timestamp, 1002);
}

#[test]
fn alert_router_keeps_all_and_routes_over_the_limit() {
    let (_dir, runtime) = runtime();
    let plugin = runtime.load(&example("cairn_plugin_alert_router")).unwrap();
    let mut instance = plugin.instantiate(&params(&[("limit", "30")]), Limits::default()).unwrap();
    let processed = instance.process(&batch(&[("a", "31"), ("b", "29"), ("c", "45.5")])).unwrap();
    assert_eq!(processed.outputs.len(), 2);
    assert_eq!(processed.outputs[0].topic, None);
    assert_eq!(values(processed.outputs[0].batch.as_bytes()), ["31", "29", "45.5"]);
    assert_eq!(processed.outputs[1].topic.as_deref(), Some("alerts"));
    let alerts = records(processed.outputs[1].batch.as_bytes());
    assert_eq!(alerts.len(), 2);
    assert_eq!(
        (alerts[0].key.as_deref(), alerts[0].value.as_slice(), alerts[0].timestamp),
        (Some(&b"a"[..]), &b"31"[..], 1000)
    );
    assert_eq!(
        (alerts[1].key.as_deref(), alerts[1].value.as_slice(), alerts[1].timestamp),
        (Some(&b"c"[..]), &b"45.5"[..], 1002)
    );
}

#[test]
fn cbor_to_json_rewrites_payloads() {
    let (_dir, runtime) = runtime();
    let plugin = runtime.load(&example("cairn_plugin_cbor_to_json")).unwrap();
    let mut instance = plugin.instantiate(&[], Limits::default()).unwrap();
    let mut map = std::collections::BTreeMap::new();
    map.insert("t".to_string(), 21);
    map.insert("h".to_string(), 40);
    let cbor = serde_cbor::to_vec(&map).unwrap();
    let mut writer = BatchWriter::new(Vec::new()).unwrap();
    writer.push_parts(Some(b"dev-1"), &cbor, 5, std::iter::empty()).unwrap();
    writer.push_parts(None, &serde_cbor::to_vec(&"hello").unwrap(), 6, std::iter::empty()).unwrap();
    let processed = instance.process(&writer.finish().unwrap()).unwrap();
    assert_eq!(values(processed.outputs[0].batch.as_bytes()), [r#"{"h":40,"t":21}"#, r#""hello""#]);
}

#[test]
fn compiled_plugins_are_cached_across_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = example("cairn_plugin_threshold");
    let first = Runtime::new(dir.path()).unwrap().load(&wasm).unwrap();
    assert!(!first.from_cache());
    let cached: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let name = cached[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with(first.hash()) && name.ends_with(".cwasm"), "{name}");

    // A fresh runtime (a restart) on the same directory loads the artifact.
    let second = Runtime::new(dir.path()).unwrap().load(&wasm).unwrap();
    assert!(second.from_cache());
    assert_eq!(second.hash(), first.hash());
    let mut instance = second.instantiate(&params(&[("min", "5")]), Limits::default()).unwrap();
    assert_eq!(values(instance.process(&batch(&[("a", "4"), ("b", "6")])).unwrap().outputs[0].batch.as_bytes()), ["6"]);

    // A damaged artifact is dropped and the plugin compiled again.
    std::fs::write(&cached[0], b"not an artifact").unwrap();
    let third = Runtime::new(dir.path()).unwrap().load(&wasm).unwrap();
    assert!(!third.from_cache());
    assert!(Runtime::new(dir.path()).unwrap().load(&wasm).unwrap().from_cache());
}

// ---- hostile plugins ------------------------------------------------------

/// A core module exporting the world's functions by their canonical-ABI
/// names, `process` being `process_body` (params: batch ptr, len; returns a
/// pointer to the result area), with the WIT world embedded the way
/// wit-bindgen does, so the hub's own encoder makes it a component.
fn hostile(process_body: &str, memory_pages: u32) -> Vec<u8> {
    let text = format!(
        r#"(module
            (memory (export "memory") {memory_pages})
            (global $heap (mut i32) (i32.const 65536))
            ;; A bump allocator: enough for the hub to pass arguments in.
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
                (local $p i32)
                (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
                (global.set $heap (i32.add (local.get $p) (local.get 3)))
                (local.get $p))
            ;; init: result<_, string> = ok, in a zeroed result area at 0.
            (func (export "init") (param i32 i32) (result i32) (i32.const 0))
            (func (export "process") (param $ptr i32) (param $len i32) (result i32)
                {process_body})
        )"#
    );
    let mut module = wat::parse_str(&text).unwrap();
    embed_world(&mut module);
    module
}

/// Embeds Cairn's WIT world in a core module, as wit-bindgen does.
fn embed_world(module: &mut Vec<u8>) {
    let mut resolve = wit_parser::Resolve::default();
    let package =
        resolve.push_file(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/wit/cairn.wit")).unwrap();
    let world = resolve.select_world(&[package], Some("plugin")).unwrap();
    wit_component::embed_component_metadata(module, &resolve, world, wit_component::StringEncoding::UTF8).unwrap();
}

/// An instance of a hostile `process` body under `limits`.
fn hostile_instance(runtime: &Runtime, process_body: &str, pages: u32, limits: Limits) -> PluginInstance {
    let plugin = runtime.load(&hostile(process_body, pages)).unwrap();
    plugin.instantiate(&[], limits).unwrap()
}

/// `process` returning `ok([{ topic: none, batch: (ptr 4096, len) }])`:
/// result area at 1024 (tag 0 = ok, list ptr 2048, len 1), the output record
/// at 2048 (option tag 0 = none, batch ptr, batch len).
fn returns_output_of(len: u32) -> String {
    format!(
        "(i32.store (i32.const 1028) (i32.const 2048))
         (i32.store (i32.const 1032) (i32.const 1))
         (i32.store (i32.const 2060) (i32.const 4096))
         (i32.store (i32.const 2064) (i32.const {len}))
         (i32.const 1024)"
    )
}

#[test]
fn an_endless_loop_exhausts_the_budget_and_the_hub_goes_on() {
    let (_dir, runtime) = runtime();
    let limits = Limits { fuel_per_batch: 5_000_000, ..Limits::default() };
    let mut looping = hostile_instance(&runtime, "(loop $forever (br $forever)) (i32.const 0)", 2, limits);
    let input = batch(&[("a", "1")]);
    match looping.process(&input) {
        Err(e @ PluginError::BudgetExhausted { budget: 5_000_000 }) => assert!(e.to_string().contains("5000000")),
        other => panic!("expected BudgetExhausted, got {other:?}"),
    }
    // The instance was discarded; the next call gets a fresh one (and loops again).
    assert!(matches!(looping.process(&input), Err(PluginError::BudgetExhausted { .. })));
    assert_eq!(looping.instantiations(), 2);

    // Other plugins are untouched.
    let plugin = runtime.load(&example("cairn_plugin_threshold")).unwrap();
    let mut good = plugin.instantiate(&params(&[("min", "0")]), limits).unwrap();
    assert_eq!(values(good.process(&input).unwrap().outputs[0].batch.as_bytes()), ["1"]);
}

#[test]
fn the_time_limit_stops_a_call_the_fuel_budget_would_not() {
    let (_dir, runtime) = runtime();
    // Fuel counts instructions, not what they cost (a load that misses the
    // cache costs a hundred hits): the wall-clock limit is the backstop.
    // Here the fuel budget is practically unlimited.
    let limits = Limits { fuel_per_batch: 1 << 60, time_per_batch: Duration::from_millis(200), ..Limits::default() };
    let mut looping = hostile_instance(&runtime, "(loop $forever (br $forever)) (i32.const 0)", 2, limits);
    let started = Instant::now();
    match looping.process(&batch(&[("a", "1")])) {
        Err(e @ PluginError::TimeLimit { limit_ms: 200 }) => assert!(e.to_string().contains("200 ms"), "{e}"),
        other => panic!("expected TimeLimit, got {other:?}"),
    }
    let elapsed = started.elapsed();
    // Stopped at the limit, give or take the 5 ms tick and a busy machine.
    assert!(elapsed >= Duration::from_millis(195) && elapsed < Duration::from_secs(3), "stopped after {elapsed:?}");

    // The clock sleeps after a second without calls; the next call wakes it.
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    assert!(matches!(looping.process(&batch(&[("a", "1")])), Err(PluginError::TimeLimit { .. })));
    assert!(started.elapsed() < Duration::from_secs(3), "stopped after {:?}", started.elapsed());
}

#[test]
fn growing_memory_past_the_cap_is_contained() {
    let (_dir, runtime) = runtime();
    let limits = Limits { memory_bytes: 4 << 20, ..Limits::default() };
    // Grow one page at a time; when refused (-1), trap like Rust's allocator does.
    let body = "(loop $more
                    (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
                unreachable";
    let mut instance = hostile_instance(&runtime, body, 2, limits);
    match instance.process(&batch(&[("a", "1")])) {
        Err(e @ PluginError::MemoryLimit { limit }) => {
            assert_eq!(limit, 4 << 20);
            assert!(e.to_string().contains("4194304"), "{e}");
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
}

#[test]
fn a_trap_is_reported_and_the_instance_replaced() {
    let (_dir, runtime) = runtime();
    let mut instance = hostile_instance(&runtime, "unreachable", 2, Limits::default());
    match instance.process(&batch(&[("a", "1")])) {
        Err(PluginError::Trap { reason }) => assert!(reason.contains("unreachable"), "{reason}"),
        other => panic!("expected Trap, got {other:?}"),
    }
    assert!(matches!(instance.process(&batch(&[("a", "1")])), Err(PluginError::Trap { .. })));
    assert_eq!(instance.instantiations(), 2);
}

#[test]
fn a_huge_output_is_refused() {
    let (_dir, runtime) = runtime();
    let limits = Limits { max_output_bytes: 1 << 20, ..Limits::default() };
    // 64 pages = 4 MiB of memory; claims a 3 MiB output batch.
    let mut instance = hostile_instance(&runtime, &returns_output_of(3 << 20), 64, limits);
    match instance.process(&batch(&[("a", "1")])) {
        Err(PluginError::OutputTooLarge { limit, actual }) => assert_eq!((limit, actual), (1 << 20, 3 << 20)),
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }
}

#[test]
fn an_invalid_output_batch_is_refused() {
    let (_dir, runtime) = runtime();
    // 100 zero bytes: no batch magic.
    let mut instance = hostile_instance(&runtime, &returns_output_of(100), 2, Limits::default());
    match instance.process(&batch(&[("a", "1")])) {
        Err(PluginError::BadOutput { index: 0, detail }) => assert!(!detail.is_empty()),
        other => panic!("expected BadOutput, got {other:?}"),
    }
}

#[test]
fn modules_that_are_not_plugins_are_refused_at_load() {
    let (_dir, runtime) = runtime();
    let not_a_plugin = |bytes: &[u8]| match runtime.load(bytes) {
        Err(PluginError::NotAPlugin { detail }) => detail,
        Err(other) => panic!("expected NotAPlugin, got {other:?}"),
        Ok(_) => panic!("expected NotAPlugin, got a plugin"),
    };
    // Not WebAssembly at all.
    assert!(not_a_plugin(b"#!/bin/sh\necho hi\n").contains("not WebAssembly"));
    // A core module without the world's metadata, exporting something else.
    let bare = wat::parse_str(r#"(module (func (export "run")))"#).unwrap();
    // (The encoder makes it a component of an empty world, whose exports fail the check.)
    let detail = not_a_plugin(&bare);
    assert!(detail.contains("exports"), "{detail}");
    // A core module carrying the world's metadata but lacking `process`.
    let mut partial = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "init") (param i32 i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    embed_world(&mut partial);
    let detail = not_a_plugin(&partial);
    assert!(detail.contains("core module"), "{detail}");
    // A component exporting the wrong function.
    let wrong = wat::parse_str(
        r#"(component
            (core module $m (func (export "go")))
            (core instance $i (instantiate $m))
            (func (export "go") (canon lift (core func $i "go"))))"#,
    )
    .unwrap();
    let detail = not_a_plugin(&wrong);
    assert!(detail.contains("exports"), "{detail}");
    // A component importing what Cairn does not grant (a WASI-like clock).
    let wasi = wat::parse_str(
        r#"(component (import "wasi:clocks/wall-clock@0.2.0" (instance (export "now" (func (result u64))))))"#,
    )
    .unwrap();
    let detail = not_a_plugin(&wasi);
    assert!(detail.contains("imports"), "{detail}");
}
