//! A private PostgreSQL cluster for the local binary when `DATABASE_URL` is
//! not set: made with `initdb` in a data directory, started with `pg_ctl`,
//! reachable only through a unix socket in a 0700 directory, stopped by
//! whoever started it. PostgreSQL refuses to run as root, so under root the
//! cluster runs as the `postgres` system user and owns its directories.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::unistd::{Gid, Uid, User, chown};

pub const DB_USER: &str = "engagetrack";
pub const DB_NAME: &str = "engagetrack";
/// Only names the socket file; nothing listens on TCP.
const PORT: u16 = 5432;
/// Unix socket paths must stay under 108 bytes.
const MAX_SOCKET_DIR_LEN: usize = 90;

#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "PostgreSQL is not installed (no initdb/pg_ctl on PATH or under /usr/lib/postgresql/*/bin). \
         Install it with `sudo apt-get install postgresql` (Debian/Ubuntu), or set DATABASE_URL"
    )]
    NotInstalled,
    #[error("running as root, but there is no `postgres` system user to run the cluster as; install the postgresql package, or set DATABASE_URL")]
    NoPostgresUser,
    #[error("the postgres user cannot reach {0}; choose a data directory under a world-traversable path (e.g. --data-dir /var/lib/engagetrack/pg)")]
    Unreachable(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
}

pub struct LocalCluster {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    owner: Option<(Uid, Gid)>,
    /// Only the process that started the server stops it.
    started_here: bool,
    /// postgresql.conf lines after ours (they win): e.g. a TCP listener with TLS in a test.
    extra_settings: String,
}

impl LocalCluster {
    /// Initialises the cluster on first use and starts it unless it is
    /// already running (say, under a `serve` in another terminal).
    pub fn start(data_dir: &Path) -> Result<Self, LocalPgError> {
        Self::start_with_settings(data_dir, "")
    }

    /// As [`LocalCluster::start`], with `extra` postgresql.conf lines after ours.
    /// Files they name must be readable by [`server_user`].
    pub fn start_with_settings(data_dir: &Path, extra: &str) -> Result<Self, LocalPgError> {
        let bin_dir = find_bin_dir()?;
        let owner = cluster_owner()?;
        create_private_dir(data_dir, owner)?;
        let data_dir = data_dir.canonicalize().map_err(|source| LocalPgError::Io { path: data_dir.into(), source })?;
        let socket_dir = socket_dir_for(&data_dir);
        create_private_dir(&socket_dir, owner)?;
        if owner.is_some() {
            check_reachable(&data_dir)?;
            check_reachable(&socket_dir)?;
        }
        let mut cluster =
            Self { bin_dir, data_dir, socket_dir, owner, started_here: false, extra_settings: extra.to_owned() };
        if !cluster.data_dir.join("PG_VERSION").exists() {
            cluster.initdb()?;
        }
        cluster.write_settings()?;
        if !cluster.is_running() {
            cluster.pg_ctl(&["start", "-w", "-t", "60", "-l"], Some(&cluster.log_file()))?;
            cluster.started_here = true;
            tracing::info!(data_dir = %cluster.data_dir.display(), "started private PostgreSQL");
        }
        Ok(cluster)
    }

