//! Example firmware for QEMU's lm3s6965evb: reads a TMP102 through the real
//! driver, `cairn-tmp102` (on a simulated I²C bus, see `sim_bus`), and
//! publishes each reading to the hub through UART0 with `cairn-firmware`'s
//! publisher, COBS-framed.
//!
//! Run it against a hub's serial-over-TCP listener:
//! ```text
//! cairn serve --serial-tcp-addr 127.0.0.1:7879 &
//! cairn topic create temperature
//! qemu-system-arm -machine lm3s6965evb -nographic -monitor none \
//!   -semihosting-config enable=on,target=native \
//!   -serial tcp:127.0.0.1:7879 -kernel target/thumbv7m-none-eabi/release/qemu-temperature
//! ```
//! It publishes `READINGS` readings, waits until the hub has acknowledged
//! all of them, prints the publisher's counters and ends QEMU.
#![no_std]
#![no_main]

mod sim_bus;
mod uart;

use cairn_firmware::{Config, Framing, FullPolicy, Publisher};
use cairn_tmp102::{Address, Tmp102};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};

/// Readings to publish before exiting.
const READINGS: u32 = 200;

/// Readings the outbox holds until acknowledged.
const OUTBOX: usize = 32;

#[entry]
fn main() -> ! {
    let Some(uart) = uart::Uart0::take() else { fail("UART0 already taken") };
    let mut sensor = Tmp102::new(sim_bus::SimulatedTmp102Bus::new(), Address::Gnd);
    let config = Config {
        topic: "temperature",
        partition: 0,
        key: Some(b"lm3s6965-1"),
        framing: Framing::Serial,
        policy: FullPolicy::RefuseNew,
        max_batch_readings: 8,
        credentials: None,
    };
    let Ok(mut publisher) = Publisher::<_, OUTBOX>::new(uart, config) else { fail("bad publisher config") };

    let mut n = 0;
    while n < READINGS {
        // Read the sensor only when the outbox has room; meanwhile the link
        // drains it.
        if publisher.pending() == OUTBOX {
            if publisher.poll().is_err() {
                fail("link error");
            }
            continue;
        }
        let temperature = match sensor.read_temperature() {
            Ok(t) => t,
            Err(_) => fail("sensor read failed"),
        };
        // Value: milli-degrees Celsius as text; timestamp: the reading's
        // number in seconds (this board has no real-time clock).
        let mut text = [0u8; 12];
        let value = format_i32(temperature.milli_celsius(), &mut text);
        if publisher.publish(value, i64::from(n) * 1000).is_err() {
            fail("outbox refused a reading although it had room");
        }
        n += 1;
        if publisher.poll().is_err() {
            fail("link error");
        }
    }
    if publisher.flush().is_err() {
        fail("link error while flushing");
    }
    let c = publisher.counters();
    hprintln!(
        "published={} acked={} duplicates={} refused={} rejected={} skipped_frames={}",
        c.published,
        c.acked,
        c.duplicates,
        c.refused,
        c.rejected,
        c.skipped_frames
    );
    debug::exit(if c.acked == READINGS { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    loop {
        cortex_m::asm::wfi();
    }
}

/// Writes `v` in decimal into `buf`; returns the digits.
fn format_i32(v: i32, buf: &mut [u8; 12]) -> &[u8] {
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

fn fail(why: &str) -> ! {
    hprintln!("error: {}", why);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    fail("panic")
}
