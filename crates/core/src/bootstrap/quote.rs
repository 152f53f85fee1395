//! The quoting functions: every value that enters a rendered script goes through one of these
//! (or through the YAML serializer for cloud-init).

/// POSIX shell single quoting.
pub fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// PowerShell single quoting.
pub fn powershell(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A value for a systemd `ExecStart=` inside double quotes.
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
