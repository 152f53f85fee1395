//! The grammars of bootstrap fields: what a mount target, a share source, a user name or an
//! advertised URL may be. Validation refuses a value outside its grammar with an error naming
//! the field; rendering quotes every value anyway ([`super::quote`]).

use std::net::{IpAddr, Ipv6Addr};

use super::validate::is_host_name;

pub(super) fn is_env_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.len() <= 128
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Linux and Windows both accept these: letters, digits, '_', '-', '.', starting with a
/// letter, at most 20 characters (Windows' limit).
pub(super) fn is_user_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.len() <= 20
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// An account that connects to a share or joins a domain: `render`, `STUDIO\render` or
/// `render@studio.local` (letters, digits and `._-@\`, starting with a letter or digit).
pub(super) fn is_account_name(s: &str) -> bool {
    (1..=104).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '\\'))
}

/// A Windows drive letter: `^[A-Z]:$`.
pub(super) fn is_drive(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 2 && b[0].is_ascii_uppercase() && b[1] == b':'
}

/// An absolute Linux path: `^/[A-Za-z0-9._/-]*$` with no `.` or `..` component.
fn is_linux_path(s: &str) -> bool {
    s.starts_with('/')
        && s.len() <= 1024
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && !s.split('/').any(|p| p == "." || p == "..")
}

/// A Linux mount target: `^/[A-Za-z0-9._/-]+$`, no `.` or `..` component, not `/` itself.
pub(super) fn is_mount_target(s: &str) -> bool {
    is_linux_path(s) && s.trim_end_matches('/').len() > 1
}

/// `//server/share[/path]` or `\\server\share[\path]`, normalized to forward slashes: a host
/// name or IP address, then components of letters, digits and `._$-` (`projects$` is a hidden
/// share), none of them `.` or `..`.
pub(super) fn smb_parts(source: &str) -> Option<(String, String)> {
    let s = source.replace('\\', "/");
    let rest = s.strip_prefix("//")?;
    let (host, path) = rest.split_once('/')?;
    if !is_host_name(host) && host.parse::<IpAddr>().is_err() {
        return None;
    }
    let component = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '$' | '-'))
    };
    if path.len() > 1024 || !path.split('/').all(component) {
        return None;
    }
    Some((host.to_string(), path.to_string()))
}

/// `server:/export`: a host name, an IPv4 address or a bracketed IPv6 address, then an
/// absolute path of letters, digits and `._/-`.
pub(super) fn is_nfs_source(s: &str) -> bool {
    let (host, path) = match s.strip_prefix('[') {
        Some(v6) => match v6.split_once("]:") {
            Some((addr, path)) if addr.parse::<Ipv6Addr>().is_ok() => ("v6", path),
            _ => return false,
        },
        None => match s.split_once(':') {
            Some((host, path)) => (host, path),
            None => return false,
        },
    };
    (host == "v6" || is_host_name(host)) && is_linux_path(path)
}

/// An organizational unit's distinguished name: `OU=Render Nodes,OU=Farm,DC=studio,DC=local`
/// (letters, digits, spaces and `=,._-`).
pub(super) fn is_ou(s: &str) -> bool {
    (1..=512).contains(&s.len())
        && s.to_ascii_uppercase().starts_with("OU=")
        && s.trim() == s
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '=' | ',' | '.' | '_' | '-'))
}

pub(super) fn is_storage_account(s: &str) -> bool {
    (3..=24).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// File shares and containers: 3 to 63 lower-case letters, digits and '-'.
pub(super) fn is_share_name(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !s.ends_with('-')
        && !s.contains("--")
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks the URL nodes call back (`[server] advertise_url`): `http://` or `https://`, a host
/// (letters, digits, `.` and `-`, or a bracketed IPv6 address), an optional port, and an
/// optional path of letters, digits and `._~/-`. Nothing else: no user, query, fragment,
/// quote, space, `$` or backtick. The value reaches nodes' scripts (quoted there as well).
pub fn validate_advertise_url(s: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{s:?} {why}: give http(s)://host[:port][/path], the host a DNS name or an IP address"
        ))
    };
    if s.len() > 2048 {
        return bad("is too long");
    }
    let Some(rest) = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
    else {
        return bad("does not start with http:// or https://");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, port)) => (addr.parse::<Ipv6Addr>().is_ok(), port),
            None => (false, ""),
        },
        None => {
            let (host, port) = authority.split_at(authority.find(':').unwrap_or(authority.len()));
            (is_host_name(host), port)
        }
    };
    if !host_ok {
        return bad("has no valid host");
    }
    if !port.is_empty() {
        let valid = port.strip_prefix(':').is_some_and(|p| {
            (1..=5).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok_and(|n| n != 0)
        });
        if !valid {
            return bad("has an invalid port");
        }
    }
    let path_ok = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '/' | '-'))
        && !path.split('/').any(|p| p == "." || p == "..");
    if !path_ok {
        return bad("has a path with characters other than letters, digits and ._~/-");
    }
    Ok(())
}
