//! Plausible's CSV export: a zip of `imported_<table>_<YYYYMMDD>_<YYYYMMDD>.csv`
//! files (ClickHouse CSVWithNames: a header row, RFC 4180 quoting, dates as
//! YYYY-MM-DD). Columns are matched by header name, so the old and new
//! column sets both read; a missing metric column is 0. A single CSV (not
//! zipped) of one table is taken too.

use super::{CsvColumns, ImportError, RowSet, Table, csv_error, csv_reader, decode_text, parse_count, parse_day, read_zip};

/// Old names of today's columns (exports before the time-on-page change).
const ALIASES: &[(Table, &str, &str)] = &[
    (Table::Pages, "total_time_on_page", "time_on_page"),
    (Table::Pages, "total_scroll_depth", "scroll_depth"),
    (Table::Pages, "total_scroll_depth_visits", "pageleave_visitors"),
];

pub fn parse_zip(file_name: &str, bytes: &[u8]) -> Result<RowSet, ImportError> {
    let mut set = RowSet::default();
    if !bytes.starts_with(b"PK") {
        // One CSV on its own, named as inside the zip.
        if !parse_csv(file_name, bytes, &mut set)? {
            return Err(ImportError::Archive {
                file: file_name.to_owned(),
                reason: "neither a zip archive nor an imported_<table>_….csv file".into(),
            });
        }
        return Ok(set);
    }
    let entries = read_zip(file_name, bytes)?;
    let mut used = 0;
    for (name, data) in &entries {
        if !name.to_lowercase().ends_with(".csv") {
            set.warn(format!("{name}: not a CSV file, skipped"));
            continue;
        }
        if parse_csv(name, data, &mut set)? {
            used += 1;
        }
    }
    if used == 0 {
        return Err(ImportError::Archive {
            file: file_name.to_owned(),
            reason: "no imported_*.csv file in the archive (is this a Plausible CSV export?)".into(),
        });
    }
    Ok(set)
}

/// `imported_pages_20240101_20240131.csv` → (pages, its range); the
/// `imported_` prefix is optional, as Plausible's importer has it.
fn table_of(name: &str) -> Option<(Table, Option<(chrono::NaiveDate, chrono::NaiveDate)>)> {
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s).to_lowercase();
    let stem = stem.strip_prefix("imported_").unwrap_or(&stem);
    let parts: Vec<&str> = stem.rsplitn(3, '_').collect();
    if let [end, start, table] = parts[..]
        && let (Some(s), Some(e)) = (parse_day(start), parse_day(end))
    {
        return Table::from_name(table).map(|t| (t, Some((s, e))));
    }
    Table::from_name(stem).map(|t| (t, None))
}