    /// A libpq key-value connection string for a database of this cluster.
    pub fn connection_string(&self, database: &str) -> String {
        format!("host={} port={PORT} user={DB_USER} dbname={database}", self.socket_dir.display())
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_file(&self) -> PathBuf {
        self.socket_dir.join("postgres.log")
    }

    /// Creates the application database if it is missing.
    pub async fn ensure_database(&self) -> Result<(), LocalPgError> {
        let failed = |e: tokio_postgres::Error| LocalPgError::Command { command: "create database".into(), detail: e.to_string() };
        let (client, connection) =
            tokio_postgres::connect(&self.connection_string("postgres"), tokio_postgres::NoTls).await.map_err(failed)?;
        let connection = tokio::spawn(connection);
        let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DB_NAME]).await.map_err(failed)?;
        if exists.is_none() {
            client.batch_execute(&format!("CREATE DATABASE {DB_NAME}")).await.map_err(failed)?;
        }
        drop(client);
        let _ = connection.await;
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.command("pg_ctl").arg("status").arg("-D").arg(&self.data_dir).output().is_ok_and(|o| o.status.success())
    }

    /// Stops and starts the server (fast mode): every client connection
    /// breaks, as in a database failover. Tests use it.
    pub fn restart(&self) -> Result<(), LocalPgError> {
        self.pg_ctl(&["restart", "-w", "-t", "60", "-m", "fast", "-l"], Some(&self.log_file())).map(drop)
    }

    /// Stops without a checkpoint, as a crash or power loss would, and starts
    /// again: the server replays its WAL, so only committed work is there. The soak uses it.
    pub fn restart_immediately(&self) -> Result<(), LocalPgError> {
        self.pg_ctl(&["restart", "-w", "-t", "60", "-m", "immediate", "-l"], Some(&self.log_file())).map(drop)
    }

    /// The postmaster's process id, from `postmaster.pid` (none while stopped).
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Fast shutdown: clients are disconnected, committed work is on disk.
    pub fn stop(&mut self) -> Result<(), LocalPgError> {
        if !self.started_here {
            return Ok(());
        }
        self.started_here = false;
        if self.is_running() {
            self.pg_ctl(&["stop", "-w", "-t", "60", "-m", "fast"], None)?;
            tracing::info!(data_dir = %self.data_dir.display(), "stopped private PostgreSQL");
        }
        Ok(())
    }

    fn initdb(&self) -> Result<(), LocalPgError> {
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(&self.data_dir).args(["-U", DB_USER, "--auth=trust", "-E", "UTF8", "--no-locale"]);
        run(cmd, "initdb").map(drop)
    }

    /// Our settings live in their own file, rewritten on every start so a
    /// moved data directory still finds its socket directory.
    fn write_settings(&self) -> Result<(), LocalPgError> {
        let conf = self.data_dir.join("postgresql.conf");
        let include = "include_if_exists = 'engagetrack.conf'";
        let text = std::fs::read_to_string(&conf).map_err(|source| LocalPgError::Io { path: conf.clone(), source })?;
        if !text.contains(include) {
            std::fs::write(&conf, format!("{text}\n{include}\n")).map_err(|source| LocalPgError::Io { path: conf.clone(), source })?;
        }
        let ours = self.data_dir.join("engagetrack.conf");
        let socket_dir = self.socket_dir.display().to_string().replace('\'', "''");
        let settings = format!(
            "# written by engagetrack on each start\nlisten_addresses = ''\nport = {PORT}\nunix_socket_directories = '{socket_dir}'\n{}\n",
            self.extra_settings
        );
        std::fs::write(&ours, settings).map_err(|source| LocalPgError::Io { path: ours.clone(), source })?;
        if let Some((uid, gid)) = self.owner {
            for path in [&conf, &ours] {
                chown(path, Some(uid), Some(gid)).map_err(|e| LocalPgError::Io { path: path.clone(), source: e.into() })?;
            }
        }
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str], log: Option<&Path>) -> Result<Output, LocalPgError> {
        let mut cmd = self.command("pg_ctl");
        cmd.args(args);
        if let Some(log) = log {
            cmd.arg(log);
        }
        cmd.arg("-D").arg(&self.data_dir);
        run(cmd, &format!("pg_ctl {}", args[0]))
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        // Its own process group: a Ctrl-C in the terminal reaches us, and we
        // stop the cluster cleanly, rather than reaching postgres directly.
        cmd.current_dir("/").process_group(0).env_remove("PGDATA");
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        cmd
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "could not stop private PostgreSQL");
        }
    }
}

fn run(mut cmd: Command, name: &str) -> Result<Output, LocalPgError> {
    let output = cmd.output().map_err(|e| LocalPgError::Command { command: name.into(), detail: e.to_string() })?;
    if output.status.success() {
        Ok(output)
    } else {
        let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        Err(LocalPgError::Command { command: name.into(), detail })
    }
}

