//! How the client prints: a stdout that a closed pipe ends quietly, tables whose columns
//! fit their content, and times and pool conditions in words rather than JSON.
//!
//! Pure helpers (they return strings) so unit tests can pin them; only [`line`] writes.

use std::fmt::Display;
use std::io::Write;

use serde_json::Value;

/// Writes one line to stdout. A reader that went away (`renderburst node list | head -1`)
/// ends the process with status 0 and no message, as `ls` or `cat` do: the output was not
/// wanted any more, which is not an error. Other write errors end it with status 1.
///
/// `println!` would panic instead (exit 101 with a backtrace), because Rust ignores SIGPIPE
/// and turns it into an `EPIPE` error that `println!` does not expect.
pub fn line(text: impl Display) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        exit_on_write_error(&e);
    }
}

/// Writes text as is (no newline added): scripts printed exactly as a node gets them.
pub fn raw(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        exit_on_write_error(&e);
    }
}

fn exit_on_write_error(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to stdout: {e}");
    std::process::exit(1);
}

/// `println!` for the client's output, through [`line`].
#[macro_export]
macro_rules! outln {
    () => { $crate::output::line("") };
    ($($arg:tt)*) => { $crate::output::line(format_args!($($arg)*)) };
}

/// The panic hook's part of the same rule, for output still written with `println!`:
/// `true` for the panic `println!` raises when stdout is a closed pipe.
pub fn is_closed_pipe_panic(message: &str) -> bool {
    message.starts_with("failed printing to stdout") && message.contains("Broken pipe")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table printed with columns as wide as their widest cell (header included), two spaces
/// apart; the last column is not padded, so long conditions do not push lines wider.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[(&'static str, Align)]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra ones dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines, without trailing spaces.
    pub fn lines(&self) -> Vec<String> {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self
            .headers
            .iter()
            .map(|(h, _)| h.chars().count())
            .collect();
        for row in &self.rows {
            for (i, cell) in row.iter().take(n).enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let render = |cells: Vec<&str>| {
            let mut text = String::new();
            for (i, ((_, align), width)) in self.headers.iter().zip(&widths).enumerate() {
                let cell = cells.get(i).copied().unwrap_or("");
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = width.saturating_sub(cell.chars().count());
                match align {
                    Align::Right => {
                        text.push_str(&" ".repeat(pad));
                        text.push_str(cell);
                    }
                    Align::Left if i + 1 == n => text.push_str(cell),
                    Align::Left => {
                        text.push_str(cell);
                        text.push_str(&" ".repeat(pad));
                    }
                }
            }
            text.trim_end().to_owned()
        };
        let mut out = vec![render(self.headers.iter().map(|(h, _)| *h).collect())];
        for row in &self.rows {
            out.push(render(row.iter().map(String::as_str).collect()));
        }
        out
    }

    pub fn print(&self) {
        for l in self.lines() {
            line(l);
        }
    }
}

/// A time as the API gives it (RFC 3339 text), without JSON's quotes; `-` for none.
pub fn time(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A text field, `-` when absent or empty.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Null | Value::String(_) => "-".to_owned(),
        other => other.to_string(),
    }
}

/// `yes` / `no` for a boolean, `-` for anything else.
pub fn yes_no(v: &Value) -> String {
    match v.as_bool() {
        Some(true) => "yes".to_owned(),
        Some(false) => "no".to_owned(),
        None => "-".to_owned(),
    }
}

/// One pool condition as `(type, message, since)`, whichever shape the daemon sends: the
/// older `"Type: message"` string or the object `{"type", "message", "since"}`.
/// The only place that knows both shapes.
pub fn condition_parts(c: &Value) -> (String, String, Option<String>) {
    match c {
        // The daemon's own parser of the producers' convention (`rb_core::Condition`).
        Value::String(s) => {
            let c = rb_core::Condition::parse(s, None);
            (c.kind, c.message, None)
        }
        Value::Object(o) => {
            let field = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let since = o.get("since").filter(|v| !v.is_null()).map(time);
            (field("type"), field("message"), since)
        }
        other => (other.to_string(), String::new(), None),
    }
}

/// A condition as a line without its time: `Blocked: InvalidResourceReference: ...`.
pub fn condition_line(c: &Value) -> String {
    let (ty, message, _) = condition_parts(c);
    if message.is_empty() {
        ty
    } else {
        format!("{ty}: {message}")
    }
}

/// A condition in full: `Blocked: InvalidResourceReference: ... (since 2026-05-01T12:00:00Z)`.
pub fn condition(c: &Value) -> String {
    let mut out = condition_line(c);
    if let Some(since) = condition_parts(c).2 {
        out.push_str(&format!(" (since {since})"));
    }
    out
}

/// A pool status's conditions, in full.
pub fn conditions(status: &Value) -> Vec<String> {
    status["conditions"]
        .as_array()
        .map(|a| a.iter().map(condition).collect())
        .unwrap_or_default()
}

/// A pool status's condition types alone (`NoCapacity,AtMax`), for tables; `-` for none.
pub fn condition_types(status: &Value) -> String {
    let types: Vec<String> = status["conditions"]
        .as_array()
        .map(|a| a.iter().map(|c| condition_parts(c).0).collect())
        .unwrap_or_default();
    if types.is_empty() {
        "-".to_owned()
    } else {
        types.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_fit_their_widest_cell() {
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("N", Align::Right),
            ("NOTE", Align::Left),
        ]);
        t.row(vec![
            "tvm6b8c3f0a5d74e1f4b8a9f1e3d2c7b0a66_20250101t000000z".into(),
            "12".into(),
            "x".into(),
        ]);
        t.row(vec!["a".into(), "3".into(), String::new()]);
        assert_eq!(
            t.lines(),
            vec![
                "NAME                                                    N  NOTE",
                "tvm6b8c3f0a5d74e1f4b8a9f1e3d2c7b0a66_20250101t000000z  12  x",
                "a                                                       3",
            ]
        );
    }

    #[test]
    fn times_have_no_quotes() {
        assert_eq!(time(&json!("2026-01-02T03:04:05Z")), "2026-01-02T03:04:05Z");
        assert_eq!(time(&Value::Null), "-");
    }

    #[test]
    fn conditions_read_the_same_in_both_shapes() {
        let old = json!("NoCapacity: Standard_D8s_v5 has no capacity in westeurope");
        let new = json!({"type": "NoCapacity", "message": "Standard_D8s_v5 has no capacity in westeurope",
                         "since": "2026-01-02T03:04:05Z"});
        assert_eq!(
            condition(&old),
            "NoCapacity: Standard_D8s_v5 has no capacity in westeurope"
        );
        assert_eq!(
            condition(&new),
            "NoCapacity: Standard_D8s_v5 has no capacity in westeurope (since 2026-01-02T03:04:05Z)"
        );
        assert_eq!(condition(&json!("AtMax")), "AtMax");
        let status = json!({"conditions": [old, new, "AtMax"]});
        assert_eq!(condition_types(&status), "NoCapacity,NoCapacity,AtMax");
        assert_eq!(condition_types(&json!({"conditions": []})), "-");
    }

    #[test]
    fn only_the_closed_pipe_panic_is_quiet() {
        assert!(is_closed_pipe_panic(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_closed_pipe_panic("index out of bounds"));
    }
}
