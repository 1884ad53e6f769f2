//! UART0 of the LM3S6965 (a PL011) as an `embedded-io` link: polled, no
//! interrupts. QEMU connects it to a TCP socket (`-serial tcp:HOST:PORT`).

use core::convert::Infallible;
use core::ptr::{read_volatile, write_volatile};

const UART0_DR: *mut u32 = 0x4000_C000 as *mut u32;
const UART0_FR: *const u32 = 0x4000_C018 as *const u32;
/// Flag register: receive FIFO empty.
const FR_RXFE: u32 = 1 << 4;
/// Flag register: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;

/// The board's UART0. Only one exists, so `take` hands it out once.
pub struct Uart0 {
    _private: (),
}

static mut TAKEN: bool = false;

impl Uart0 {
    pub fn take() -> Option<Uart0> {
        // Single core, called before anything else runs.
        cortex_m::interrupt::free(|_| unsafe {
            if TAKEN {
                None
            } else {
                TAKEN = true;
                Some(Uart0 { _private: () })
            }
        })
    }

    fn flags(&self) -> u32 {
        // SAFETY: a read of the memory-mapped UART0 flag register.
        unsafe { read_volatile(UART0_FR) }
    }
}

impl embedded_io::ErrorType for Uart0 {
    type Error = Infallible;
}

impl embedded_io::Write for Uart0 {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &byte in buf {
            while self.flags() & FR_TXFF != 0 {}
            // SAFETY: a write of the memory-mapped UART0 data register.
            unsafe { write_volatile(UART0_DR, u32::from(byte)) };
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl embedded_io::ReadReady for Uart0 {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.flags() & FR_RXFE == 0)
    }
}

impl embedded_io::Read for Uart0 {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.flags() & FR_RXFE != 0 {}
        // SAFETY: a read of the memory-mapped UART0 data register (the low
        // byte is the received character; the rest are error flags).
        buf[0] = unsafe { read_volatile(UART0_DR) } as u8;
        Ok(1)
    }
}
