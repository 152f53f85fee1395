//! Golden files for the CLI's output: `tests/golden/NAME.txt` holds what a person sees, with
//! what changes from run to run (times, ports, tokens, ids, durations) replaced by
//! placeholders. `UPDATE_GOLDEN=1 cargo test -p renderburst --test cli` rewrites them; read
//! the diff before committing it.

#![allow(dead_code)] // Each test file uses its own subset.

use std::path::PathBuf;

/// Compares `actual` (normalized) with the golden file `name`, or writes it under
/// `UPDATE_GOLDEN=1`.
pub fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    let actual = normalize(actual);
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to write it. Output was:\n{actual}",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs (UPDATE_GOLDEN=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// Replaces what varies between runs: RFC 3339 times → `<TIME>`, loopback ports →
/// `<PORT>`, `rb_…` tokens → `<TOKEN>`, UUIDs → `<ID>`, and the digits of
/// `reconciler:`/`azure:` lines and of `in N s` → `N`.
pub fn normalize(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = replace_times(line);
        l = replace_after(&l, "127.0.0.1:", "<PORT>", |c| c.is_ascii_digit());
        l = replace_after(&l, "rb_", "<TOKEN>", |c| c.is_ascii_alphanumeric());
        l = replace_uuids(&l);
        l = replace_private_ips(&l);
        if l.starts_with("reconciler:") || l.starts_with("azure:") {
            l = digits_to_n(&l);
        }
        if let Some(i) = l.rfind(" in ")
            && l.ends_with(" s")
            && l[i + 4..l.len() - 2].chars().all(|c| c.is_ascii_digit())
        {
            l = format!("{} in N s", &l[..i]);
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn digits_to_n(line: &str) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

/// `prefix` followed by one or more `keep` characters → `prefix` + `placeholder`
/// (`rb_` + `<TOKEN>`, `127.0.0.1:` + `<PORT>`).
fn replace_after(line: &str, prefix: &str, placeholder: &str, keep: fn(char) -> bool) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(prefix) {
        let after = &rest[i + prefix.len()..];
        let n = after.chars().take_while(|c| keep(*c)).count();
        out.push_str(&rest[..i + prefix.len()]);
        if n > 0 {
            out.push_str(placeholder);
        }
        rest = &after[n..];
    }
    out.push_str(rest);
    out
}

/// `2026-01-02T03:04:05Z`, `2026-01-02T03:04:05.123+01:00` → `<TIME>`.
fn replace_times(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if let Some(len) = time_at(&b[i..]) {
            out.push_str("<TIME>");
            i += len;
        } else {
            let c = line[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn time_at(b: &[u8]) -> Option<usize> {
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < shape.len() {
        return None;
    }
    for (x, s) in b.iter().zip(shape) {
        let ok = if *s == b'd' {
            x.is_ascii_digit()
        } else {
            x == s
        };
        if !ok {
            return None;
        }
    }
    let mut n = shape.len();
    if b.get(n) == Some(&b'.') {
        n += 1;
        while b.get(n).is_some_and(u8::is_ascii_digit) {
            n += 1;
        }
    }
    match b.get(n) {
        Some(b'Z') => n += 1,
        Some(b'+' | b'-') if b.len() >= n + 6 => n += 6,
        _ => {}
    }
    Some(n)
}

fn replace_uuids(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let is_uuid = b.len() >= i + 36
            && b[i..i + 36].iter().enumerate().all(|(k, c)| {
                if [8, 13, 18, 23].contains(&k) {
                    *c == b'-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        if is_uuid {
            out.push_str("<ID>");
            i += 36;
        } else {
            let c = line[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Addresses in 10.0.0.0/8 (the nodes' private IPs, given in the order creates reach the
/// subnet) → `<IP>`, padded to the address's width so table columns stay aligned.
fn replace_private_ips(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("10.") {
        let boundary = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_digit() && c != '.');
        let n = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .count();
        let candidate = rest[i..i + n].trim_end_matches('.');
        out.push_str(&rest[..i]);
        if boundary && candidate.parse::<std::net::Ipv4Addr>().is_ok() {
            let at_end = rest[i + candidate.len()..].is_empty();
            out.push_str(&if at_end {
                "<IP>".to_owned()
            } else {
                format!("{:<1$}", "<IP>", candidate.len())
            });
            rest = &rest[i + candidate.len()..];
        } else {
            out.push_str("10.");
            rest = &rest[i + 3..];
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn normalize_replaces_what_varies() {
    let text = "a 2026-01-02T03:04:05Z b 2026-01-02T03:04:05+01:00 c\n\
                http://127.0.0.1:40123/x rb_abcDEF123 7a1b2c3d-0000-4000-8000-0123456789ab\n\
                reconciler: activation 12 at x, took 3 ms\n\
                pool maya deleted in 4 s\n\
                maya-00001  10.80.0.4  v10.2 110.1.2.3 10.80.0.12\n";
    assert_eq!(
        normalize(text),
        "a <TIME> b <TIME> c\n\
         http://127.0.0.1:<PORT>/x rb_<TOKEN> <ID>\n\
         reconciler: activation N at x, took N ms\n\
         pool maya deleted in N s\n\
         maya-00001  <IP>       v10.2 110.1.2.3 <IP>\n"
    );
}
