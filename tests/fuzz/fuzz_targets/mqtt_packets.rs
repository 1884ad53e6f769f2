//! What an MQTT client sends: packets of both protocol versions through the
//! hub's codec (`cairn_proto::mqtt`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

include!("../checks/mqtt_packets.rs");
