//! What `/proc` says about a process tree: its children, its memory (`smaps_rollup`) and the
//! CPU time and timeslices of all its threads (`schedstat`). Linux only, as the product is.

use std::fs;
use std::io;

/// The direct children of `pid`, from every thread's `children` list.
///
/// # Errors
/// When `/proc/PID/task` cannot be read (the process is gone).
pub fn children(pid: u32) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("children");
        // A thread that ended between the listing and the read has no children to report.
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// One process's memory, in KiB, from `/proc/PID/smaps_rollup`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Proportional set size: private pages plus this process's share of shared ones.
    pub pss: u64,
    /// The anonymous part of `pss` (heap, stacks, relocated data): memory no file backs.
    pub pss_anon: u64,
    /// Pages mapped by this process only, clean and dirty: what one more such process adds.
    pub private: u64,
    /// Resident set size, shared pages counted in full.
    pub rss: u64,
}

impl Memory {
    /// Reads `/proc/PID/smaps_rollup`.
    ///
    /// # Errors
    /// When the file cannot be read (the process is gone) or lacks the `Pss` line.
    pub fn of(pid: u32) -> io::Result<Memory> {
        Memory::parse(&fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?)
    }

    /// Parses the text of an `smaps_rollup` file.
    ///
    /// # Errors
    /// When the `Pss` line is missing.
    pub fn parse(text: &str) -> io::Result<Memory> {
        let mut memory = Memory::default();
        let mut has_pss = false;
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let Some(kib) = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            match key {
                "Pss" => {
                    memory.pss = kib;
                    has_pss = true;
                }
                "Pss_Anon" => memory.pss_anon = kib,
                "Private_Clean" | "Private_Dirty" => memory.private += kib,
                "Rss" => memory.rss = kib,
                _ => {}
            }
        }
        if has_pss {
            Ok(memory)
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "smaps_rollup has no Pss line",
            ))
        }
    }
}

/// CPU use summed over a process's threads, from `/proc/PID/task/*/schedstat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Nanoseconds spent running on a CPU.
    pub run_ns: u64,
    /// Timeslices run: one per wakeup of an otherwise idle thread.
    pub timeslices: u64,
}

impl CpuTime {
    /// Sums every thread's `schedstat` of `pid`. Threads that have already exited are not
    /// counted, so a delta over a window misses threads that end inside it.
    ///
    /// # Errors
    /// When `/proc/PID/task` cannot be read (the process is gone).
    pub fn of(pid: u32) -> io::Result<CpuTime> {
        let mut total = CpuTime::default();
        for task in fs::read_dir(format!("/proc/{pid}/task"))? {
            let Ok(text) = fs::read_to_string(task?.path().join("schedstat")) else {
                continue;
            };
            total = total + CpuTime::parse(&text);
        }
        Ok(total)
    }

    /// Parses one `schedstat` line: run time, wait time, timeslices.
    pub fn parse(text: &str) -> CpuTime {
        let mut fields = text
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0));
        let run_ns = fields.next().unwrap_or(0);
        let _wait_ns = fields.next();
        CpuTime {
            run_ns,
            timeslices: fields.next().unwrap_or(0),
        }
    }

    /// What was used between `earlier` and `self`, saturating at zero.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            run_ns: self.run_ns.saturating_sub(earlier.run_ns),
            timeslices: self.timeslices.saturating_sub(earlier.timeslices),
        }
    }
}

impl std::ops::Add for CpuTime {
    type Output = CpuTime;

    fn add(self, other: CpuTime) -> CpuTime {
        CpuTime {
            run_ns: self.run_ns + other.run_ns,
            timeslices: self.timeslices + other.timeslices,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLUP: &str = "\
55d1c0a00000-7ffd2b5f2000 ---p 00000000 00:00 0                          [rollup]
Rss:                2912 kB
Pss:                1093 kB
Pss_Dirty:           748 kB
Pss_Anon:            648 kB
Pss_File:            445 kB
Pss_Shmem:             0 kB
Shared_Clean:       2040 kB
Shared_Dirty:          0 kB
Private_Clean:       124 kB
Private_Dirty:       748 kB
Referenced:         2912 kB
Anonymous:           648 kB
";

    #[test]
    fn rollup_fields_are_read() {
        let m = Memory::parse(ROLLUP).expect("parse");
        assert_eq!(
            m,
            Memory {
                pss: 1093,
                pss_anon: 648,
                private: 872,
                rss: 2912
            }
        );
    }

    #[test]
    fn rollup_without_pss_is_an_error() {
        assert!(Memory::parse("Rss: 10 kB\n").is_err());
    }

    #[test]
    fn schedstat_and_deltas() {
        let a = CpuTime::parse("1000 50 3\n");
        let b = CpuTime::parse("4500 70 10\n");
        assert_eq!(
            b.since(a),
            CpuTime {
                run_ns: 3500,
                timeslices: 7
            }
        );
        assert_eq!(a.since(b), CpuTime::default());
        assert_eq!((a + b).run_ns, 5500);
    }

    #[test]
    fn this_process_is_readable() {
        let me = std::process::id();
        let m = Memory::of(me).expect("own smaps_rollup");
        assert!(m.pss > 0 && m.rss >= m.pss, "{m:?}");
        assert!(CpuTime::of(me).expect("own schedstat").run_ns > 0);
        assert!(children(me).is_ok());
    }
}
