//! The quoting functions: every value that enters a rendered script or file goes through
//! exactly one of these, chosen by the language that reads it. Keep them few, small and
//! audited; `tests/injection.rs` runs their output through the real shell, through a tokenizer
//! of PowerShell's string rules and through a YAML 1.1 reader.
//!
//! Validation ([`super::grammar`]) narrows what fields with a grammar may hold; quoting is what
//! makes a value harmless whatever it holds. Neither relies on the other.

use serde::Serialize;

/// POSIX shell: one single-quoted word. Inside single quotes every byte but `'` is literal in
/// every POSIX shell, and a `'` is written as `'\''` (close, escaped quote, reopen).
///
/// A shell word cannot hold NUL: callers pass values validated or resolved without one.
pub fn sh(s: &str) -> String {
    debug_assert!(!s.contains('\0'), "a shell word cannot hold NUL");
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Whether PowerShell ends a single-quoted string at `c`: the ASCII apostrophe and the four
/// typographic single quotes (U+2018, U+2019, U+201A, U+201B) all do.
fn is_powershell_single_quote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
}

/// PowerShell: an expression whose value is `s`, in printable ASCII.
///
/// Printable ASCII is single-quoted (nothing is special inside but the quote characters, each
/// doubled). Anything else, including line breaks and the typographic quotes, is carried as
/// base64 of its UTF-8 bytes and decoded on the node: the script stays ASCII, so PowerShell 5.1
/// reads it the same whatever code page it assumes for a file without a byte-order mark, and no
/// character can end the string early.
pub fn powershell(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('\'');
        for c in s.chars() {
            if is_powershell_single_quote(c) {
                out.push(c);
            }
            out.push(c);
        }
        out.push('\'');
        out
    } else {
        format!(
            "([System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String('{}')))",
            super::base64_encode(s.as_bytes())
        )
    }
}

/// systemd: one argument of `ExecStart=` in double quotes (`\` and `"` escaped, `$` and `%`
/// doubled so that systemd expands neither). Values hold no line break (validated).
pub fn systemd_exec(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("$$"),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// systemd: a value of an `EnvironmentFile=` line, in double quotes (`\` and `"` escaped;
/// systemd expands nothing in environment files). Values hold no line break (validated).
pub fn systemd_env(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A YAML document from a typed value. Strings that a YAML 1.1 reader (cloud-init's PyYAML,
/// blobfuse2's reader) would take for a boolean, number, date or null (`on`, `no`, `y`, `~`,
/// `0x10`, `1e3`, `2026-01-01`...) are quoted; long one-line strings are never folded.
pub fn yaml<T: Serialize>(value: &T) -> Result<String, String> {
    let options = serde_saphyr::ser_options! {
        yaml_12: false,
        folded_wrap_chars: usize::MAX,
    };
    serde_saphyr::to_string_with_options(value, options).map_err(|e| e.to_string())
}

/// Text for a comment line, not a value: letters, digits and `._/+-` kept, anything else
/// (line breaks above all) shown as `_`.
pub fn comment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '+' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
