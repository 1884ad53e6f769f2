//! Footprint baseline: the skeleton of `footprint-publisher` (reset handler,
//! a link, a loop) without the publisher. Its size is subtracted.
#![no_std]
#![no_main]

use core::ptr::{read_volatile, write_volatile};
use cortex_m_rt::entry;

#[entry]
fn main() -> ! {
    let data = 0x4000_C000 as *mut u32;
    loop {
        // SAFETY: memory-mapped UART data register.
        let byte = unsafe { read_volatile(data) };
        unsafe { write_volatile(data, byte) };
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
