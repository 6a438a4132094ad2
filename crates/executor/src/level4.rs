//! The moderately_sensitive ("level 4") checks (job-runner §5.7).
//!
//! A moderately_sensitive output is copied to the medium-privacy store only if
//! it passes, in this order: size within the limit; else an allowed file type;
//! else, for CSV files, no `patient_id` column and at most the allowed number
//! of data rows (both of the last two may be reported, joined by a comma).
//! The short message goes in results and logs; a longer explanation is written
//! next to where the file would have been, as `<path>.txt`.

use std::io::{self, BufReader, Read};

use crate::types::Level4Limits;
use crate::util::mb;

/// Row and column counts of a CSV file, as Python's `csv.DictReader` sees it:
/// blank lines are skipped; `rows` counts data rows after the header; both are
/// 0 when there is no data row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsvCounts {
    /// Column names of the first non-blank record.
    pub headers: Vec<String>,
    /// Data rows.
    pub rows: u64,
    /// Columns (header fields), 0 if there are no data rows.
    pub cols: u64,
}

/// Outcome of the level-4 checks of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Level4Check {
    /// Short reason(s), joined with `,`; `None` if the file passed.
    pub message: Option<String>,
    /// The explanation to write to `<path>.txt` in the medium store; `None` if passed.
    pub explanation: Option<String>,
    /// CSV data rows, if the file was read as CSV.
    pub row_count: Option<u64>,
    /// CSV columns, if the file was read as CSV.
    pub col_count: Option<u64>,
}

impl Level4Check {
    /// True if the file may go to the medium-privacy store.
    pub fn passed(&self) -> bool {
        self.message.is_none()
    }
}

/// The extension of the last path segment as Python's `PurePath.suffix`
/// gives it: from the last `.` (kept), `""` if none, if the name starts with
/// its only dot, or if it ends with a dot.
pub fn suffix(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rfind('.') {
        Some(i) if i > 0 && i + 1 < name.len() && !name.chars().all(|c| c == '.') => &name[i..],
        _ => "",
    }
}

/// Check the file `path` (relative, for messages) of `size` bytes. `open` is
/// called only if the contents must be read (a CSV within the size limit).
/// A CSV that cannot be read is not counted, as in the reference.
pub fn check_file<R: Read>(
    path: &str,
    size: u64,
    limits: &Level4Limits,
    open: impl FnOnce() -> io::Result<R>,
) -> Level4Check {
    let mut short = Vec::new();
    let mut long = Vec::new();
    let mut check = Level4Check::default();
    let ext = suffix(path);

    if size > limits.max_file_size {
        let (size_mb, limit_mb) = (mb(size), mb(limits.max_file_size));
        short.push(format!(
            "File size of {size_mb}Mb is larger that limit of {limit_mb}Mb."
        ));
        long.push(format!(
            "The file\n\n    {path}\n\nis {size_mb}Mb, more than the {limit_mb}Mb allowed for moderately_sensitive\n\
             files, so it has *not* been copied to the level 4 (medium privacy) store.\n\n\
             Please check that {path} holds only aggregate information and is small\n\
             enough to be checked by output checkers.\n"
        ));
    } else if !limits.file_types.iter().any(|t| t == ext) {
        short.push(format!("File type of {ext} is not valid level 4 file"));
        long.push(format!(
            "The file\n\n    {path}\n\nhas the type {ext:?}, which is not allowed for moderately_sensitive files,\n\
             so it has *not* been copied to the level 4 (medium privacy) store.\n\n\
             Level 4 files must be aggregate information that output checkers can view\n\
             easily. Allowed types: {}.\n",
            limits.file_types.join(" ")
        ));
    } else if ext == ".csv"
        && let Ok(counts) = open().and_then(csv_counts)
    {
        if counts.headers.iter().any(|h| h == "patient_id") {
            short.push("File has patient_id column".to_string());
            long.push(format!(
                    "The file\n\n    {path}\n\nhas a `patient_id` column, so it has *not* been copied to the level 4\n\
                     (medium privacy) store: patient-level data is not allowed there.\n\n\
                     If the file holds patient-level data, mark it `highly_sensitive` in\n\
                     project.yaml; if it is aggregate data, remove the patient_id column.\n"
                ));
        }
        if counts.rows > limits.max_csv_rows {
            short.push(format!(
                "File row count ({}) exceeds maximum allowed rows ({})",
                counts.rows, limits.max_csv_rows
            ));
            long.push(format!(
                    "The file\n\n    {path}\n\nhas {} rows, more than the {} allowed for moderately_sensitive files,\n\
                     so it has *not* been copied to the level 4 (medium privacy) store.\n\n\
                     Please contact tech-support if you need help with this.\n",
                    counts.rows, limits.max_csv_rows
                ));
        }
        check.row_count = Some(counts.rows);
        check.col_count = Some(counts.cols);
    }

    if !short.is_empty() {
        check.message = Some(short.join(","));
        check.explanation = Some(long.join("\n\n"));
    }
    check
}