/// `initdb` and `pg_ctl` side by side: on PATH (links resolved), else the
/// newest `/usr/lib/postgresql/<major>/bin` (Debian does not put them on PATH).
pub fn find_bin_dir() -> Result<PathBuf, LocalPgError> {
    find_bin_dir_in(std::env::var_os("PATH"), Path::new("/usr/lib/postgresql"))
}

fn find_bin_dir_in(path: Option<std::ffi::OsString>, debian_root: &Path) -> Result<PathBuf, LocalPgError> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let on_path = path
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .filter_map(|dir| dir.join("pg_ctl").canonicalize().ok())
        .filter_map(|pg_ctl| pg_ctl.parent().map(Path::to_path_buf))
        .find(|dir| has_tools(dir));
    if let Some(dir) = on_path {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(debian_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).ok_or(LocalPgError::NotInstalled)
}

/// The (uid, gid) the server runs as when we run as root; `None` otherwise.
pub fn server_user() -> Result<Option<(u32, u32)>, LocalPgError> {
    Ok(cluster_owner()?.map(|(uid, gid)| (uid.as_raw(), gid.as_raw())))
}

fn cluster_owner() -> Result<Option<(Uid, Gid)>, LocalPgError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres").ok().flatten().ok_or(LocalPgError::NoPostgresUser)?;
    Ok(Some((user.uid, user.gid)))
}

fn create_private_dir(dir: &Path, owner: Option<(Uid, Gid)>) -> Result<(), LocalPgError> {
    let io = |source| LocalPgError::Io { path: dir.to_owned(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    if let Some((uid, gid)) = owner {
        chown(dir, Some(uid), Some(gid)).map_err(|e| io(e.into()))?;
    }
    Ok(())
}

/// Next to the data directory when the path is short enough for a socket,
/// else a directory under /tmp named after the data directory.
fn socket_dir_for(data_dir: &Path) -> PathBuf {
    let beside = data_dir.with_file_name(format!(
        "{}.run",
        data_dir.file_name().unwrap_or(OsStr::new("pg")).to_string_lossy()
    ));
    if beside.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
        return beside;
    }
    use sha2::{Digest, Sha256};
    let tag = hex::encode(&Sha256::digest(data_dir.as_os_str().as_encoded_bytes())[..6]);
    std::env::temp_dir().join(format!("engagetrack-pg-{tag}"))
}

/// Every ancestor must let the postgres user pass (o+x), unless it owns it.
fn check_reachable(dir: &Path) -> Result<(), LocalPgError> {
    let postgres_uid = cluster_owner()?.map(|(u, _)| u.as_raw());
    for ancestor in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor).map_err(|source| LocalPgError::Io { path: ancestor.into(), source })?;
        if meta.mode() & 0o001 == 0 && Some(meta.uid()) != postgres_uid {
            return Err(LocalPgError::Unreachable(dir.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_newest_debian_major_or_names_the_package() {
        let root = tempfile::tempdir().unwrap();
        let empty_path = Some(std::ffi::OsString::from(root.path().join("nothing")));
        let err = find_bin_dir_in(empty_path.clone(), root.path()).unwrap_err();
        assert!(err.to_string().contains("apt-get install postgresql"), "{err}");
        for major in ["9", "15", "13"] {
            let bin = root.path().join(major).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("initdb"), "").unwrap();
            std::fs::write(bin.join("pg_ctl"), "").unwrap();
        }
        assert_eq!(find_bin_dir_in(empty_path, root.path()).unwrap(), root.path().join("15/bin"));
    }

    #[test]
    fn socket_dir_is_short() {
        let short = socket_dir_for(Path::new("/srv/et/.engagetrack/pg"));
        assert_eq!(short, Path::new("/srv/et/.engagetrack/pg.run"));
        let long = Path::new("/very").join("x".repeat(120)).join("pg");
        let dir = socket_dir_for(&long);
        assert!(dir.starts_with(std::env::temp_dir()));
        assert_eq!(dir, socket_dir_for(&long), "stable across runs");
    }
}
