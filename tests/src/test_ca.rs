//! A certificate authority made for one test (openssl, EC P-256, two days)
//! and a server certificate it signed for `localhost` only, no IP address:
//! so a test can tell a verified connection from one to the wrong name.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestCa {
    pub dir: PathBuf,
    /// The CA certificate (PEM): what a client trusts.
    pub ca: PathBuf,
    /// The server's certificate (PEM) and key, for `localhost`.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl TestCa {
    /// Writes ca.pem, server.pem and server.key into `dir`.
    pub fn for_localhost(dir: &Path) -> Self {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        #[rustfmt::skip]
        openssl(dir, &[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=EngageTrack test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]].concat());
        openssl(dir, &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        #[rustfmt::skip]
        openssl(dir, &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem",
            "-days", "2", "-extfile", "server.ext"]);
        Self { dir: dir.to_owned(), ca: dir.join("ca.pem"), server_cert: dir.join("server.pem"), server_key: dir.join("server.key") }
    }
}
