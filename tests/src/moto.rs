//! moto's server (PyPI `moto[server]`, installed by scripts/aws-test-tools.sh) on
//! a free loopback port, one per test, stopped on drop. Every AWS adapter is
//! tested against it: the real SDK on the real wire, no hand-written mocks.
//! moto does not refuse a presigned S3 link after its expiry, so [`S3rver`]
//! (npm `s3rver`, which does) checks that one property.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engagetrack_server::adapters::aws::AwsSettings;

/// Where scripts/aws-test-tools.sh installs the test servers (`ENGAGETRACK_TOOLS`).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("ENGAGETRACK_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/engagetrack-tools"))
}

/// The moto_server binary: `ENGAGETRACK_MOTO_SERVER`, else the tools venv.
pub fn moto_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ENGAGETRACK_MOTO_SERVER") {
        return path.into();
    }
    tools_dir().join("moto-venv/bin/moto_server")
}

fn free_loopback_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Waits until `addr` accepts connections, failing if the child exits first.
pub(crate) fn wait_listening(child: &mut Child, addr: SocketAddr, what: &str) {
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start ({status}); is port {} taken?", addr.port());
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{what} did not listen on {addr} within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
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
        assert!(binary.exists(), "{} is missing: run scripts/aws-test-tools.sh (./dev setup does)", binary.display());
        let port = free_loopback_port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut moto = Self { addr, child };
        wait_listening(&mut moto.child, addr, "moto_server");
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

/// s3rver (npm) on a free loopback port with one bucket, stopped on drop.
pub struct S3rver {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl S3rver {
    pub fn start(bucket: &str) -> Self {
        let script = tools_dir().join("s3rver/node_modules/s3rver/bin/s3rver.js");
        assert!(script.exists(), "{} is missing: run scripts/aws-test-tools.sh (./dev setup does)", script.display());
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_loopback_port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let child = Command::new("node")
            .arg(&script)
            .args(["--silent", "--no-vhost-buckets", "-a", "127.0.0.1", "-p", &port.to_string(), "--configure-bucket", bucket, "-d"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start s3rver: {e}"));
        let mut server = Self { addr, child, _dir: dir };
        wait_listening(&mut server.child, addr, "s3rver");
        server
    }

    /// s3rver knows one account, `S3RVER`.
    pub fn aws_settings(&self) -> AwsSettings {
        AwsSettings {
            endpoint_url: Some(format!("http://{}", self.addr)),
            region: Some("eu-central-1".into()),
            static_credentials: Some(("S3RVER".into(), "S3RVER".into())),
        }
    }
}

impl Drop for S3rver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
