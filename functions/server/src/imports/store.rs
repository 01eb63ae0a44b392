//! The SQL of imports: the `imports` row (status and progress, written on
//! its own connection so it can be polled while the data goes in) and the
//! imported_* rows (all of one import in ONE transaction, which also
//! removes an earlier import of the same site, source and range).

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use uuid::Uuid;

use super::{ImportError, RowSet, SourceKind, Table};

/// Rows per INSERT; progress is written after each batch.
const BATCH_ROWS: usize = 2_000;

/// An import as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Import {
    pub id: Uuid,
    pub site_id: Uuid,
    #[schema(value_type = String, example = "plausible")]
    pub source: String,
    pub range_start: NaiveDate,
    pub range_end: NaiveDate,
    /// queued | running | done | failed
    pub status: String,
    /// Rows written so far, of `rows_total`.
    pub rows_done: i64,
    pub rows_total: i64,
    pub bytes_done: i64,
    pub bytes_total: i64,
    pub error: Option<String>,
    pub warnings: Vec<String>,
    /// The file name, or the database host, it came from.
    pub origin: String,
    pub started_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, site_id, source, range_start, range_end, status, rows_done, rows_total, bytes_done, bytes_total, error, warnings, origin,
                       started_by, created_at, started_at, finished_at";

impl Import {
    fn from_row(r: &tokio_postgres::Row) -> Self {
        Import {
            id: r.get(0),
            site_id: r.get(1),
            source: r.get(2),
            range_start: r.get(3),
            range_end: r.get(4),
            status: r.get(5),
            rows_done: r.get(6),
            rows_total: r.get(7),
            bytes_done: r.get(8),
            bytes_total: r.get(9),
            error: r.get(10),
            warnings: r.get(11),
            origin: r.get(12),
            started_by: r.get(13),
            created_at: r.get(14),
            started_at: r.get(15),
            finished_at: r.get(16),
        }
    }
}

/// What starts an import.
#[derive(Debug, Clone)]
pub struct NewImport {
    pub site_id: Uuid,
    pub source: SourceKind,
    pub origin: String,
    pub started_by: Option<Uuid>,
    pub bytes_total: i64,
}

/// The `imports` row of an import that is about to be read: `running`,
/// with a placeholder range until the data says its own.
pub async fn begin(pool: &Pool, new: &NewImport, range: (NaiveDate, NaiveDate)) -> Result<Import, ImportError> {
    let db = pool.get().await?;
    let row = db
        .query_one(
            &format!(
                "INSERT INTO imports (id, site_id, source, range_start, range_end, status, origin, started_by, bytes_total, started_at)
                 VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, now()) RETURNING {COLUMNS}"
            ),
            &[&Uuid::new_v4(), &new.site_id, &new.source.as_str(), &range.0, &range.1, &new.origin, &new.started_by, &new.bytes_total],
        )
        .await?;
    Ok(Import::from_row(&row))
}

/// Marks an import failed with its reason (on its own connection: the
/// import's transaction has been rolled back, so none of its rows exist).
pub async fn fail(pool: &Pool, id: Uuid, error: &str) -> Result<(), ImportError> {
    let db = pool.get().await?;
    db.execute("UPDATE imports SET status = 'failed', error = $2, finished_at = now() WHERE id = $1", &[&id, &error]).await?;
    Ok(())
}

async fn progress(pool: &Pool, id: Uuid, rows_done: i64, bytes_done: i64) -> Result<(), ImportError> {
    let db = pool.get().await?;
    db.execute("UPDATE imports SET rows_done = $2, bytes_done = $3 WHERE id = $1", &[&id, &rows_done, &bytes_done]).await?;
    Ok(())
}

/// Writes every row of `set` for `import` in one transaction, replacing any
/// earlier import of the same site, source and range, and marks it done.
/// On an error nothing of it stays (the caller marks it failed).
pub async fn write(pool: &Pool, import: &Import, range: (NaiveDate, NaiveDate), set: &RowSet) -> Result<Import, ImportError> {
    let total = set.len() as i64;
    let bytes_total = import.bytes_total;
    {
        let db = pool.get().await?;
        db.execute(
            "UPDATE imports SET rows_total = $2, range_start = $3, range_end = $4, warnings = $5 WHERE id = $1",
            &[&import.id, &total, &range.0, &range.1, &set.warnings],
        )
        .await?;
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // One writer per site, source and range at a time: two re-imports
    // racing would otherwise both survive.
    let lock = format!("imports/{}/{}/{}/{}", import.site_id, import.source, range.0, range.1);
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&lock]).await?;
    let replaced = tx
        .execute(
            "DELETE FROM imports WHERE site_id = $1 AND source = $2 AND range_start = $3 AND range_end = $4 AND id <> $5 AND status = 'done'",
            &[&import.site_id, &import.source, &range.0, &range.1, &import.id],
        )
        .await?;
    let mut done: i64 = 0;
    let rows: Vec<_> = set.rows().collect();
    for table in Table::ALL {
        let of_table: Vec<_> = rows.iter().filter(|r| r.table == table).collect();
        for batch in of_table.chunks(BATCH_ROWS) {
            insert_batch(&tx, import, table, batch).await?;
            done += batch.len() as i64;
            // Outside the transaction, so a poller sees it move.
            let bytes = if total == 0 { bytes_total } else { bytes_total * done / total };
            // Best effort: a poller missing one step is no reason to stop the import.
            if let Err(e) = progress(pool, import.id, done, bytes).await {
                tracing::debug!(import = %import.id, error = %e, "import progress not written");
            }
        }
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE imports SET status = 'done', rows_done = $2, bytes_done = bytes_total, finished_at = now(), error = NULL
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&import.id, &done],
        )
        .await?;
    tx.commit().await?;
    tracing::info!(import = %import.id, site = %import.site_id, source = %import.source, rows = done, replaced, "import done");
    Ok(Import::from_row(&row))
}

