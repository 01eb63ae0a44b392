//! The two processes the soak does things to: the private PostgreSQL
//! cluster (restarted, or frozen with SIGSTOP) and `engagetrack serve`
//! (a child, stopped with SIGTERM or SIGKILL and started again).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use engagetrack_server::adapters::postgres::local_cluster::LocalCluster;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("PostgreSQL: {0}")]
    Cluster(#[from] engagetrack_server::adapters::postgres::local_cluster::LocalPgError),
    #[error("the PostgreSQL cluster is not running (no postmaster.pid)")]
    NoPostmaster,
    #[error("signal {signal} to {pid}: {source}")]
    Signal { signal: Signal, pid: i32, source: nix::Error },
    #[error("starting {binary}: {source}")]
    Spawn { binary: PathBuf, source: std::io::Error },
    #[error("the server did not answer /healthz within {0:?}; its log is {1}")]
    NotReady(Duration, PathBuf),
    #[error("the server exited before it was ready ({0}); its log is {1}")]
    Exited(std::process::ExitStatus, PathBuf),
    #[error("waiting for the server: {0}")]
    Wait(std::io::Error),
}

fn signal(pid: i32, signal: Signal) -> Result<(), ProcessError> {
    kill(Pid::from_raw(pid), signal).map_err(|source| ProcessError::Signal { signal, pid, source })
}

/// Direct children of `parent`, from `/proc/<pid>/stat` (the backends and
/// auxiliary processes of a postmaster).
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            // The command name may hold spaces and parentheses: the parent id is the second field after the last ')'.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<i32>().ok())
                == Some(parent)
        })
        .collect()
}

/// The processes of a cluster frozen with SIGSTOP; thawed on drop, so an
/// early return never leaves PostgreSQL frozen.
pub struct Frozen {
    pids: Vec<i32>,
}

impl Frozen {
    /// Every process resumed; the postmaster last, so it never runs alone among frozen backends.
    pub fn thaw(mut self) -> Result<usize, ProcessError> {
        self.resume()
    }

    fn resume(&mut self) -> Result<usize, ProcessError> {
        let n = self.pids.len();
        for pid in std::mem::take(&mut self.pids).into_iter().rev() {
            // A backend that exited meanwhile is no error.
            match signal(pid, Signal::SIGCONT) {
                Err(ProcessError::Signal { source: nix::Error::ESRCH, .. }) | Ok(()) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Err(e) = self.resume() {
            tracing::error!(error = %e, "could not resume PostgreSQL");
        }
    }
}

/// The soak's own cluster, shared between the fault schedule and the counting.
pub struct SoakCluster {
    pub cluster: LocalCluster,
}

impl SoakCluster {
    pub fn start(data_dir: &Path) -> Result<Self, ProcessError> {
        Ok(Self { cluster: LocalCluster::start(data_dir)? })
    }

    /// SIGSTOP to the postmaster first (it forks no new backend while
    /// frozen), then to each of its children.
    pub fn freeze(&self) -> Result<Frozen, ProcessError> {
        let postmaster = self.cluster.postmaster_pid().ok_or(ProcessError::NoPostmaster)?;
        signal(postmaster, Signal::SIGSTOP)?;
        let mut frozen = Frozen { pids: vec![postmaster] };
        for child in children_of(postmaster) {
            match signal(child, Signal::SIGSTOP) {
                Ok(()) => frozen.pids.push(child),
                Err(ProcessError::Signal { source: nix::Error::ESRCH, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(frozen)
    }
}

/// `engagetrack serve` as a child process, on a fixed loopback port.
pub struct ServerProcess {
    binary: PathBuf,
    env: Vec<(String, String)>,
    port: u16,
    log: PathBuf,
    child: Option<tokio::process::Child>,
    /// The running server's pid (0 between lives), for the memory sampler.
    pid: Arc<AtomicI32>,
}

/// How long a start may take (migrations are already applied by then).
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the soak gives up on it.
const STOP_WITHIN: Duration = Duration::from_secs(60);

impl ServerProcess {
    pub fn new(binary: PathBuf, env: Vec<(String, String)>, port: u16, log: PathBuf) -> Self {
        Self { binary, env, port, log, child: None, pid: Arc::new(AtomicI32::new(0)) }
    }

    pub fn pid_cell(&self) -> Arc<AtomicI32> {
        self.pid.clone()
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until `/healthz` answers.
    pub async fn start(&mut self, http: &reqwest::Client) -> Result<(), ProcessError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| ProcessError::Spawn { binary: self.log.clone(), source })?;
        let log_err = log.try_clone().map_err(|source| ProcessError::Spawn { binary: self.log.clone(), source })?;
        let mut child = tokio::process::Command::new(&self.binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["serve", "--addr", &format!("127.0.0.1:{}", self.port)])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ProcessError::Spawn { binary: self.binary.clone(), source })?;
        self.pid.store(child.id().and_then(|id| i32::try_from(id).ok()).unwrap_or(0), Ordering::Relaxed);
        let started = Instant::now();
        let health = format!("{}/healthz", self.base_url());
        loop {
            if let Some(status) = child.try_wait().map_err(ProcessError::Wait)? {
                self.pid.store(0, Ordering::Relaxed);
                return Err(ProcessError::Exited(status, self.log.clone()));
            }
            if http.get(&health).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if started.elapsed() > READY_WITHIN {
                return Err(ProcessError::NotReady(READY_WITHIN, self.log.clone()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    /// Sends `stop` (SIGTERM: a graceful shutdown; SIGKILL: none) and waits
    /// for the exit; what the process said it exited with, for the fault log.
    pub async fn stop(&mut self, stop: Signal) -> Result<String, ProcessError> {
        let Some(mut child) = self.child.take() else { return Ok("not running".into()) };
        if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
            signal(pid, stop)?;
        }
        let status = match tokio::time::timeout(STOP_WITHIN, child.wait()).await {
            Ok(status) => status.map_err(ProcessError::Wait)?.to_string(),
            Err(_) => {
                child.kill().await.map_err(ProcessError::Wait)?;
                format!("no exit within {STOP_WITHIN:?}, killed")
            }
        };
        self.pid.store(0, Ordering::Relaxed);
        Ok(status)
    }
}

/// The server's resident set (VmRSS) in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_its_own_children_and_reads_its_own_rss() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(children_of(me).contains(&i32::try_from(child.id()).unwrap()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(rss_kib(me).is_some_and(|kib| kib > 0));
    }
}
