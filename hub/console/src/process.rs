//! The process and its disk, as Prometheus' process collector reports them:
//! memory, CPU time and open files from `/proc/self` (Linux; elsewhere they
//! are left out). Free disk space is the log's own reading
//! (`cairn_log::disk_space`), which its guard against a full disk uses.

/// The process now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ProcessStats {
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
    /// When it started, seconds since the epoch.
    pub start_time_seconds: f64,
}

/// Reads `/proc/self`; `None` where there is no such thing.
pub(crate) fn process() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields 14, 15 (utime, stime), 22 (starttime), 23 (vsize), 24 (rss)
    // of proc(5), here from field 3 on.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let ticks = clock_ticks()? as f64;
    let boot = boot_time()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    Some(ProcessStats {
        resident_bytes: field(24)? * page_size()?,
        virtual_bytes: field(23)?,
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        open_fds,
        max_fds: max_fds().unwrap_or(0),
        start_time_seconds: boot as f64 + field(22)? as f64 / ticks,
    })
}

fn clock_ticks() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (n > 0).then_some(n as u64)
}

fn page_size() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (n > 0).then_some(n as u64)
}

/// Seconds since the epoch when the machine booted (`btime` in /proc/stat).
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// The soft limit on open files (`Max open files` in /proc/self/limits).
fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_its_disk_are_read() {
        let p = process().expect("/proc/self is readable on Linux");
        assert!(p.resident_bytes > 1024 * 1024, "{p:?}");
        assert!(p.open_fds >= 3 && p.max_fds >= p.open_fds, "{p:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 3600.0, "{p:?}");
    }
}
