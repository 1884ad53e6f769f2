//! Handing freed memory back to the operating system.
//!
//! glibc's allocator keeps memory that was freed in its arenas for reuse,
//! so after 10,000 MQTT clients have come and gone the hub's RSS would stay
//! where it peaked. `malloc_trim` returns the free pages of every arena.
//! Other allocators and platforms return memory on their own; there this
//! does nothing.

/// Returns free heap memory to the OS (glibc only). Takes a few
/// milliseconds on a large heap: call it off the async threads.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has
    // no preconditions and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
