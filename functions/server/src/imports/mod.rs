//! Imports: data brought in from Plausible, Google Analytics 4 and Umami.
//! It is kept apart from raw `events`, in the `imported_*` aggregate tables
//! (migration V12, mirroring Plausible's own: totals, not averages), and the
//! stats engine adds it only when a query asks (`include.imports`).
//!
//! Parsers are pure (bytes → [`RowSet`] or an [`ImportError`] naming the file,
//! line and column); [`store`] writes a whole import in one transaction and
//! replaces an earlier import of the same site, source and range.

pub mod aggregate;
pub mod ga4;
pub mod plausible;
pub mod store;
pub mod umami;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Largest upload (a zip, a JSON report or an NDJSON/CSV file).
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;
/// Zip bombs: at most this many entries and this much uncompressed data.
pub const MAX_ZIP_ENTRIES: usize = 64;
pub const MAX_UNCOMPRESSED_BYTES: u64 = 512 * 1024 * 1024;
/// Longest text a dimension value may have (longer ones are cut).
const MAX_VALUE_CHARS: usize = 2_000;

/// Which tool the data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SourceKind {
    /// Plausible's CSV export zip.
    #[serde(rename = "plausible")]
    Plausible,
    /// GA4 Data API runReport / batchRunReports JSON.
    #[serde(rename = "ga4")]
    Ga4,
    /// GA4 BigQuery event export, newline-delimited JSON.
    #[serde(rename = "ga4-bigquery")]
    Ga4BigQuery,
    /// Umami: the website_event CSV ("data export").
    #[serde(rename = "umami")]
    Umami,
    /// Umami: read directly from its PostgreSQL database.
    #[serde(rename = "umami-db")]
    UmamiDb,
}

impl SourceKind {
    pub const ALL: [SourceKind; 5] =
        [SourceKind::Plausible, SourceKind::Ga4, SourceKind::Ga4BigQuery, SourceKind::Umami, SourceKind::UmamiDb];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Plausible => "plausible",
            SourceKind::Ga4 => "ga4",
            SourceKind::Ga4BigQuery => "ga4-bigquery",
            SourceKind::Umami => "umami",
            SourceKind::UmamiDb => "umami-db",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ImportError> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            ImportError::Invalid(format!("unknown import source `{s}` (one of plausible, ga4, ga4-bigquery, umami, umami-db)"))
        })
    }

    /// Parses an uploaded file of this source (not `umami-db`, which is read
    /// from a database, see [`umami::read_database`]).
    pub fn parse_file(self, file_name: &str, bytes: &[u8]) -> Result<RowSet, ImportError> {
        if bytes.len() > MAX_UPLOAD_BYTES {
            return Err(ImportError::TooLarge(format!("{file_name} is {} bytes; at most {MAX_UPLOAD_BYTES} are taken", bytes.len())));
        }
        match self {
            SourceKind::Plausible => plausible::parse_zip(file_name, bytes),
            SourceKind::Ga4 => ga4::parse_report(file_name, bytes),
            SourceKind::Ga4BigQuery => ga4::parse_bigquery(file_name, bytes),
            SourceKind::Umami => umami::parse_file(file_name, bytes),
            SourceKind::UmamiDb => Err(ImportError::Invalid("umami-db reads a database URL, not a file".into())),
        }
    }
}

/// The imported_* tables. Each has its dimension columns and its metric
/// columns (totals), in the order [`ImportedRow`] carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Visitors,
    Sources,
    Pages,
    EntryPages,
    ExitPages,
    CustomEvents,
    Locations,
    Devices,
    Browsers,
    OperatingSystems,
}

/// The metric columns most tables share.
const VISIT_METRICS: &[&str] = &["visitors", "visits", "visit_duration", "bounces", "pageviews"];

impl Table {
    pub const ALL: [Table; 10] = [
        Table::Visitors,
        Table::Sources,
        Table::Pages,
        Table::EntryPages,
        Table::ExitPages,
        Table::CustomEvents,
        Table::Locations,
        Table::Devices,
        Table::Browsers,
        Table::OperatingSystems,
    ];

