//! Reading what Linux knows about a process and the machine, from `/proc`.
//!
//! CPU time is `utime + stime` of `/proc/<pid>/stat` (fields 14 and 15), which covers every
//! thread of the process, in clock ticks of `CLK_TCK` (asked of `getconf CLK_TCK` once; 100,
//! the value on every mainstream Linux, when that fails). Memory is `VmHWM` (peak resident set)
//! and `VmRSS` of `/proc/<pid>/status`, in KiB. A process that has exited but was not reaped yet
//! (a zombie, state `Z`) still shows its final CPU times, which is how the benchmark reads a
//! child's total after SIGTERM; its memory lines are gone by then.
//!
//! Parsing is kept apart from reading so that it is unit-tested on fixed text.

use std::process::Command;

/// The fields of `/proc/<pid>/stat` the benchmark uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatLine {
    /// Process state: `R`, `S`, `D`, `Z` (exited, not reaped) ...
    pub state: char,
    /// User plus system CPU time, clock ticks.
    pub cpu_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may contain
/// spaces and parentheses itself, so fields are counted from the *last* `)`.
pub fn parse_stat(text: &str) -> Option<StatLine> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state); field n is fields[n - 3].
    let state = fields.first()?.chars().next()?;
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(StatLine {
        state,
        cpu_ticks: utime + stime,
    })
}

/// The value in KiB of a `Key:   1234 kB` line of `/proc/<pid>/status` or `/proc/meminfo`.
pub fn parse_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Reads and parses `/proc/<pid>/stat`; `None` when the process is gone (reaped).
pub fn read_stat(pid: u32) -> Option<StatLine> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Memory of a live process: (peak RSS `VmHWM`, current RSS `VmRSS`) in KiB.
pub fn read_memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((parse_kb(&status, "VmHWM")?, parse_kb(&status, "VmRSS")?))
}

/// Busy CPU time of the whole machine, clock ticks: the first (`cpu`) line of `/proc/stat`,
/// user + nice + system + irq + softirq + steal (idle and iowait left out).
pub fn parse_machine_busy(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    (fields.len() >= 4).then_some(busy)
}

/// [`parse_machine_busy`] of the live `/proc/stat`.
pub fn read_machine_busy() -> Option<u64> {
    parse_machine_busy(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Memory in use on the machine, KiB: `MemTotal − MemAvailable` of `/proc/meminfo`.
pub fn read_machine_used_kb() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = parse_kb(&meminfo, "MemTotal")?;
    Some(total.saturating_sub(parse_kb(&meminfo, "MemAvailable")?))
}

/// Clock ticks per second of `/proc` CPU times: `getconf CLK_TCK`, or 100 if that fails.
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// What the machine is, for the results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// CPUs this process may use.
    pub nproc: usize,
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// `MemTotal` of `/proc/meminfo`, KiB.
    pub mem_total_kb: Option<u64>,
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: Option<String>,
    /// Clock ticks per second used to convert CPU times.
    pub clk_tck: u64,
}

impl Machine {
    /// Reads the machine's description.
    pub fn read(clk_tck: u64) -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: read("/proc/cpuinfo").and_then(|text| parse_cpu_model(&text)),
            mem_total_kb: read("/proc/meminfo").and_then(|text| parse_kb(&text, "MemTotal")),
            kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()),
            clk_tck,
        }
    }
}

/// The first `model name : ...` of `/proc/cpuinfo`.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (tokio-rt (worker) 1) S 1 4242 4242 0 -1 4194560 8000 0 0 0 \
                        1234 567 0 0 20 0 9 0 123456 987654321 12345 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let stat = parse_stat(STAT).expect("parses");
        assert_eq!(
            stat,
            StatLine {
                state: 'S',
                cpu_ticks: 1234 + 567
            }
        );
        let zombie = STAT.replace(") S ", ") Z ");
        assert_eq!(parse_stat(&zombie).map(|s| s.state), Some('Z'));
    }

    #[test]
    fn truncated_or_garbled_stat_is_none() {
        assert_eq!(parse_stat("12 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis at all"), None);
        assert_eq!(parse_stat(&STAT.replace("1234", "x")), None);
    }

    #[test]
    fn kb_lines_are_found_by_exact_key() {
        let status =
            "Name:\tsender\nVmPeak:\t  900000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   70000 kB\n";
        assert_eq!(parse_kb(status, "VmHWM"), Some(81_234));
        assert_eq!(parse_kb(status, "VmRSS"), Some(70_000));
        assert_eq!(parse_kb(status, "VmH"), None);
        assert_eq!(
            parse_kb("MemTotal:       24562280 kB\n", "MemTotal"),
            Some(24_562_280)
        );
    }

    #[test]
    fn machine_busy_time_leaves_idle_and_iowait_out() {
        let stat = "cpu  100 5 50 9000 40 3 2 1 0 0\ncpu0 50 2 25 4500 20 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(100 + 5 + 50 + 3 + 2 + 1));
        assert_eq!(parse_machine_busy("cpu0 1 2 3 4\n"), None);
        assert!(read_machine_busy().is_some());
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n\n\
                       processor\t: 1\nmodel name\t: other\n";
        assert_eq!(parse_cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(parse_cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let pid = std::process::id();
        let stat = read_stat(pid).expect("own stat");
        assert_ne!(stat.state, 'Z');
        let (hwm, rss) = read_memory(pid).expect("own status");
        assert!(hwm >= rss && rss > 0, "hwm {hwm} rss {rss}");
        assert!(clock_ticks_per_second() > 0);
    }
}
