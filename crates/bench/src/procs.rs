//! The processes the benchmark starts: spawning, measuring and stopping them.
//!
//! Each child is a [`Proc`]. Sampling reads its `/proc` entries (see [`crate::procstat`]) and
//! keeps the highest peak RSS seen. Stopping sends SIGTERM with the `kill` command (the workspace
//! forbids `unsafe`, so no `libc::kill`), then polls until the child is a zombie: at that moment
//! `/proc/<pid>/stat` still holds its final CPU time, which is read before the child is reaped
//! for its exit status. A child not gone within the grace period gets SIGKILL.
//!
//! A [`Proc`] dropped while still running (an error path, Ctrl-C) is sent SIGTERM, so the
//! benchmark never leaves daemons behind.

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::procstat::{read_memory, read_stat};

/// A started child process and what was measured of it.
#[derive(Debug)]
pub struct Proc {
    /// Short name for reports (`sender-1`).
    pub name: String,
    child: Child,
    pid: u32,
    /// Highest `VmHWM` seen, KiB.
    peak_rss_kb: u64,
    /// `VmRSS` at the last sample, KiB.
    rss_kb: u64,
    /// CPU ticks at the last sample (the final ones once exited).
    cpu_ticks: u64,
    /// Set once the child was reaped.
    status: Option<ExitStatus>,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Exit {
    /// Exit code, when it exited by itself.
    pub code: Option<i32>,
    /// Signal that ended it, when one did.
    pub signal: Option<i32>,
}

impl Exit {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit {code}"),
            (None, Some(signal)) => write!(f, "signal {signal}"),
            (None, None) => f.write_str("unknown"),
        }
    }
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Self {
        Exit {
            code: status.code(),
            signal: status.signal(),
        }
    }
}

impl Proc {
    /// Starts `command` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Proc> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().context("duplicating a log handle")?)
            .stderr(file);
        Self::spawn_configured(name, command)
    }

    /// Starts `command` with the stdio it was given.
    pub fn spawn_configured(name: &str, mut command: Command) -> anyhow::Result<Proc> {
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({program})"))?;
        let pid = child.id();
        Ok(Proc {
            name: name.to_owned(),
            child,
            pid,
            peak_rss_kb: 0,
            rss_kb: 0,
            cpu_ticks: 0,
            status: None,
        })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Highest peak RSS seen so far, KiB.
    pub fn peak_rss_kb(&self) -> u64 {
        self.peak_rss_kb
    }

    /// Resident set at the last sample, KiB (0 once exited).
    pub fn rss_kb(&self) -> u64 {
        self.rss_kb
    }

    /// Reads CPU time (ticks) and memory now; after exit, the final CPU time.
    pub fn sample(&mut self) -> u64 {
        if self.status.is_none() {
            if let Some(stat) = read_stat(self.pid) {
                self.cpu_ticks = stat.cpu_ticks;
            }
            match read_memory(self.pid) {
                Some((hwm, rss)) => {
                    self.peak_rss_kb = self.peak_rss_kb.max(hwm);
                    self.rss_kb = rss;
                }
                None => self.rss_kb = 0,
            }
        }
        self.cpu_ticks
    }

    /// True once the process has ended (zombie or reaped); does not reap it.
    pub fn has_ended(&self) -> bool {
        self.status.is_some() || read_stat(self.pid).is_none_or(|s| s.state == 'Z')
    }

    /// Sends SIGTERM (no-op once reaped).
    pub fn terminate(&self) {
        if self.status.is_none() {
            signal(self.pid, "TERM");
        }
    }

    /// Waits up to `grace` for the process to end (SIGKILL after that), reading its final CPU
    /// time before reaping it. Returns how it ended.
    pub async fn wait(&mut self, grace: Duration) -> anyhow::Result<Exit> {
        if let Some(status) = self.status {
            return Ok(status.into());
        }
        let deadline = Instant::now() + grace;
        let mut killed = false;
        loop {
            match read_stat(self.pid) {
                Some(stat) if stat.state == 'Z' => {
                    self.cpu_ticks = stat.cpu_ticks;
                    break;
                }
                Some(_) => {
                    self.sample();
                }
                None => break,
            }
            if !killed && Instant::now() >= deadline {
                signal(self.pid, "KILL");
                killed = true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status = self
            .child
            .wait()
            .with_context(|| format!("reaping {} (pid {})", self.name, self.pid))?;
        self.status = Some(status);
        Ok(status.into())
    }

    /// [`Proc::terminate`] then [`Proc::wait`].
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<Exit> {
        self.terminate();
        self.wait(grace).await
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() && !self.has_ended() {
            signal(self.pid, "TERM");
        }
        // Reap it if it is already gone; a still-running child is left to init.
        let _ = self.child.try_wait();
    }
}

/// Sends `signal` (a name, `TERM` or `KILL`) to `pid` with the `kill` command; best effort.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sigterm_ends_a_child_and_its_cpu_time_is_kept() {
        let mut command = Command::new("sh");
        // Burn a little CPU, then wait to be terminated.
        command.args([
            "-c",
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 30",
        ]);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let mut proc = Proc::spawn_configured("sh", command).expect("spawns");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!proc.has_ended());
        proc.sample();
        assert!(proc.peak_rss_kb() > 0);
        let exit = proc.stop(Duration::from_secs(5)).await.expect("stops");
        assert_eq!(exit.signal, Some(15), "{exit}");
        assert!(proc.has_ended());
    }

    #[tokio::test]
    async fn exit_codes_are_reported() {
        let mut command = Command::new("sh");
        command.args(["-c", "exit 3"]);
        let mut proc = Proc::spawn_configured("sh", command).expect("spawns");
        let exit = proc.wait(Duration::from_secs(5)).await.expect("waits");
        assert_eq!(exit.code, Some(3));
        assert!(!exit.success());
    }
}
