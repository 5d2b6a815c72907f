//! The built binary as a child process: its log lines captured, signals delivered, exit awaited.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub struct ServiceProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Runs `binary args...` with a clean `AUTHSESSION_*` environment plus `env`.
    pub fn spawn(binary: &Path, args: &[&str], env: &[(String, String)]) -> Self {
        Self::spawn_keeping(binary, args, env, usize::MAX)
    }

    /// [`ServiceProcess::spawn`], keeping only the first `keep` lines: a service under load logs
    /// a line or more per request, which are read (as a log shipper would) and dropped.
    pub fn spawn_keeping(
        binary: &Path,
        args: &[&str],
        env: &[(String, String)],
        keep: usize,
    ) -> Self {
        let mut command = Command::new(binary);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars() {
            if name.starts_with("AUTHSESSION_") || name == "RUST_LOG" || name.starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn().expect("spawn the authsession binary");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let lines = lines.clone();
            let echo = std::env::var_os("TEST_LOG").is_some();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if echo {
                        eprintln!("[authsession] {line}");
                    }
                    let mut lines = lines.lock().unwrap();
                    if lines.len() < keep {
                        lines.push(line);
                    }
                }
            });
        }
        Self { child, lines }
    }

    /// Runs a command of the binary to completion: (exit code, every output line joined).
    /// Panics if it is still running after `timeout`.
    pub async fn run(
        binary: &Path,
        args: &[&str],
        env: &[(String, String)],
        timeout: Duration,
    ) -> (Option<i32>, String) {
        let mut process = Self::spawn(binary, args, env);
        let status = process
            .wait_exit(timeout)
            .await
            .unwrap_or_else(|| panic!("`{args:?}` still running after {timeout:?}"));
        (status.code(), process.lines().join("\n"))
    }

    /// Every line printed so far, stdout and stderr interleaved.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a line contains `needle`.
    pub async fn wait_for_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return Some(line.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address from the JSON `<name> HTTP listener started` line (`public` or `internal`).
    /// The process's resident memory, from `/proc/<pid>/status` (`VmRSS`), in bytes.
    pub fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the process's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .expect("a VmRSS line")
    }

    pub async fn listener_addr(&self, name: &str) -> std::net::SocketAddr {
        let line = self
            .wait_for_line(
                &format!("{name} HTTP listener started"),
                Duration::from_secs(15),
            )
            .await
            .unwrap_or_else(|| {
                panic!("no `{name} HTTP listener started` line: {:?}", self.lines())
            });
        let log: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        log["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("an address field")
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds the child has used so far, user and system (`/proc/<pid>/stat`, in clock
    /// ticks of 10 ms).
    pub fn cpu_seconds(&self) -> f64 {
        let (user, system) = self.cpu_seconds_split();
        user + system
    }

    /// [`ServiceProcess::cpu_seconds`] as (user, system): the kernel's share is the system calls
    /// (sockets, the log pipe) and the scheduling.
    pub fn cpu_seconds_split(&self) -> (f64, f64) {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let mut ticks = rest
            .split_whitespace()
            .skip(11)
            .map(|t| t.parse::<u64>().unwrap_or(0) as f64 / 100.0);
        (ticks.next().unwrap_or(0.0), ticks.next().unwrap_or(0.0))
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("deliver signal");
    }

    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Give the reader threads a moment to drain the pipes.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
