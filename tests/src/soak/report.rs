//! What the soak found: each beacon's answer joined with how many times its
//! marker is stored, per fault window, and the server's memory over time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;

/// What the client saw for one beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Any HTTP answer, by status.
    Status(u16),
    /// No connection: the request never reached a server.
    ConnectFailed,
    /// Sent, and no answer within the client timeout.
    TimedOut,
    /// Sent, and the connection broke before an answer (say, a killed server).
    Broken,
}

/// One beacon as sent: its marker, when (ms from the start) and the answer.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub marker: u64,
    pub at_ms: u64,
    pub answer: Answer,
}

/// Answers counted, and how many of each kind were stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub sent: u64,
    /// 2xx answers.
    pub accepted: u64,
    /// Non-2xx answers, by status (503 = the queue is full or the database is away).
    pub refused: BTreeMap<u16, u64>,
    pub connect_failed: u64,
    pub timed_out: u64,
    pub broken: u64,
    /// Markers found at least once in `events`.
    pub stored: u64,
    /// Accepted and not stored: must be 0.
    pub lost: u64,
    /// Stored more than once: must be 0.
    pub duplicates: u64,
    /// Refused, yet stored (the commit went through after the answer was decided).
    pub refused_stored: u64,
    /// Connect failures, timeouts and broken connections that were stored after all.
    pub unanswered_stored: u64,
}

impl Tally {
    /// `stored`: how many rows each marker has.
    pub fn of<'a>(sent: impl IntoIterator<Item = &'a Sent>, stored: &HashMap<u64, u64>) -> Self {
        let mut t = Self::default();
        for s in sent {
            let rows = stored.get(&s.marker).copied().unwrap_or(0);
            t.sent += 1;
            t.stored += u64::from(rows > 0);
            t.duplicates += u64::from(rows > 1);
            match s.answer {
                Answer::Status(code) if (200..300).contains(&code) => {
                    t.accepted += 1;
                    t.lost += u64::from(rows == 0);
                }
                Answer::Status(code) => {
                    *t.refused.entry(code).or_default() += 1;
                    t.refused_stored += u64::from(rows > 0);
                }
                unanswered => {
                    match unanswered {
                        Answer::ConnectFailed => t.connect_failed += 1,
                        Answer::TimedOut => t.timed_out += 1,
                        _ => t.broken += 1,
                    }
                    t.unanswered_stored += u64::from(rows > 0);
                }
            }
        }
        t
    }

    pub fn unanswered(&self) -> u64 {
        self.connect_failed + self.timed_out + self.broken
    }

    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// PostgreSQL stopped without a checkpoint (`pg_ctl -m immediate`) and started again.
    PgRestart,
    /// Every process of the cluster frozen with SIGSTOP, longer than the server's database timeouts.
    PgPause,
    /// A burst of beacons far beyond the commit queue while PostgreSQL is held a moment.
    QueueFill,
    /// The server stopped with SIGTERM (graceful) and started again.
    ServerRestart,
    /// The server killed with SIGKILL and started again.
    ServerKill,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [Self::ServerRestart, Self::ServerKill, Self::PgRestart, Self::PgPause, Self::QueueFill];

    pub fn name(self) -> &'static str {
        match self {
            Self::PgRestart => "pg-restart",
            Self::PgPause => "pg-pause",
            Self::QueueFill => "queue-fill",
            Self::ServerRestart => "server-restart",
            Self::ServerKill => "server-kill",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("no fault `{s}`; the faults are {}", Self::ALL.map(Self::name).join(", ")))
    }
}

/// One fault as it happened, and the answers to beacons sent from its start
/// until a second after its end.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub fault: FaultKind,
    pub started_s: f64,
    pub ended_s: f64,
    pub detail: String,
    pub answers: Tally,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemorySample {
    pub at_s: f64,
    pub pid: i32,
    pub rss_kib: u64,
}

/// One server process's memory: the median of its first and of its last
/// minute of samples, and the largest.
#[derive(Debug, Clone, Serialize)]
pub struct ServerLife {
    pub pid: i32,
    pub from_s: f64,
    pub to_s: f64,
    pub first_minute_kib: u64,
    pub last_minute_kib: u64,
    pub max_kib: u64,
}