    /// The name in Plausible's export and ours without `imported_`.
    pub fn name(self) -> &'static str {
        match self {
            Table::Visitors => "visitors",
            Table::Sources => "sources",
            Table::Pages => "pages",
            Table::EntryPages => "entry_pages",
            Table::ExitPages => "exit_pages",
            Table::CustomEvents => "custom_events",
            Table::Locations => "locations",
            Table::Devices => "devices",
            Table::Browsers => "browsers",
            Table::OperatingSystems => "operating_systems",
        }
    }

    pub fn sql_table(self) -> &'static str {
        match self {
            Table::Visitors => "imported_visitors",
            Table::Sources => "imported_sources",
            Table::Pages => "imported_pages",
            Table::EntryPages => "imported_entry_pages",
            Table::ExitPages => "imported_exit_pages",
            Table::CustomEvents => "imported_custom_events",
            Table::Locations => "imported_locations",
            Table::Devices => "imported_devices",
            Table::Browsers => "imported_browsers",
            Table::OperatingSystems => "imported_operating_systems",
        }
    }

    pub fn dims(self) -> &'static [&'static str] {
        match self {
            Table::Visitors => &[],
            Table::Sources => &["source", "referrer", "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "channel"],
            Table::Pages => &["hostname", "page"],
            Table::EntryPages => &["entry_page"],
            Table::ExitPages => &["exit_page"],
            Table::CustomEvents => &["name", "link_url", "path"],
            Table::Locations => &["country", "region", "city"],
            Table::Devices => &["device"],
            Table::Browsers => &["browser", "browser_version"],
            Table::OperatingSystems => &["operating_system", "operating_system_version"],
        }
    }

    pub fn metrics(self) -> &'static [&'static str] {
        match self {
            Table::Pages => &[
                "visitors",
                "visits",
                "pageviews",
                "total_scroll_depth",
                "total_scroll_depth_visits",
                "total_time_on_page",
                "total_time_on_page_visits",
            ],
            Table::EntryPages => &["visitors", "entrances", "visit_duration", "bounces", "pageviews"],
            Table::ExitPages => &["visitors", "exits", "visit_duration", "bounces", "pageviews"],
            Table::CustomEvents => &["visitors", "events"],
            _ => VISIT_METRICS,
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn metric_index(self, metric: &str) -> Option<usize> {
        self.metrics().iter().position(|m| *m == metric)
    }
}

/// One row of an imported_* table: the day, the dimension values in
/// [`Table::dims`] order and the totals in [`Table::metrics`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRow {
    pub table: Table,
    pub date: NaiveDate,
    pub dims: Vec<String>,
    pub metrics: Vec<i64>,
}

/// The rows of an import, merged by key (two source rows that map to the
/// same values, e.g. GA4's `(not set)` and `(none)`, add up), and the days
/// the files say they cover.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowSet {
    rows: BTreeMap<(Table, NaiveDate, Vec<String>), Vec<i64>>,
    /// The range the files name (Plausible's file names), if they do.
    pub declared_range: Option<(NaiveDate, NaiveDate)>,
    /// What was read but not kept, said once per kind.
    pub warnings: Vec<String>,
}

impl RowSet {
    /// Adds a row; dimension values are trimmed and cut to a sane length.
    pub fn add(&mut self, table: Table, date: NaiveDate, dims: Vec<String>, metrics: Vec<i64>) {
        debug_assert_eq!(dims.len(), table.dims().len());
        debug_assert_eq!(metrics.len(), table.metrics().len());
        let dims = dims.into_iter().map(|d| d.trim().chars().take(MAX_VALUE_CHARS).collect()).collect();
        let entry = self.rows.entry((table, date, dims)).or_insert_with(|| vec![0; table.metrics().len()]);
        for (a, b) in entry.iter_mut().zip(metrics) {
            *a = a.saturating_add(b.max(0));
        }
    }

    pub fn declare_range(&mut self, start: NaiveDate, end: NaiveDate) {
        self.declared_range = Some(match self.declared_range {
            Some((a, b)) => (a.min(start), b.max(end)),
            None => (start, end),
        });
    }

    pub fn warn(&mut self, warning: String) {
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn rows(&self) -> impl Iterator<Item = ImportedRow> + '_ {
        self.rows.iter().map(|((table, date, dims), metrics)| ImportedRow {
            table: *table,
            date: *date,
            dims: dims.clone(),
            metrics: metrics.clone(),
        })
    }

