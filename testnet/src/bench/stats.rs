//! Percentiles and the per-process readings (`/proc`) the bench reports.

use std::path::Path;

/// Nearest-rank percentile `p` (0–100) of `samples`; `None` when empty.
pub(crate) fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The largest sample; `None` when empty.
pub(crate) fn max(samples: &[f64]) -> Option<f64> {
    samples.iter().copied().max_by(f64::total_cmp)
}

/// Linux reports `utime`/`stime` in `USER_HZ` ticks, which is 100 on every
/// architecture Agora runs on.
const TICKS_PER_SEC: f64 = 100.0;

/// Resident memory and CPU time of one process, read from `/proc`.
///
/// Resident set size counts every page mapped in, including the program's
/// code, which all nodes of a testnet share once in physical memory; the
/// proportional set (PSS) divides shared pages among their users, so the
/// PSS of all nodes adds up to what they really take; private memory is
/// what one more node would add.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcReading {
    /// Resident set, bytes.
    pub(crate) rss_bytes: u64,
    /// Proportional set, bytes (`None` without `smaps_rollup`).
    pub(crate) pss_bytes: Option<u64>,
    /// Private (clean + dirty) resident bytes.
    pub(crate) private_bytes: Option<u64>,
    /// User + system CPU time so far, seconds.
    pub(crate) cpu_secs: f64,
}

/// Reads `pid`'s resident memory and CPU time; `None` once it is gone.
pub(crate) fn read_proc(pid: u32) -> Option<ProcReading> {
    let dir = Path::new("/proc").join(pid.to_string());
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let rollup = std::fs::read_to_string(dir.join("smaps_rollup")).unwrap_or_default();
    let field = |name: &str| kb_field(&rollup, name);
    Some(ProcReading {
        pss_bytes: field("Pss:"),
        private_bytes: field("Private_Clean:")
            .and_then(|clean| Some(clean + field("Private_Dirty:")?)),
        rss_bytes: parse_vm_rss(&status)?,
        cpu_secs: parse_cpu_ticks(&stat)? as f64 / TICKS_PER_SEC,
    })
}

/// `VmRSS:   12345 kB` from `/proc/PID/status`, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    kb_field(status, "VmRSS:")
}

/// A `NAME   12345 kB` line's value, in bytes.
fn kb_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `utime + stime` (fields 14 and 15) from `/proc/PID/stat`. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted
/// from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')': field 3 (state) is index 0, so utime (14) is index 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0, 1.0, 3.0], 50.0), Some(3.0));
        assert_eq!(percentile(&[4.0], 99.0), Some(4.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(max(&[2.0, 9.5, 1.0]), Some(9.5));
        assert_eq!(max(&[]), None);
    }

    #[test]
    fn proc_files_are_parsed_even_with_odd_command_names() {
        let status = "Name:\tagorad\nVmPeak:\t  99999 kB\nVmRSS:\t   12288 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(12288 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        let rollup = "Rss:  16384 kB\nPss:   6007 kB\nPss_Anon:  3764 kB\nPrivate_Clean:  4 kB\nPrivate_Dirty:  3764 kB\n";
        assert_eq!(kb_field(rollup, "Pss:"), Some(6007 * 1024));
        assert_eq!(kb_field(rollup, "Private_Dirty:"), Some(3764 * 1024));
        let stat = "4242 (a) b)) S 1 4242 4242 0 -1 4194560 900 0 0 0 731 269 0 0 20 0 5 0 100 0";
        assert_eq!(parse_cpu_ticks(stat), Some(1000));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let reading = read_proc(std::process::id()).expect("/proc/self");
        assert!(reading.rss_bytes > 0);
    }
}
