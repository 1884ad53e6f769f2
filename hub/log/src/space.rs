//! Room on the disk. redb needs free space to commit (it writes new pages
//! before it frees old ones), and a commit that finds none fails with an
//! I/O error. So appends are refused, with a clear "disk full", before the
//! filesystem is full: while fewer than `min_free_disk_bytes` would be left,
//! or past `max_disk_bytes` of stored records. Offset commits, topic
//! deletes and retention are never refused: they are small, and they are
//! how space comes back. `min_free_disk_bytes = 0` turns the filesystem
//! check off.
//!
//! A full filesystem is not the end: once retention or a deleted topic has
//! freed room inside the log's file (which does not shrink, but reuses its
//! free pages), appends that fit into that room go through again.

use std::path::{Path, PathBuf};

/// Room kept free on the filesystem by default: enough for redb to commit
/// what it must (deletes, offset commits) when appends are refused.
pub const DEFAULT_MIN_FREE_DISK_BYTES: u64 = 32 * 1024 * 1024;

/// Bytes of batches the log must have freed below the level where the disk
/// filled before appends use that room (and per commit, on top of what it
/// writes: redb's copy-on-write pages).
const MARGIN: u64 = 1024 * 1024;

/// Decides whether appends may be written now.
#[derive(Debug)]
pub(crate) struct SpaceGuard {
    dir: PathBuf,
    max_disk_bytes: Option<u64>,
    min_free_bytes: u64,
    /// Stored bytes when the filesystem was found full; room freed below
    /// it is room inside the file.
    full_at: Option<u64>,
}

impl SpaceGuard {
    pub(crate) fn new(log_file: &Path, max_disk_bytes: Option<u64>, min_free_bytes: u64) -> SpaceGuard {
        let dir = log_file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        SpaceGuard { dir, max_disk_bytes, min_free_bytes, full_at: None }
    }

    /// Whether `needed` more bytes of batches may be written while the log
    /// stores `stored`; `Err` says why not.
    pub(crate) fn check(&mut self, stored: u64, needed: u64) -> Result<(), String> {
        if let Some(max) = self.max_disk_bytes {
            if stored + needed > max {
                return Err(format!("the log stores {stored} bytes of records and max_disk_bytes is {max}"));
            }
        }
        let Some(DiskSpace { free_bytes: free, .. }) = disk_space(&self.dir) else { return Ok(()) };
        self.check_free(free, stored, needed)
    }

    fn check_free(&mut self, free: u64, stored: u64, needed: u64) -> Result<(), String> {
        // 0 turns the check off: redb's own I/O error then says the disk is
        // full, and the writer reopens the database after it.
        if self.min_free_bytes == 0 || free >= self.min_free_bytes.saturating_add(needed.saturating_mul(2)) {
            self.full_at = None;
            return Ok(());
        }
        // The filesystem is (nearly) full: only room freed inside the file
        // may be used.
        let full_at = *self.full_at.get_or_insert(stored);
        if stored + needed.saturating_mul(2) + MARGIN <= full_at {
            return Ok(());
        }
        Err(format!(
            "{free} bytes free on the filesystem of {} and min_free_disk_bytes is {}",
            self.dir.display(),
            self.min_free_bytes
        ))
    }

    /// A commit failed for lack of space: the filesystem is full now.
    pub(crate) fn filled(&mut self, stored: u64) {
        self.full_at.get_or_insert(stored);
    }
}

/// Room on a filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged writer may still use.
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// Free and total space of the filesystem holding `dir` (`statvfs`);
/// `None` where it cannot be read. The guard uses it, and so does the
/// hub's `/metrics`.
pub fn disk_space(dir: &Path) -> Option<DiskSpace> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid C string and `st` a writable statvfs.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return None;
        }
        let block = st.f_frsize as u64;
        Some(DiskSpace { free_bytes: st.f_bavail as u64 * block, total_bytes: st.f_blocks as u64 * block })
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn appends_stop_before_the_disk_is_full_and_resume_once_room_is_freed_inside_the_file() {
        let mut g = SpaceGuard::new(Path::new("/x/cairn.redb"), None, 32 * MIB);
        assert!(g.check_free(100 * MIB, 10 * MIB, MIB).is_ok());
        // 33 MiB free, 1 MiB wanted twice over: below the floor.
        let err = g.check_free(33 * MIB, 40 * MIB, MIB).unwrap_err();
        assert!(err.contains("min_free_disk_bytes is 33554432"), "{err}");
        // Still full; a little freed is not enough.
        assert!(g.check_free(33 * MIB, 39 * MIB, MIB).is_err());
        // A topic deleted: 20 MiB freed inside the file, reused.
        assert!(g.check_free(33 * MIB, 20 * MIB, MIB).is_ok());
        // Until the log is back where the disk filled.
        assert!(g.check_free(33 * MIB, 38 * MIB, MIB).is_err());
        // Room on the filesystem again (another file removed): all clear.
        assert!(g.check_free(200 * MIB, 39 * MIB, MIB).is_ok());
        assert!(g.full_at.is_none());
    }

    #[test]
    fn max_disk_bytes_bounds_the_stored_records() {
        let mut g = SpaceGuard::new(Path::new("cairn.redb"), Some(10 * MIB), 0);
        assert!(g.check(9 * MIB, MIB).is_ok());
        let err = g.check(9 * MIB, MIB + 1).unwrap_err();
        assert!(err.contains("max_disk_bytes is 10485760"), "{err}");
        assert_eq!(g.dir, Path::new("."));
        let d = disk_space(Path::new(".")).expect("statvfs works on the current directory");
        assert!(d.total_bytes > 0 && d.free_bytes <= d.total_bytes, "{d:?}");
        // 0: no filesystem check.
        let mut off = SpaceGuard::new(Path::new("cairn.redb"), None, 0);
        assert!(off.check_free(0, 10 * MIB, MIB).is_ok());
    }
}