/// Reads one table's file into `set`; false when the name is no table of ours.
fn parse_csv(name: &str, bytes: &[u8], set: &mut RowSet) -> Result<bool, ImportError> {
    let Some((table, range)) = table_of(name) else {
        set.warn(format!("{name}: not one of Plausible's imported_* tables, skipped"));
        return Ok(false);
    };
    if let Some((s, e)) = range {
        if e < s {
            return Err(ImportError::parse(name, 0, None, "the file name's range ends before it starts"));
        }
        set.declare_range(s, e);
    }
    let text = decode_text(name, bytes)?;
    let mut reader = csv_reader(&text);
    let headers = reader.headers().map_err(|e| csv_error(name, e))?.clone();
    let cols = CsvColumns::new(&headers);
    if !cols.has("date") {
        return Err(ImportError::parse(name, 1, None, "no `date` column in the header row"));
    }
    if !table.metrics().iter().any(|m| cols.has(m)) {
        return Err(ImportError::parse(name, 1, None, format!("none of the columns {} in the header row", table.metrics().join(", "))));
    }
    let metric_column = |m: &'static str| -> &'static str {
        if cols.has(m) {
            return m;
        }
        ALIASES.iter().find(|(t, new, old)| *t == table && *new == m && cols.has(old)).map_or(m, |(_, _, old)| old)
    };
    let metric_columns: Vec<&str> = table.metrics().iter().map(|m| metric_column(m)).collect();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(name, e))?;
        let line = record.position().map_or(0, |p| p.line());
        let raw_date = cols.get(&record, "date");
        let date = parse_day(raw_date)
            .ok_or_else(|| ImportError::parse(name, line, cols.column("date"), format!("`{raw_date}` is not a date (YYYY-MM-DD)")))?;
        let dims = table.dims().iter().map(|d| cols.get(&record, d).to_owned()).collect();
        let metrics = metric_columns
            .iter()
            .map(|m| {
                let raw = cols.get(&record, m);
                parse_count(raw)
                    .ok_or_else(|| ImportError::parse(name, line, cols.column(m), format!("`{m}` is `{raw}`, not a non-negative number")))
            })
            .collect::<Result<Vec<i64>, _>>()?;
        set.add(table, date, dims, metrics);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
        let bytes: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (*n, d.as_bytes())).collect();
        crate::imports::zip_of(&bytes)
    }

    #[test]
    fn an_export_reads_by_header_name_with_old_and_new_columns() {
        let zip = zip_of(&[
            (
                "imported_visitors_20240101_20240131.csv",
                "date,visitors,pageviews,bounces,visits,visit_duration\n2024-01-01,10,30,4,12,600\n2024-01-02,5,9,1,6,120\n",
            ),
            // Columns in another order, one missing: matched by name.
            (
                "imported_sources_20240101_20240131.csv",
                "date,source,visitors,visits,referrer\n2024-01-01,Google,7,8,\"www.google.com, search\"\n",
            ),
            // The old pages columns (time_on_page, no visits).
            (
                "pages_20240101_20240131.csv",
                "date,hostname,page,visitors,pageviews,exits,time_on_page\n2024-01-01,example.com,/,9,20,5,300\n",
            ),
            ("README.txt", "hello"),
        ]);
        let set = parse_zip("example_com_20240201.zip", &zip).unwrap();
        assert_eq!(set.total(Table::Visitors, "visitors"), 15);
        assert_eq!(set.total(Table::Visitors, "visit_duration"), 720);
        assert_eq!(set.total(Table::Sources, "visits"), 8);
        assert_eq!(set.total(Table::Pages, "total_time_on_page"), 300);
        let source = set.rows().find(|r| r.table == Table::Sources).unwrap();
        assert_eq!(source.dims[..2], ["Google".to_owned(), "www.google.com, search".to_owned()]);
        assert_eq!(set.declared_range, Some((parse_day("2024-01-01").unwrap(), parse_day("2024-01-31").unwrap())));
        assert_eq!(set.warnings, vec!["README.txt: not a CSV file, skipped".to_owned()]);
    }

    #[test]
    fn a_bad_value_is_named_by_file_line_and_column() {
        let zip = zip_of(&[(
            "imported_devices_20240101_20240131.csv",
            "date,device,visitors,visits\n2024-01-01,Mobile,3,3\n2024-01-02,Desktop,x,1\n",
        )]);
        let e = parse_zip("a.zip", &zip).unwrap_err().to_string();
        assert_eq!(e, "imported_devices_20240101_20240131.csv, line 3, column 3: `visitors` is `x`, not a non-negative number");
        let zip = zip_of(&[("imported_devices_20240101_20240131.csv", "date,device,visitors\n01/02/2024,Mobile,3\n")]);
        let e = parse_zip("a.zip", &zip).unwrap_err().to_string();
        assert_eq!(e, "imported_devices_20240101_20240131.csv, line 2, column 1: `01/02/2024` is not a date (YYYY-MM-DD)");
        let zip = zip_of(&[("imported_devices_20240101_20240131.csv", "date,device,visitors\n2024-01-01,\"Mob\nile,3\n")]);
        assert!(parse_zip("a.zip", &zip).is_ok(), "a quoted newline is a value, not a break");
        let zip = zip_of(&[("notes.csv", "a,b\n")]);
        assert!(parse_zip("a.zip", &zip).unwrap_err().to_string().contains("no imported_*.csv file"));
    }

    #[test]
    fn a_single_csv_is_taken_too() {
        let set = parse_zip(
            "imported_browsers_20240101_20240102.csv",
            b"date,browser,browser_version,visitors,visits,visit_duration,bounces,pageviews\n2024-01-01,Firefox,121.0,2,2,30,1,3\n",
        )
        .unwrap();
        assert_eq!(set.total(Table::Browsers, "pageviews"), 3);
    }
}
