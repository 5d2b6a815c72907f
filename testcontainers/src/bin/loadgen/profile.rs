//! `--perf-dir`: the service profiled while scenario 0's `wrk` runs load it (profile first, as
//! pictures). The service is a process of its own, so the samples are all the service's.

use std::time::Duration;

/// Where `--perf-dir` puts the profiles of the `wrk` runs, when set.
pub static PERF_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// `perf record` (DWARF call graphs, 499 Hz) and `perf stat` of the system calls of a process
/// (the service of scenario 0, the gateway of scenario 11: the load comes from outside both)
/// while `what` runs, into `PERF_DIR/<route>.*`; stopped (SIGINT, so they write their files) when
/// dropped.
pub struct Profiled(Vec<std::process::Child>);

impl Profiled {
    pub fn start_process(what: &str, pid: u32) -> Self {
        let Some(dir) = PERF_DIR.get() else {
            return Self(Vec::new());
        };
        let route = what.split(',').next().unwrap_or(what).trim();
        let pid = pid.to_string();
        let data = dir.join(format!("{route}.perf.data"));
        let stat = dir.join(format!("{route}.syscalls.txt"));
        let record = std::process::Command::new("perf")
            // `--no-inherit`: the process's threads only.
            .args([
                "record",
                "--no-inherit",
                "-F",
                "499",
                "--call-graph",
                "dwarf,16384",
                "-p",
                &pid,
                "-o",
            ])
            .arg(&data)
            .stderr(std::process::Stdio::null())
            .spawn();
        let events = [
            "raw_syscalls:sys_enter",
            "syscalls:sys_enter_read",
            "syscalls:sys_enter_recvfrom",
            "syscalls:sys_enter_write",
            "syscalls:sys_enter_writev",
            "syscalls:sys_enter_sendto",
            "syscalls:sys_enter_epoll_wait",
            "syscalls:sys_enter_futex",
        ]
        .join(",");
        let stat = std::process::Command::new("perf")
            .args(["stat", "--no-inherit", "-e", &events, "-p", &pid, "-o"])
            .arg(&stat)
            .spawn();
        // Both attach before the load starts.
        std::thread::sleep(Duration::from_millis(500));
        Self(record.into_iter().chain(stat).collect())
    }
}

impl Drop for Profiled {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let _ = child.wait();
        }
    }
}