    /// The first and last day any row has.
    pub fn data_range(&self) -> Option<(NaiveDate, NaiveDate)> {
        let mut dates = self.rows.keys().map(|k| k.1);
        let first = dates.next()?;
        Some(dates.fold((first, first), |(a, b), d| (a.min(d), b.max(d))))
    }

    /// The sum of one metric over one table (tests and progress messages).
    pub fn total(&self, table: Table, metric: &str) -> i64 {
        let Some(i) = table.metric_index(metric) else { return 0 };
        self.rows.iter().filter(|(k, _)| k.0 == table).map(|(_, m)| m[i]).sum()
    }

    /// Only the rows within `[start, end]` stay (a user-given range narrower than the file).
    pub fn keep_range(&mut self, start: NaiveDate, end: NaiveDate) {
        self.rows.retain(|k, _| k.1 >= start && k.1 <= end);
    }
}

/// Why an import was refused. Every variant says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A value or a structure in a file is wrong, at this place.
    #[error("{file}, line {line}{}: {reason}", column.map(|c| format!(", column {c}")).unwrap_or_default())]
    Parse { file: String, line: u64, column: Option<u64>, reason: String },
    /// The archive itself (not a zip, an unsafe entry name, no usable entry).
    #[error("{file}: {reason}")]
    Archive { file: String, reason: String },
    #[error("too large: {0}")]
    TooLarge(String),
    /// The request (source, range, URL) is wrong.
    #[error("{0}")]
    Invalid(String),
    /// Umami's database could not be read.
    #[error("the Umami database: {0}")]
    Database(String),
    #[error("no such import")]
    NotFound,
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

impl ImportError {
    /// The caller's mistake (a 4xx), not ours.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, ImportError::Postgres(_) | ImportError::Pool(_))
    }

    pub fn parse(file: &str, line: u64, column: Option<u64>, reason: impl Into<String>) -> Self {
        ImportError::Parse { file: file.to_owned(), line, column, reason: reason.into() }
    }
}

/// Text of a file: UTF-8 with or without a BOM, or UTF-16 with its BOM
/// (Excel re-saves). Anything else is refused at the line it breaks on.
pub fn decode_text<'a>(file: &str, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, str>, ImportError> {
    if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(bytes)
        && encoding != encoding_rs::UTF_8
    {
        let (text, had_errors) = encoding.decode_without_bom_handling(&bytes[bom..]);
        if had_errors {
            return Err(ImportError::parse(file, 1, None, format!("not valid {}", encoding.name())));
        }
        return Ok(std::borrow::Cow::Owned(text.into_owned()));
    }
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(body).map(std::borrow::Cow::Borrowed).map_err(|e| {
        let before = &body[..e.valid_up_to()];
        let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        let column = before.iter().rev().take_while(|b| **b != b'\n').count() as u64 + 1;
        ImportError::parse(file, line, Some(column), "not UTF-8 text (export it as UTF-8)")
    })
}

/// `desktop` → `Desktop`: device categories as Plausible shows them.
pub fn capitalise(v: &str) -> String {
    let mut c = v.trim().chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().chain(c.flat_map(char::to_lowercase)).collect())
}

/// A day as the tools write it: `YYYY-MM-DD` or `YYYYMMDD`.
pub fn parse_day(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    match s.len() {
        10 => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
        8 => NaiveDate::parse_from_str(s, "%Y%m%d").ok(),
        _ => None,
    }
}

/// A count as the tools write it: an integer, or a float that is rounded
/// (GA4 sends every value as a string, some of them `"12.0"`).
pub fn parse_count(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    if let Ok(n) = s.parse::<i64>() {
        return (n >= 0).then_some(n);
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite() && *f >= 0.0 && *f < 9.0e18).map(|f| f.round() as i64)
}

