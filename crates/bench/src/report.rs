//! Output: a plain table per scenario, and the scenario's JSON object (one per line with
//! `--json`).

use std::fmt::Write;

use serde_json::Value;

pub struct Row(pub Vec<String>);

pub struct Table {
    pub title: String,
    pub header: Vec<&'static str>,
    pub rows: Vec<Row>,
    /// Free lines printed under the table.
    pub notes: Vec<String>,
}

impl Table {
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for Row(cells) in &self.rows {
            for (w, c) in widths.iter_mut().zip(cells) {
                *w = (*w).max(c.len());
            }
        }
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.title);
        let line = |cells: Vec<&str>| {
            let mut l = String::new();
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                if i == 0 {
                    let _ = write!(l, "{c:<w$}");
                } else {
                    let _ = write!(l, "  {c:>w$}");
                }
            }
            l
        };
        let _ = writeln!(out, "{}", line(self.header.clone()));
        let _ = writeln!(
            out,
            "{}",
            "-".repeat(widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1))
        );
        for Row(cells) in &self.rows {
            let _ = writeln!(out, "{}", line(cells.iter().map(String::as_str).collect()));
        }
        for n in &self.notes {
            let _ = writeln!(out, "{n}");
        }
        out
    }
}

/// A number for a table cell: `-` for null.
pub fn num(v: &Value, decimals: usize) -> String {
    match v.as_f64() {
        Some(f) => format!("{f:.decimals$}"),
        None => "-".to_owned(),
    }
}