/// One multi-row INSERT: every column as an array, unnested.
async fn insert_batch(
    tx: &tokio_postgres::Transaction<'_>,
    import: &Import,
    table: Table,
    batch: &[&super::ImportedRow],
) -> Result<(), ImportError> {
    let dims = table.dims();
    let metrics = table.metrics();
    let dates: Vec<NaiveDate> = batch.iter().map(|r| r.date).collect();
    let dim_values: Vec<Vec<&str>> = (0..dims.len()).map(|i| batch.iter().map(|r| r.dims[i].as_str()).collect()).collect();
    let metric_values: Vec<Vec<i64>> = (0..metrics.len()).map(|i| batch.iter().map(|r| r.metrics[i]).collect()).collect();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&import.site_id, &import.id, &dates];
    let mut unnest = vec!["$3::date[]".to_owned()];
    for v in &dim_values {
        params.push(v);
        unnest.push(format!("${}::text[]", params.len()));
    }
    for v in &metric_values {
        params.push(v);
        unnest.push(format!("${}::bigint[]", params.len()));
    }
    let columns: Vec<&str> = ["date"].into_iter().chain(dims.iter().copied()).chain(metrics.iter().copied()).collect();
    let sql = format!(
        "INSERT INTO {} (site_id, import_id, {}) SELECT $1::uuid, $2::uuid, * FROM unnest({})",
        table.sql_table(),
        columns.join(", "),
        unnest.join(", ")
    );
    tx.execute(&sql, &params).await?;
    Ok(())
}

pub async fn list(pool: &Pool, site_id: Uuid) -> Result<Vec<Import>, ImportError> {
    let db = pool.get().await?;
    let rows =
        db.query(&format!("SELECT {COLUMNS} FROM imports WHERE site_id = $1 ORDER BY created_at DESC, id DESC"), &[&site_id]).await?;
    Ok(rows.iter().map(Import::from_row).collect())
}

pub async fn get(pool: &Pool, site_id: Uuid, id: Uuid) -> Result<Import, ImportError> {
    let db = pool.get().await?;
    let row = db.query_opt(&format!("SELECT {COLUMNS} FROM imports WHERE site_id = $1 AND id = $2"), &[&site_id, &id]).await?;
    row.map(|r| Import::from_row(&r)).ok_or(ImportError::NotFound)
}

/// Deletes an import and (by cascade) all its rows.
pub async fn delete(pool: &Pool, site_id: Uuid, id: Uuid) -> Result<(), ImportError> {
    let db = pool.get().await?;
    match db.execute("DELETE FROM imports WHERE site_id = $1 AND id = $2", &[&site_id, &id]).await? {
        0 => Err(ImportError::NotFound),
        _ => Ok(()),
    }
}

/// How many imported rows an import holds, over all tables (tests, the API's detail).
pub async fn stored_rows(pool: &Pool, id: Uuid) -> Result<i64, ImportError> {
    let db = pool.get().await?;
    let sql =
        Table::ALL.iter().map(|t| format!("(SELECT count(*) FROM {} WHERE import_id = $1)", t.sql_table())).collect::<Vec<_>>().join(" + ");
    Ok(db.query_one(&format!("SELECT ({sql})::bigint"), &[&id]).await?.get(0))
}

/// A live site by its id or domain (the oldest of that domain), for the CLI.
pub async fn site_by_ref(pool: &Pool, site: &str) -> Result<Option<Uuid>, ImportError> {
    let db = pool.get().await?;
    let by_id = Uuid::parse_str(site).ok();
    let row = db
        .query_opt(
            "SELECT id FROM sites WHERE deleted_at IS NULL AND (id = $1 OR ($1::uuid IS NULL AND domain = lower($2))) ORDER BY created_at LIMIT 1",
            &[&by_id, &site],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