/// Count the rows and columns of CSV data (comma-separated, `"` quoting with
/// `""` escapes, records ending at `\n`, `\r\n` or `\r` outside quotes).
pub fn csv_counts<R: Read>(reader: R) -> io::Result<CsvCounts> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut buf = vec![0u8; 64 * 1024];
    let mut state = CsvState::default();
    let mut first = true;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        if first {
            first = false;
            if let Some(rest) = chunk.strip_prefix(b"\xEF\xBB\xBF") {
                chunk = rest;
            }
        }
        for &b in chunk {
            state.feed(b);
        }
    }
    state.end_record();
    let headers = state.headers.unwrap_or_default();
    let cols = if state.rows > 0 {
        headers.len() as u64
    } else {
        0
    };
    Ok(CsvCounts {
        headers,
        rows: state.rows,
        cols,
    })
}

#[derive(Default)]
struct CsvState {
    headers: Option<Vec<String>>,
    record: Vec<String>,
    field: Vec<u8>,
    nonempty: bool,
    in_quotes: bool,
    quote_in_quotes: bool,
    rows: u64,
}

impl CsvState {
    fn keep(&self) -> bool {
        self.headers.is_none()
    }

    fn feed(&mut self, b: u8) {
        if self.quote_in_quotes {
            self.quote_in_quotes = false;
            if b == b'"' {
                if self.keep() {
                    self.field.push(b'"');
                }
                return;
            }
            self.in_quotes = false;
        }
        if self.in_quotes {
            if b == b'"' {
                self.quote_in_quotes = true;
            } else if self.keep() {
                self.field.push(b);
            }
            return;
        }
        match b {
            b'"' => {
                self.in_quotes = true;
                self.nonempty = true;
            }
            b',' => {
                self.nonempty = true;
                if self.keep() {
                    let field = String::from_utf8_lossy(&self.field).into_owned();
                    self.record.push(field);
                }
                self.field.clear();
            }
            b'\n' | b'\r' => self.end_record(),
            _ => {
                self.nonempty = true;
                if self.keep() {
                    self.field.push(b);
                }
            }
        }
    }

