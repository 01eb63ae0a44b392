//! moto's server (PyPI `moto[server]`, installed by scripts/moto-venv.sh) on
//! a free loopback port, one per test, stopped on drop. Every AWS adapter is
//! tested against it: the real SDK on the real wire, no hand-written mocks.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engagetrack_server::adapters::aws::AwsSettings;

/// The moto_server binary: `ENGAGETRACK_MOTO_SERVER`, else the tools venv.
pub fn moto_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ENGAGETRACK_MOTO_SERVER") {
        return path.into();
    }
    let tools = std::env::var_os("ENGAGETRACK_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/engagetrack-tools"));
    tools.join("moto-venv/bin/moto_server")
}

pub struct Moto {
    pub addr: SocketAddr,
    child: Child,
}

impl Moto {
    /// Starts moto_server on 127.0.0.1 at a port the OS just handed out and
    /// waits until it answers.
    pub fn start() -> Self {
        let binary = moto_server_binary();
        assert!(binary.exists(), "{} is missing: run scripts/moto-venv.sh (./dev setup does)", binary.display());
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("a free port").port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut moto = Self { addr, child };
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited at start ({status}); is port {port} taken?");
            }
            assert!(started.elapsed() < Duration::from_secs(30), "moto_server did not listen on {addr} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the adapters are given: this endpoint, the template's region and
    /// dummy credentials (moto accepts any).
    pub fn aws_settings(&self) -> AwsSettings {
        AwsSettings {
            endpoint_url: Some(self.url()),
            region: Some("eu-central-1".into()),
            static_credentials: Some(("testing".into(), "testing".into())),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
