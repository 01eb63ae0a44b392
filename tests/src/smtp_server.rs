//! A real SMTP server for the mail tests: aiosmtpd (PyPI, installed by
//! scripts/aws-test-tools.sh into its own venv) running tests/smtp/smtp_sink.py
//! on a loopback port, one per test, killed on drop. It stores each message
//! it accepts as `.eml` plus a `.json` of what Python's email parser read
//! from it, and answers each DATA as its plan says (see the script).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engagetrack_server::adapters::smtp::SmtpSettings;

use crate::free_port;
use crate::moto::{tools_dir, wait_listening};
use crate::test_ca::TestCa;

/// The venv's Python with aiosmtpd: `ENGAGETRACK_SMTP_PYTHON`, else the tools venv.
pub fn python() -> PathBuf {
    std::env::var_os("ENGAGETRACK_SMTP_PYTHON").map(PathBuf::from).unwrap_or_else(|| tools_dir().join("smtp-venv/bin/python"))
}

/// The sender the tests configure (`ENGAGETRACK_MAIL_FROM`).
pub const MAIL_FROM: &str = "EngageTrack <no-reply@engagetrack.test>";

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/smtp/smtp_sink.py");

/// How the server talks: plaintext, STARTTLS or implicit TLS (with a
/// certificate for `localhost` from a CA made for it), and AUTH if asked.
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    /// The DATA answers in turn: `accept`, `defer`, `refuse`, `drop`, `accept-drop`, `stall`.
    pub plan: Vec<&'static str>,
    pub tls: SinkTls,
    /// `(user, password)` AUTH must give.
    pub auth: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SinkTls {
    #[default]
    None,
    StartTls,
    Implicit,
}

/// One message the server accepted, as Python's email parser read it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub message_id: String,
    pub content_type: String,
    pub list_unsubscribe: Option<String>,
    pub list_unsubscribe_post: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    ca: Option<TestCa>,
    options: SinkOptions,
    child: Option<Child>,
}

impl SmtpSink {
    pub fn start(options: SinkOptions) -> Self {
        Self::start_on(free_port(), options)
    }

    /// On a given port (a test may first leave it closed, so connections are refused).
    pub fn start_on(port: u16, options: SinkOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = (options.tls != SinkTls::None).then(|| {
            let certs = dir.path().join("certs");
            std::fs::create_dir(&certs).expect("certs dir");
            TestCa::for_localhost(&certs)
        });
        let mut sink = Self { port, dir, ca, options, child: None };
        sink.launch();
        sink
    }

    fn launch(&mut self) {
        let python = python();
        assert!(python.exists(), "{} is missing: run scripts/aws-test-tools.sh (./dev setup does)", python.display());
        let mut command = Command::new(&python);
        command
            .arg(SCRIPT)
            .args(["--port", &self.port.to_string(), "--plan", &self.options.plan.join(",")])
            .arg("--dir")
            .arg(self.dir.path());
        if let Some(ca) = &self.ca {
            let tls = if self.options.tls == SinkTls::StartTls { "starttls" } else { "implicit" };
            command.args(["--tls", tls]).arg("--cert").arg(&ca.server_cert).arg("--key").arg(&ca.server_key);
        }
        if let Some((user, password)) = &self.options.auth {
            command.args(["--auth", &format!("{user}:{password}")]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
        wait_listening(&mut child, SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)), "the SMTP sink (aiosmtpd)");
        self.child = Some(child);
    }

    /// `ENGAGETRACK_SMTP_URL` for this server.
    pub fn url(&self) -> String {
        let user = self.options.auth.as_ref().map(|(u, _)| format!("{u}@")).unwrap_or_default();
        match self.options.tls {
            SinkTls::None => format!("smtp://127.0.0.1:{}?tls=none", self.port),
            SinkTls::StartTls => format!("smtp://{user}localhost:{}", self.port),
            SinkTls::Implicit => format!("smtps://{user}localhost:{}", self.port),
        }
    }

    /// What the product is configured with to reach this server: [`Self::url`],
    /// [`MAIL_FROM`], and the test CA for a TLS server.
    pub fn settings(&self) -> SmtpSettings {
        let ca = self.ca.as_ref().map(|ca| ca.ca.clone());
        SmtpSettings::parse(&self.url(), MAIL_FROM, ca).expect("valid SMTP settings")
    }

    /// Every message accepted so far, in the order accepted.
    pub fn received(&self) -> Vec<Received> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read the sink folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json") && !is_temporary(p))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).expect("read a message")).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .collect()
    }

    /// The messages accepted for `to`.
    pub fn received_by(&self, to: &str) -> Vec<Received> {
        self.received().into_iter().filter(|m| m.rcpt_tos.iter().any(|r| r.eq_ignore_ascii_case(to))).collect()
    }

    /// The behaviour each DATA got, in turn (the plan as far as it was used).
    pub fn attempts(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("attempts.log")).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// Waits until the server holds a DATA in `stall` number `n` (1-based).
    pub fn wait_for_stall(&self, n: usize) {
        let marker = self.dir.path().join(format!("stall-{n}"));
        let started = Instant::now();
        while !marker.exists() {
            assert!(started.elapsed() < Duration::from_secs(60), "no sender reached the stalled DATA within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn is_temporary(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.kill();
    }
}
