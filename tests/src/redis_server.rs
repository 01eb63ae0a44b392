//! A real `redis-server` (Debian's `redis-server` package) for tests: on a
//! free loopback port, nothing saved to disk, stopped when dropped. Tests
//! can kill it (SIGKILL) and start it again on the same port. With
//! [`RedisServer::start_tls`] it also serves TLS (Debian's build has it) on a
//! second port, with a certificate of a [`TestCa`]; the plaintext port stays
//! for the test's own inspection.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engagetrack_server::adapters::redis::RedisSettings;

use crate::free_port;
use crate::test_ca::TestCa;

pub struct RedisServer {
    pub port: u16,
    tls: Option<Tls>,
    child: Option<Child>,
}

struct Tls {
    port: u16,
    ca: TestCa,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one; panics with the reason when `redis-server` is missing.
    pub fn start() -> Self {
        // Another process may take the port between our probe and the
        // server's bind: try a few.
        Self::start_with(|| None)
    }

    /// Also serves TLS for `localhost`, signed by a CA made for this server.
    pub fn start_tls() -> Self {
        Self::start_with(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let ca = TestCa::for_localhost(dir.path());
            Some(Tls { port: free_port(), ca, _dir: dir })
        })
    }

    fn start_with(tls: impl Fn() -> Option<Tls>) -> Self {
        for _ in 0..5 {
            let mut server = Self { port: free_port(), tls: tls(), child: None };
            if server.launch() {
                return server;
            }
        }
        panic!("redis-server did not start on a loopback port (install it: apt-get install redis-server)");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `rediss://localhost:<tls port>/` (a TLS server only).
    pub fn tls_url(&self, host: &str) -> String {
        format!("rediss://{host}:{}/", self.tls.as_ref().expect("started with start_tls").port)
    }

    /// The test CA's certificate (a TLS server only).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.tls.as_ref().expect("started with start_tls").ca.ca.clone()
    }

    /// What the product is configured with: TLS verified by the test CA
    /// when the server has TLS, else plaintext.
    pub fn settings(&self) -> RedisSettings {
        match &self.tls {
            Some(_) => RedisSettings { url: self.tls_url("localhost"), ca_file: Some(self.ca_file()) },
            None => RedisSettings::url(self.url()),
        }
    }

    fn launch(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        if let Some(tls) = &self.tls {
            command
                .args(["--tls-port", &tls.port.to_string(), "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(&tls.ca.server_cert)
                .arg("--tls-key-file")
                .arg(&tls.ca.server_key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca.ca);
        }
        let child = command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning", "--dir", &std::env::temp_dir().to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server ({e}); install it: apt-get install redis-server"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.command(&["PING"]).is_some_and(|r| r.starts_with("+PONG")) {
                return true;
            }
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// SIGKILL, and wait for it to be gone: whatever it held is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.launch(), "redis-server did not start again on port {}", self.port);
    }

    /// One command in the inline protocol; the raw reply (None when unreachable).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)), Duration::from_millis(200)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        // Enough for the short replies tests read; stop when a read comes back short.
        loop {
            let n = stream.read(&mut buf).ok()?;
            reply.extend_from_slice(&buf[..n]);
            if n < buf.len() {
                break;
            }
        }
        Some(String::from_utf8_lossy(&reply).into_owned())
    }

    /// The keys matching a pattern (`KEYS`; a test's Redis is small).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let reply = self.command(&["KEYS", pattern]).unwrap_or_default();
        let lines: Vec<&str> = reply.split("\r\n").collect();
        lines.iter().skip(1).filter(|l| !l.starts_with('$') && !l.is_empty()).map(|l| l.to_string()).collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
