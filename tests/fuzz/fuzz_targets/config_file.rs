//! The config file (`cairn serve --config`) and an uplink's TOML (`cairn
//! uplink add`), read and checked as the hub does.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

include!("../checks/config_file.rs");
