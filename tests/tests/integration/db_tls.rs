//! TLS to PostgreSQL, as RDS with `rds.force_ssl` wants it: a private cluster
//! listening on loopback with `ssl = on` and a certificate from a CA made here
//! (openssl), then told to refuse every unencrypted connection. `sslmode=require`
//! connects encrypted and verified; an unknown issuer or a wrong host name is
//! an error, never a plaintext fallback.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use engagetrack_server::adapters::postgres::{self as db, DbError, DbTls};
use engagetrack_server::adapters::postgres::local_cluster::{DB_USER, LocalCluster, server_user};
use engagetrack_server::adapters::postgres::lambda;
use engagetrack_tests::test_ca::TestCa;

struct TlsCluster {
    _cluster: LocalCluster,
    port: u16,
    ca: PathBuf,
    data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

/// The test CA's files, readable by the PostgreSQL server's user.
fn make_certificates(dir: &Path) {
    TestCa::for_localhost(dir);
    // PostgreSQL refuses a key anyone else can read.
    let owner = server_user().expect("server user");
    for file in ["server.key", "server.pem"] {
        let path = dir.join(file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        }
    }
}

async fn tls_cluster() -> TlsCluster {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    std::fs::set_permissions(&tls, std::fs::Permissions::from_mode(0o755)).unwrap();
    make_certificates(&tls);
    let port = engagetrack_tests::free_port();
    let settings = format!(
        "listen_addresses = '127.0.0.1'\nport = {port}\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
        tls.join("server.pem").display(),
        tls.join("server.key").display()
    );
    let data_dir = dir.path().join("pg");
    let start_in = data_dir.clone();
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::start_with_settings(&start_in, &settings))
        .await
        .unwrap()
        .expect("start the TLS cluster");
    TlsCluster { _cluster: cluster, port, ca: tls.join("ca.pem"), data_dir, _dir: dir }
}

impl TlsCluster {
    fn url(&self, host: &str, sslmode: &str) -> String {
        format!("postgres://{DB_USER}@{host}:{}/postgres?sslmode={sslmode}", self.port)
    }

    fn ours(&self) -> DbTls {
        DbTls { ca_file: Some(self.ca.clone()) }
    }

    /// Only `hostssl` lines remain: a plaintext connection is refused, as with `rds.force_ssl = 1`.
    async fn refuse_plaintext(&self) {
        let hba = self.data_dir.join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("hostnossl all all 0.0.0.0/0 reject\n{text}")).unwrap();
        let pool = db::pool_with_tls(self.url("localhost", "require").parse().unwrap(), 1, &self.ours()).unwrap();
        let client = pool.get().await.expect("TLS connection");
        client.query_one("SELECT pg_reload_conf()", &[]).await.unwrap();
    }
}

/// (ssl, version) of the connection the query runs on, as the server sees it.
async fn ssl_of(pool: &db::Pool) -> Result<(bool, String), String> {
    let client = pool.get().await.map_err(|e| format!("{e:?}"))?;
    let row = client
        .query_one("SELECT ssl, coalesce(version, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test]
async fn sslmode_require_connects_encrypted_and_verified_and_never_falls_back() {
    let pg = tls_cluster().await;
    pg.refuse_plaintext().await;

    // The server pool and the Lambda pool, with the CA bundle: encrypted.
    let server = db::pool_with_tls(pg.url("localhost", "require").parse().unwrap(), 2, &pg.ours()).unwrap();
    let (ssl, version) = ssl_of(&server).await.expect("server pool over TLS");
    assert!(ssl, "pg_stat_ssl says the connection is not encrypted");
    assert!(version.starts_with("TLSv1."), "{version}");
    let lambda = lambda::pool_with_tls(&pg.url("localhost", "require"), &pg.ours()).unwrap();
    assert!(ssl_of(&lambda).await.expect("Lambda pool over TLS").0);
    db::migrate(&lambda).await.expect("migrations run over TLS");

    // The server really refuses plaintext now, so the modes that do not ask for TLS fail.
    for mode in ["disable", "prefer"] {
        let plain = db::pool_with_tls(pg.url("localhost", mode).parse().unwrap(), 1, &pg.ours()).unwrap();
        let err = ssl_of(&plain).await.expect_err("plaintext must be refused");
        assert!(err.contains("no encryption"), "sslmode={mode}: {err}");
    }

    // Without our CA only the public web roots are trusted: an unknown issuer is an error.
    let public_roots = db::pool_with_tls(pg.url("localhost", "require").parse().unwrap(), 1, &DbTls::default()).unwrap();
    let err = ssl_of(&public_roots).await.expect_err("an unknown issuer must not connect");
    assert!(err.contains("UnknownIssuer"), "{err}");

    // The certificate names localhost, not 127.0.0.1: the host name is checked too.
    let wrong_name = db::pool_with_tls(pg.url("127.0.0.1", "require").parse().unwrap(), 1, &pg.ours()).unwrap();
    let err = ssl_of(&wrong_name).await.expect_err("a certificate for another name must not connect");
    assert!(err.contains("NotValidForName"), "{err}");
}

#[test]
fn a_missing_or_empty_ca_file_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://u@db.example:5432/d?sslmode=require";
    let missing = DbTls { ca_file: Some(dir.path().join("rds-ca.pem")) };
    let err = db::pool_with_tls(url.parse().unwrap(), 1, &missing).unwrap_err();
    assert!(matches!(err, DbError::CaFile { .. }), "{err:?}");
    assert!(err.to_string().contains("ENGAGETRACK_DB_CA_FILE") && err.to_string().contains("rds-ca.pem"), "{err}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = lambda::pool_with_tls(url, &DbTls { ca_file: Some(empty) }).unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");

    // Plaintext modes never read the CA file: the local stack needs none.
    let plain = "postgres://u@127.0.0.1:5432/d?sslmode=disable";
    assert!(db::pool_with_tls(plain.parse().unwrap(), 1, &missing).is_ok());
}