    fn end_record(&mut self) {
        if self.nonempty {
            if self.headers.is_none() {
                let field = String::from_utf8_lossy(&self.field).into_owned();
                self.record.push(field);
                self.headers = Some(std::mem::take(&mut self.record));
            } else {
                self.rows += 1;
            }
        }
        self.record.clear();
        self.field.clear();
        self.nonempty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(s: &str) -> CsvCounts {
        csv_counts(s.as_bytes()).unwrap()
    }

    fn check(path: &str, contents: &str, limits: &Level4Limits) -> Level4Check {
        check_file(path, contents.len() as u64, limits, || {
            Ok(contents.as_bytes())
        })
    }

    #[test]
    fn csv_rows_and_columns() {
        let c = counts("a,b,c\n1,2,3\n4,5,6\n");
        assert_eq!(c.headers, ["a", "b", "c"]);
        assert_eq!((c.rows, c.cols), (2, 3));
        // no trailing newline, CRLF, blank lines skipped
        assert_eq!(counts("a,b\r\n1,2\r\n\r\n3,4").rows, 2);
        // header only, or empty
        assert_eq!((counts("a,b\n").rows, counts("a,b\n").cols), (0, 0));
        assert_eq!(counts("").headers, Vec::<String>::new());
    }

    #[test]
    fn csv_quotes_hide_separators_and_newlines() {
        let c = counts("\"pat,ient\",\"x\"\"y\"\n\"multi\nline\",2\n3,4\n");
        assert_eq!(c.headers, ["pat,ient", "x\"y"]);
        assert_eq!(c.rows, 2);
        let c = counts("\"patient_id\",b\n1,2\n");
        assert_eq!(c.headers, ["patient_id", "b"]);
    }

    #[test]
    fn csv_byte_order_mark_is_ignored() {
        assert_eq!(
            counts("\u{feff}patient_id,x\n1,2\n").headers[0],
            "patient_id"
        );
    }

    #[test]
    fn suffixes_like_python() {
        assert_eq!(suffix("output/a.csv"), ".csv");
        assert_eq!(suffix("output/a.csv.gz"), ".gz");
        assert_eq!(suffix("output/.hidden"), "");
        assert_eq!(suffix("output/noext"), "");
        assert_eq!(suffix("out.d/noext"), "");
        assert_eq!(suffix("output/a."), "");
    }

    #[test]
    fn passing_files() {
        let limits = Level4Limits::default();
        let c = check("output/table.csv", "a,b\n1,2\n", &limits);
        assert!(c.passed());
        assert_eq!((c.row_count, c.col_count), (Some(1), Some(2)));
        let c = check("output/plot.png", "PNG", &limits);
        assert!(c.passed());
        assert_eq!(c.row_count, None);
    }

    #[test]
    fn too_big() {
        let limits = Level4Limits {
            max_file_size: 512 * 1024,
            ..Level4Limits::default()
        };
        let c = check_file("output/output.txt", 1024 * 1024, &limits, || Ok(&b""[..]));
        assert_eq!(
            c.message.as_deref(),
            Some("File size of 1.0Mb is larger that limit of 0.5Mb.")
        );
        let text = c.explanation.unwrap();
        assert!(
            text.contains("output/output.txt") && text.contains("1.0Mb") && text.contains("0.5Mb")
        );
        // size wins over type: the type is not checked
        let c = check_file("output/x.dta", 1024 * 1024, &limits, || Ok(&b""[..]));
        assert!(c.message.unwrap().starts_with("File size of"));
    }

    #[test]
    fn wrong_type() {
        let c = check("output/model.dta", "x", &Level4Limits::default());
        assert_eq!(
            c.message.as_deref(),
            Some("File type of .dta is not valid level 4 file")
        );
        let c = check("output/noext", "x", &Level4Limits::default());
        assert_eq!(
            c.message.as_deref(),
            Some("File type of  is not valid level 4 file")
        );
    }

    #[test]
    fn patient_id_and_rows_are_both_reported() {
        let limits = Level4Limits {
            max_csv_rows: 2,
            ..Level4Limits::default()
        };
        let c = check("output/p.csv", "patient_id,age\n1,2\n3,4\n5,6\n", &limits);
        assert_eq!(
            c.message.as_deref(),
            Some("File has patient_id column,File row count (3) exceeds maximum allowed rows (2)")
        );
        assert_eq!(c.row_count, Some(3));
        let text = c.explanation.unwrap();
        assert!(text.contains("patient_id") && text.contains("3 rows"));
    }

    #[test]
    fn default_row_limit_is_5000() {
        let mut csv = String::from("a\n");
        for i in 0..5000 {
            csv.push_str(&format!("{i}\n"));
        }
        assert!(check("o/t.csv", &csv, &Level4Limits::default()).passed());
        csv.push_str("x\n");
        assert_eq!(
            check("o/t.csv", &csv, &Level4Limits::default())
                .message
                .as_deref(),
            Some("File row count (5001) exceeds maximum allowed rows (5000)")
        );
    }

    #[test]
    fn a_column_merely_containing_patient_id_is_fine() {
        assert!(
            check(
                "o/t.csv",
                "patient_id_count,n\n1,2\n",
                &Level4Limits::default()
            )
            .passed()
        );
    }
}
