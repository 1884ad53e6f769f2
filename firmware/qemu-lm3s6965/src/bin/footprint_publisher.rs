//! Footprint probe: the publisher, its framing (serial and TCP, with a key)
//! and the `proto` encoder/decoder, driven over a bare link so the linker
//! keeps all of it; no sensor and no application code. Size minus
//! `footprint-baseline` = what the SDK costs (docs/BENCHMARKS.md).
#![no_std]
#![no_main]

use core::convert::Infallible;
use core::ptr::{read_volatile, write_volatile};

use cairn_firmware::{Config, Credentials, Framing, FullPolicy, Publisher};
use cortex_m_rt::entry;

const DATA: *mut u32 = 0x4000_C000 as *mut u32;
const FLAGS: *const u32 = 0x4000_C018 as *const u32;

struct Link;

impl embedded_io::ErrorType for Link {
    type Error = Infallible;
}
impl embedded_io::Write for Link {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            // SAFETY: memory-mapped UART data register.
            unsafe { write_volatile(DATA, u32::from(b)) };
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}
impl embedded_io::ReadReady for Link {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        // SAFETY: memory-mapped UART flag register.
        Ok(unsafe { read_volatile(FLAGS) } & (1 << 4) == 0)
    }
}
impl embedded_io::Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        // SAFETY: memory-mapped UART data register.
        buf[0] = unsafe { read_volatile(DATA) } as u8;
        Ok(1)
    }
}

#[entry]
fn main() -> ! {
    // The framing is read from the hardware so both stay linked in, and
    // so is authentication (a TCP link with a key).
    // SAFETY: memory-mapped UART flag register.
    let framing = if unsafe { read_volatile(FLAGS) } & 1 == 0 { Framing::Serial } else { Framing::LengthPrefixed };
    let credentials = (framing == Framing::LengthPrefixed).then_some(Credentials { key: "k", secret: "s" });
    let config = Config {
        topic: "t",
        partition: 0,
        key: Some(b"k"),
        framing,
        policy: FullPolicy::DropOldest,
        max_batch_readings: 8,
        credentials,
    };
    let Ok(publisher) = Publisher::<_, 32>::new(Link, config) else {
        loop {
            cortex_m::asm::wfi()
        }
    };
    // In a static, so its RAM shows in .bss (outbox of 32 readings included).
    let Some(publisher) = cortex_m::singleton!(: Publisher<'static, Link, 32> = publisher) else {
        loop {
            cortex_m::asm::wfi()
        }
    };
    let mut n = 0i64;
    loop {
        let _ = publisher.publish(&n.to_le_bytes(), n);
        let _ = publisher.poll();
        n += 1;
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