impl ServerLife {
    pub fn growth_percent(&self) -> f64 {
        (self.last_minute_kib as f64 / self.first_minute_kib.max(1) as f64 - 1.0) * 100.0
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Samples grouped by process, in order.
pub fn lives(samples: &[MemorySample]) -> Vec<ServerLife> {
    let mut out: Vec<Vec<MemorySample>> = Vec::new();
    for s in samples {
        match out.last_mut() {
            Some(life) if life.last().is_some_and(|l| l.pid == s.pid) => life.push(*s),
            _ => out.push(vec![*s]),
        }
    }
    out.into_iter()
        .filter_map(|life| {
            let (first, last) = (life.first()?.at_s, life.last()?.at_s);
            let window = |keep: &dyn Fn(f64) -> bool| median(life.iter().filter(|s| keep(s.at_s)).map(|s| s.rss_kib).collect());
            Some(ServerLife {
                pid: life[0].pid,
                from_s: first,
                to_s: last,
                first_minute_kib: window(&|at| at < first + 60.0),
                last_minute_kib: window(&|at| at > last - 60.0),
                max_kib: life.iter().map(|s| s.rss_kib).max().unwrap_or(0),
            })
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The cluster and the server's log, when kept.
    pub work_dir: Option<std::path::PathBuf>,
    pub seconds: f64,
    pub rate: u32,
    pub queue: usize,
    pub client_timeout_s: f64,
    pub cores: usize,
    /// `/proc/loadavg` at the start and the end: other work on the machine.
    pub load_before: String,
    pub load_after: String,
    /// Every beacon of the run.
    pub total: Tally,
    /// Stored rows whose path is not a marker of this run: must be 0.
    pub unknown_rows: u64,
    pub peak_in_flight: usize,
    pub faults: Vec<FaultRecord>,
    /// Beacons sent from a second after the last fault ended: the server recovered.
    pub after_faults: Tally,
    pub memory: Vec<MemorySample>,
    pub lives: Vec<ServerLife>,
    /// The first 20 lost and duplicated markers, to look them up.
    pub lost_markers: Vec<u64>,
    pub duplicate_markers: Vec<u64>,
}

impl Report {
    /// The longest-lived server, where growth would show.
    pub fn longest_life(&self) -> Option<&ServerLife> {
        self.lives.iter().max_by(|a, b| (a.to_s - a.from_s).total_cmp(&(b.to_s - b.from_s)))
    }
}

fn refused(t: &Tally) -> String {
    if t.refused.is_empty() {
        return "0".into();
    }
    t.refused.iter().map(|(code, n)| format!("{n}×{code}")).collect::<Vec<_>>().join(" ")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.total;
        writeln!(
            f,
            "soak: {:.0} s at {} beacons/s, commit queue {}, client timeout {:.0} s, {} cores (load {} → {})",
            self.seconds, self.rate, self.queue, self.client_timeout_s, self.cores, self.load_before, self.load_after
        )?;
        writeln!(
            f,
            "sent {}  accepted {}  refused {}  unanswered {} (connect {}, timeout {}, broken {})",
            t.sent,
            t.accepted,
            refused(t),
            t.unanswered(),
            t.connect_failed,
            t.timed_out,
            t.broken
        )?;
        writeln!(
            f,
            "stored {}  LOST {}  DUPLICATES {}  refused-but-stored {}  unanswered-but-stored {}  unknown rows {}  peak in flight {}",
            t.stored, t.lost, t.duplicates, t.refused_stored, t.unanswered_stored, self.unknown_rows, self.peak_in_flight
        )?;
        writeln!(f, "faults:")?;
        for r in &self.faults {
            let a = &r.answers;
            writeln!(
                f,
                "  {:>6.1}–{:<6.1} s  {:<14} {}\n                     answers: sent {} accepted {} refused {} unanswered {} (stored {}) lost {} duplicates {}",
                r.started_s,
                r.ended_s,
                r.fault.name(),
                r.detail,
                a.sent,
                a.accepted,
                refused(a),
                a.unanswered(),
                a.unanswered_stored,
                a.lost,
                a.duplicates
            )?;
        }
        let a = &self.after_faults;
        writeln!(
            f,
            "  after the last fault: sent {} accepted {} refused {} unanswered {}",
            a.sent,
            a.accepted,
            refused(a),
            a.unanswered()
        )?;
        writeln!(f, "server memory (VmRSS):")?;
        for l in &self.lives {
            writeln!(
                f,
                "  pid {:<8} {:>6.1}–{:<6.1} s  first minute {:.1} MiB  last minute {:.1} MiB ({:+.1} %)  max {:.1} MiB",
                l.pid,
                l.from_s,
                l.to_s,
                l.first_minute_kib as f64 / 1024.0,
                l.last_minute_kib as f64 / 1024.0,
                l.growth_percent(),
                l.max_kib as f64 / 1024.0
            )?;
        }
        let series: Vec<String> = self.memory.iter().map(|s| format!("{:.0}s:{:.1}", s.at_s, s.rss_kib as f64 / 1024.0)).collect();
        writeln!(f, "  series (s:MiB): {}", series.join(" "))?;
        if let Some(dir) = &self.work_dir {
            writeln!(f, "kept: {} (server.log, pg/, pg.run/postgres.log)", dir.display())?;
        }
        if !self.lost_markers.is_empty() || !self.duplicate_markers.is_empty() {
            writeln!(f, "lost markers {:?}  duplicate markers {:?}", self.lost_markers, self.duplicate_markers)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_tells_lost_duplicated_and_stored_unanswered_apart() {
        let sent = [
            Sent { marker: 1, at_ms: 0, answer: Answer::Status(202) },
            Sent { marker: 2, at_ms: 0, answer: Answer::Status(202) },
            Sent { marker: 3, at_ms: 0, answer: Answer::Status(202) },
            Sent { marker: 4, at_ms: 0, answer: Answer::Status(503) },
            Sent { marker: 5, at_ms: 0, answer: Answer::Broken },
            Sent { marker: 6, at_ms: 0, answer: Answer::ConnectFailed },
        ];
        let stored = HashMap::from([(1, 1), (3, 2), (5, 1)]);
        let t = Tally::of(&sent, &stored);
        assert_eq!((t.sent, t.accepted, t.stored, t.lost, t.duplicates), (6, 3, 3, 1, 1));
        assert_eq!(t.refused, BTreeMap::from([(503, 1)]));
        assert_eq!((t.connect_failed, t.broken, t.unanswered(), t.unanswered_stored, t.refused_stored), (1, 1, 2, 1, 0));
    }

    #[test]
    fn memory_is_summarised_per_server_process() {
        let s = |at_s, pid, rss_kib| MemorySample { at_s, pid, rss_kib };
        let samples: Vec<_> = (0..100u32).map(|i| s(f64::from(i) * 2.0, 7, 1000 + u64::from(i))).chain([s(200.0, 8, 500)]).collect();
        let l = lives(&samples);
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].pid, l[0].first_minute_kib, l[0].last_minute_kib, l[0].max_kib), (7, 1015, 1085, 1099));
        assert_eq!((l[1].pid, l[1].first_minute_kib), (8, 500));
    }
}