/// The entries of a zip archive, checked before anything is inflated: the
/// entry count, the declared sizes (and the real ones, while reading), and
/// names that are plain file names (no `..`, no `/`).
pub fn read_zip(file: &str, bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ImportError> {
    use std::io::Read;
    let bad = |reason: String| ImportError::Archive { file: file.to_owned(), reason };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| bad(format!("not a readable zip archive ({e})")))?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(bad(format!("{} entries; at most {MAX_ZIP_ENTRIES} are taken", archive.len())));
    }
    let mut total: u64 = 0;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(|e| bad(format!("entry {i} is unreadable ({e})")))?;
        let name = entry.name().map_err(|e| bad(format!("entry {i} has an unreadable name ({e})")))?.into_owned();
        if entry.is_dir() {
            continue;
        }
        if name.contains("..") || name.contains('/') || name.contains('\\') {
            return Err(bad(format!("entry `{name}` is not a plain file name")));
        }
        total = total.saturating_add(entry.size());
        if total > MAX_UNCOMPRESSED_BYTES {
            return Err(bad(format!("more than {MAX_UNCOMPRESSED_BYTES} bytes once unpacked")));
        }
        let mut data = Vec::new();
        // The declared size may lie: read at most what is left of the budget.
        let budget = MAX_UNCOMPRESSED_BYTES - (total - entry.size());
        entry.take(budget + 1).read_to_end(&mut data).map_err(|e| bad(format!("entry `{name}` is unreadable ({e})")))?;
        if data.len() as u64 > budget {
            return Err(bad(format!("more than {MAX_UNCOMPRESSED_BYTES} bytes once unpacked")));
        }
        out.push((name, data));
    }
    Ok(out)
}

/// A CSV reader over text with a header row, columns found by name.
pub struct CsvColumns {
    index: std::collections::HashMap<String, usize>,
}

impl CsvColumns {
    pub fn new(headers: &csv::StringRecord) -> Self {
        let index = headers.iter().enumerate().map(|(i, h)| (h.trim().trim_start_matches('\u{feff}').to_lowercase(), i)).collect();
        CsvColumns { index }
    }

    pub fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The field under `name`, or "" when the column is missing (old exports).
    pub fn get<'r>(&self, record: &'r csv::StringRecord, name: &str) -> &'r str {
        self.index.get(name).and_then(|i| record.get(*i)).unwrap_or("")
    }

    /// The 1-based column of `name`, for error messages.
    pub fn column(&self, name: &str) -> Option<u64> {
        self.index.get(name).map(|i| *i as u64 + 1)
    }
}

/// A CSV reader as the exports are written (RFC 4180, header row).
pub fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new().has_headers(true).flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes())
}

/// A csv error at its position in `file`.
pub fn csv_error(file: &str, e: csv::Error) -> ImportError {
    let line = e.position().map_or(0, |p| p.line());
    ImportError::parse(file, line, None, format!("not valid CSV ({e})"))
}

/// Runs one import: records it (`running`), reads it with `read`, keeps
/// the rows inside `range` (when given; else the files' own range), writes
/// them in one transaction and answers the finished import. A refusal marks
/// the import failed with its reason and leaves no rows.
pub async fn run(
    pool: &deadpool_postgres::Pool,
    new: store::NewImport,
    range: Option<(NaiveDate, NaiveDate)>,
    read: impl std::future::Future<Output = Result<RowSet, ImportError>>,
) -> Result<store::Import, ImportError> {
    if let Some((a, b)) = range
        && b < a
    {
        return Err(ImportError::Invalid(format!("the range ends ({b}) before it starts ({a})")));
    }
    let today = chrono::Utc::now().date_naive();
    let import = store::begin(pool, &new, range.unwrap_or((today, today))).await?;
    let result = async {
        let mut set = read.await?;
        let range = match range {
            Some((a, b)) => {
                let before = set.len();
                set.keep_range(a, b);
                if set.len() < before {
                    set.warn(format!("{} rows outside {a}..{b} were left out", before - set.len()));
                }
                (a, b)
            }
            None => set.declared_range.or_else(|| set.data_range()).ok_or_else(|| ImportError::Invalid("the file holds no rows".into()))?,
        };
        if set.is_empty() {
            return Err(ImportError::Invalid(format!("no rows to import between {} and {}", range.0, range.1)));
        }
        store::write(pool, &import, range, &set).await
    }
    .await;
    if let Err(e) = &result {
        tracing::info!(import = %import.id, error = %e, "import failed");
        if let Err(mark) = store::fail(pool, import.id, &e.to_string()).await {
            tracing::warn!(import = %import.id, error = %mark, "could not mark the import failed");
        }
    }
    result
}

