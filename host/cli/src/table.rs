//! Plain-text tables for humans; `--json` prints the rows as JSON for scripts instead.
//!
//! Cells hold stored data that files and plugins control: each is cleaned of control characters
//! and cut to [`MAX_CELL`] characters, and padding never relies on `format!` widths (which panic
//! past 65,535), so no stored value can break a table.

use sandflow_core::text::{clean, shorten};
use serde::Serialize;

use crate::out::outln;

/// The widest a cell may be: a long failure reason or id is cut, and `--json` has it whole.
pub const MAX_CELL: usize = 120;

/// Prints `rows` under `headers`, columns padded to their widest cell.
pub fn print(headers: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> =
        rows.iter().map(|row| row.iter().map(|c| shorten(&clean(c, false), MAX_CELL).into_owned()).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            text.extend(std::iter::repeat_n(' ', width.saturating_sub(cell.chars().count())));
        }
        outln!("{}", text.trim_end());
    };
    line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for row in &rows {
        line(row);
    }
}

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A timestamp for tables: `2026-11-29 01:02:03`.
pub fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// An optional timestamp, `-` when absent.
pub fn opt_time(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.as_ref().map_or_else(|| "-".to_string(), time)
}

#[cfg(test)]
mod tests {
    use sandflow_core::text::{clean, shorten};

    #[test]
    fn a_cell_is_cleaned_then_cut() {
        let cell = shorten(&clean(&format!("\x1b[31m{}", "x".repeat(70_000)), false), super::MAX_CELL).into_owned();
        assert!(cell.starts_with("\\u{1b}[31mxxx"), "{cell}");
        assert!(cell.chars().count() < super::MAX_CELL + 30, "{cell}");
    }
}
