//! The blob store port: exports handed out as links, and the geo databases
//! read at cold start. In AWS: S3 (`adapters::aws::s3`, keys under
//! `exports/` and `geo/` of `ENGAGETRACK_BUCKET`); locally: a folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the blob store is unavailable: {0}")]
    Unavailable(String),
    #[error("`{0}` is not a blob key (letters, digits, `-_.` and `/`-separated segments)")]
    BadKey(String),
    #[error("no blob `{0}`")]
    NotFound(String),
}

/// What a downloader is told about a blob.
#[derive(Debug, Clone)]
pub struct BlobMeta {
    pub content_type: String,
    /// The file name a browser saves it under (`Content-Disposition: attachment`).
    pub filename: Option<String>,
}

/// A link anyone holding it may fetch the blob with, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobLink {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Where exports are written. `prefix/...` keys only; see [`check_key`].
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync {
    async fn put(&self, key: &str, bytes: Vec<u8>, meta: &BlobMeta) -> Result<(), BlobError>;
    async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError>;
    /// A presigned GET link valid for `expires_in`, or `None` when this store
    /// cannot hand out links (the local folder: it has no server of its own).
    async fn link(&self, key: &str, expires_in: Duration) -> Result<Option<BlobLink>, BlobError>;
}

/// Exports are fetched within minutes, so links die soon; the bucket's
/// lifecycle rule removes the objects after a day.
pub const EXPORT_LINK_TTL: Duration = Duration::from_secs(15 * 60);

/// How an export is handed over: the file in the answer (the default, and
/// all a local run offers), or `link`: written to the blob store and answered
/// with a presigned link that expires. In the cloud ask for `link`, since an
/// API Gateway answer is capped at a few megabytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    #[default]
    Direct,
    Link,
}

/// The answer to an export asked for with `delivery=link`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ExportLink {
    /// GET this within the time below; no credentials needed.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Writes one export and returns a link to it, or `None` when the store
/// hands out no links.
pub async fn export_link(store: &dyn BlobStore, filename: &str, content_type: &str, bytes: Vec<u8>) -> Result<Option<ExportLink>, BlobError> {
    let key = export_key(filename);
    // Signing needs no object, so a store without links writes nothing.
    let Some(link) = store.link(&key, EXPORT_LINK_TTL).await? else { return Ok(None) };
    store.put(&key, bytes, &BlobMeta { content_type: content_type.to_owned(), filename: Some(filename.to_owned()) }).await?;
    Ok(Some(ExportLink { url: link.url, expires_at: link.expires_at }))
}

/// The 400 for `delivery=link` where the store gives no links.
pub const NO_LINKS: &str = "download links need an S3 bucket (ENGAGETRACK_BUCKET), which this server has not; ask without `delivery=link` to get the file itself";

/// A fresh key for one export: `exports/<random>/<filename>`. The random
/// segment makes the link unguessable and keeps exports apart.
pub fn export_key(filename: &str) -> String {
    let name: String = filename.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    format!("exports/{}/{}", uuid::Uuid::new_v4().simple(), name.trim_start_matches('.'))
}

/// Keys are ours, never a caller's, but the local folder turns them into
/// paths, so `..`, absolute paths and odd characters are refused anyway.
pub fn check_key(key: &str) -> Result<(), BlobError> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty() && seg != "." && seg != ".." && seg.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if ok { Ok(()) } else { Err(BlobError::BadKey(key.to_owned())) }
}

/// The local adapter: one file per key under a folder.
pub struct LocalFolder {
    root: PathBuf,
}

impl LocalFolder {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io(e: std::io::Error) -> BlobError {
    BlobError::Unavailable(e.to_string())
}

#[async_trait::async_trait]
impl BlobStore for LocalFolder {
    async fn put(&self, key: &str, bytes: Vec<u8>, _meta: &BlobMeta) -> Result<(), BlobError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
        }
        tokio::fs::write(&path, bytes).await.map_err(io)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::NotFound(key.to_owned())),
            Err(e) => Err(io(e)),
        }
    }

    async fn link(&self, key: &str, _expires_in: Duration) -> Result<Option<BlobLink>, BlobError> {
        check_key(key)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_leave_the_folder() {
        for bad in ["", "../x", "a/../b", "/etc/passwd", "a//b", "a/b c", "exports/./x"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        let key = export_key("../example.com \"stats\".csv");
        check_key(&key).unwrap();
        assert!(key.starts_with("exports/") && key.ends_with("_example.com__stats_.csv"), "{key}");
    }

    #[tokio::test]
    async fn local_folder_round_trip_without_links() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFolder::new(dir.path());
        let meta = BlobMeta { content_type: "text/csv".into(), filename: None };
        store.put("exports/a/b.csv", b"x,y".to_vec(), &meta).await.unwrap();
        assert_eq!(store.get("exports/a/b.csv").await.unwrap(), b"x,y");
        assert!(matches!(store.get("exports/a/none.csv").await, Err(BlobError::NotFound(_))));
        assert_eq!(store.link("exports/a/b.csv", EXPORT_LINK_TTL).await.unwrap(), None);
    }
}
