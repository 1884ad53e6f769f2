//! Handing freed memory back to the operating system.
//!
//! glibc's allocator keeps memory that was freed in its arenas for reuse,
//! so after 10,000 MQTT clients have come and gone the hub's RSS would stay
//! where it peaked. `malloc_trim` returns the free pages of every arena.
//! Fewer arenas (one per thread by default, up to 8 per core) also leave
//! fewer half-used pages behind. Other allocators and platforms return
//! memory on their own; there this does nothing.

/// Caps glibc's malloc arenas at two (`MALLOC_ARENA_MAX=2`), unless the
/// environment already set a cap. Call before the runtime starts threads.
/// Throughput did not change with the cap (docs/BENCHMARKS.md); what
/// churning clients leave behind after a trim became steadier.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX is
        // valid at any time and affects arenas created afterwards.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

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
