//! What a WebAssembly plugin hands back: an output batch and its topic, as
//! the hub checks them before storing.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

include!("../checks/plugin_output.rs");