/// [`run`] for an uploaded file: parsed off the async threads.
pub async fn run_file(
    pool: &deadpool_postgres::Pool,
    new: store::NewImport,
    range: Option<(NaiveDate, NaiveDate)>,
    file_name: String,
    bytes: Vec<u8>,
) -> Result<store::Import, ImportError> {
    let source = new.source;
    run(pool, new, range, async move {
        tokio::task::spawn_blocking(move || source.parse_file(&file_name, &bytes))
            .await
            .map_err(|e| ImportError::Invalid(format!("the parser stopped: {e}")))?
    })
    .await
}

/// A zip of Stored entries, as Plausible writes its export (tests).
#[cfg(test)]
pub(crate) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored)).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        parse_day(s).unwrap()
    }

    #[test]
    fn rows_with_the_same_key_add_up_and_ranges_widen() {
        let mut set = RowSet::default();
        set.add(Table::Devices, day("2024-01-02"), vec!["Mobile".into()], vec![1, 2, 30, 1, 4]);
        set.add(Table::Devices, day("2024-01-02"), vec![" Mobile ".into()], vec![1, 1, 10, 0, 1]);
        set.add(Table::Devices, day("2024-01-05"), vec!["Desktop".into()], vec![5, 5, 5, 5, 5]);
        assert_eq!(set.len(), 2);
        assert_eq!(set.total(Table::Devices, "visits"), 8);
        assert_eq!(set.data_range(), Some((day("2024-01-02"), day("2024-01-05"))));
        set.declare_range(day("2024-01-01"), day("2024-01-03"));
        set.declare_range(day("2023-12-31"), day("2024-01-02"));
        assert_eq!(set.declared_range, Some((day("2023-12-31"), day("2024-01-03"))));
        set.keep_range(day("2024-01-03"), day("2024-01-31"));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn text_is_utf8_with_or_without_bom_or_utf16_with_bom() {
        assert_eq!(decode_text("a.csv", b"\xEF\xBB\xBFdate,x\n").unwrap(), "date,x\n");
        assert_eq!(decode_text("a.csv", b"date,x\n").unwrap(), "date,x\n");
        let utf16: Vec<u8> = [0xFF, 0xFE].into_iter().chain("d,é\n".encode_utf16().flat_map(u16::to_le_bytes)).collect();
        assert_eq!(decode_text("a.csv", &utf16).unwrap(), "d,é\n");
        let e = decode_text("a.csv", b"date,x\n2024-01-01,\xFF\n").unwrap_err().to_string();
        assert_eq!(e, "a.csv, line 2, column 12: not UTF-8 text (export it as UTF-8)");
    }

    #[test]
    fn counts_and_days_as_the_tools_write_them() {
        assert_eq!(parse_count("42"), Some(42));
        assert_eq!(parse_count("41.6"), Some(42));
        assert_eq!(parse_count(""), Some(0));
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("many"), None);
        assert_eq!(parse_day("20240131"), parse_day("2024-01-31"));
        assert_eq!(parse_day("2024-1-31"), None);
    }

    #[test]
    fn zip_entries_with_paths_or_too_many_are_refused() {
        let ok = read_zip("x.zip", &zip_of(&[("a.csv", b"1"), ("b.csv", b"22")])).unwrap();
        assert_eq!(ok.iter().map(|(n, d)| (n.as_str(), d.len())).collect::<Vec<_>>(), vec![("a.csv", 1), ("b.csv", 2)]);
        for name in ["../a.csv", "dir/a.csv", "a\\..\\b.csv"] {
            let e = read_zip("x.zip", &zip_of(&[(name, b"1")])).unwrap_err().to_string();
            assert!(e.contains("not a plain file name"), "{name}: {e}");
        }
        let many: Vec<(String, &[u8])> = (0..=MAX_ZIP_ENTRIES).map(|i| (format!("{i}.csv"), &b"x"[..])).collect();
        let many: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        assert!(read_zip("x.zip", &zip_of(&many)).unwrap_err().to_string().contains("entries"));
        assert!(read_zip("x.zip", b"PK not really").unwrap_err().to_string().starts_with("x.zip: not a readable zip"));
    }
}
