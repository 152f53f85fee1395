//! Parsers for client arguments whose mistakes deserve a sentence: the API's address, a
//! request's lifetime, a token's role. clap prints their errors as `invalid value 'X' for
//! '--flag': <ours>`, so ours say what to type instead.

use clap::ValueEnum;

use crate::client::parse_duration;

/// Longest lifetime of a node request: the API refuses more (its `MAX_TTL_SECONDS`, which
/// the API crate keeps private); said here so the client can name the limit.
pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// `--api`: a URL, or for a loopback address a bare `HOST:PORT`, which gets `http://` (the
/// daemon's default on loopback). A bare address beyond loopback is refused rather than
/// guessed: such a daemon serves HTTPS unless told otherwise, and guessing `http://` would
/// send the token in clear to whatever answers.
pub fn parse_api(text: &str) -> Result<String, String> {
    let t = text.trim().trim_end_matches('/');
    if let Some((scheme, rest)) = t.split_once("://") {
        return match scheme {
            "http" | "https" if !rest.is_empty() => Ok(t.to_owned()),
            "http" | "https" => Err(format!("{text:?} names no host")),
            _ => Err(format!(
                "{text:?}: use an http:// or https:// URL, such as http://127.0.0.1:7878"
            )),
        };
    }
    if t.is_empty() {
        return Err("give the daemon's URL, such as http://127.0.0.1:7878".into());
    }
    let host = match t.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => t.rsplit_once(':').map_or(t, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(format!("http://{t}"))
    } else {
        Err(format!(
            "{text:?} has no scheme: add https:// (or http:// if the daemon serves plain HTTP), such as https://{t}"
        ))
    }
}

/// `--ttl`: a duration (`90s`, `30m`, `2h`, `1h30m`, `1d`) of at most 7 days.
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let seconds = parse_duration(text)?;
    if seconds > MAX_TTL_SECONDS {
        return Err(format!(
            "{text} is longer than the limit of 7 days (a request lives at most 7d; make a new one when it ends)"
        ));
    }
    Ok(seconds)
}

/// What a token may do (DESIGN.md section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Everything: pools, schedules, tokens, drain.
    Admin,
    /// Node requests and heartbeats, and reading.
    Requester,
    /// Reading only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Requester => "requester",
            Role::Viewer => "viewer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_address_gets_http() {
        assert_eq!(
            parse_api("127.0.0.1:7979").as_deref(),
            Ok("http://127.0.0.1:7979")
        );
        assert_eq!(
            parse_api("localhost:7878").as_deref(),
            Ok("http://localhost:7878")
        );
        assert_eq!(parse_api("[::1]:7878").as_deref(), Ok("http://[::1]:7878"));
        assert_eq!(
            parse_api("https://render.example:7878/").as_deref(),
            Ok("https://render.example:7878")
        );
    }

    #[test]
    fn a_remote_address_without_scheme_says_what_to_add() {
        let err = parse_api("10.0.0.5:7878").unwrap_err();
        assert!(
            err.contains("add https://") && err.contains("http://"),
            "{err}"
        );
        let err = parse_api("ftp://x").unwrap_err();
        assert!(err.contains("http://"), "{err}");
    }

    #[test]
    fn ttl_names_its_limit() {
        assert_eq!(parse_ttl("7d"), Ok(7 * 86400));
        let err = parse_ttl("8d").unwrap_err();
        assert!(err.contains("limit of 7 days"), "{err}");
        assert!(parse_ttl("0m").is_err());
    }
}
