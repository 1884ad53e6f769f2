//! The fuzz targets' checks (tests/fuzz/checks/) on stable, on every test
//! run: each seed of the checked-in corpora and each input that once crashed
//! a target (tests/fuzz/regressions/) must go through without a panic. The
//! fuzzing itself is `scripts/fuzz.sh` (nightly, libFuzzer).

use std::path::Path;

mod native_request {
    include!("../fuzz/checks/native_request.rs");
}
mod record_batch {
    include!("../fuzz/checks/record_batch.rs");
}
mod record_batch_resealed {
    include!("../fuzz/checks/record_batch_resealed.rs");
}
mod serial_frames {
    include!("../fuzz/checks/serial_frames.rs");
}
mod device_response {
    include!("../fuzz/checks/device_response.rs");
}
mod mqtt_packets {
    include!("../fuzz/checks/mqtt_packets.rs");
}
mod plugin_output {
    include!("../fuzz/checks/plugin_output.rs");
}
mod config_file {
    include!("../fuzz/checks/config_file.rs");
}

/// A target's name and its check.
type Target = (&'static str, fn(&[u8]));

#[test]
fn every_seed_and_every_input_that_once_crashed_goes_through_its_decoder() {
    let targets: [Target; 8] = [
        ("native_request", native_request::run),
        ("record_batch", record_batch::run),
        ("record_batch_resealed", record_batch_resealed::run),
        ("serial_frames", serial_frames::run),
        ("device_response", device_response::run),
        ("mqtt_packets", mqtt_packets::run),
        ("plugin_output", plugin_output::run),
        ("config_file", config_file::run),
    ];
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, run) in targets {
        let mut seeds = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else { continue };
            for file in dir {
                let path = file.unwrap().path();
                let input = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| run(&input));
                assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
                seeds += usize::from(kind == "corpus");
            }
        }
        assert!(seeds >= 2, "{target} has a seed corpus in tests/fuzz/corpus/{target}");
    }
}
