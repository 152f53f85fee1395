//! Pool conditions: what an admin should know about a pool (why it is not at its desired
//! count, what is holding it). Producers (the planners, the controller) write the text
//! convention `"Type: message"`; the controller turns each into a typed [`Condition`] at one
//! place, adding `since` (when that type of condition appeared on the pool), which is what
//! the API shows (`{"type", "message", "since"}`).

use serde::{Deserialize, Serialize};

use crate::UnixSeconds;
use crate::offerings::format_utc;

/// One condition of a pool, as the API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// Stable identifier: `Blocked`, `BackingOff`, `NoCapacity`, `AtMax`, `SizeUnavailable`...
    #[serde(rename = "type")]
    pub kind: String,
    /// What a person reads.
    pub message: String,
    /// When this type of condition appeared on the pool (RFC 3339, UTC); stays the same while
    /// the condition persists, even if its message changes. Null for statuses written before
    /// conditions had a time.
    pub since: Option<String>,
}

impl Condition {
    /// Splits the producers' convention `"Type: message"` (a text without `": "` is a type
    /// with an empty message, as `"AtMax"`).
    pub fn parse(text: &str, since: Option<UnixSeconds>) -> Self {
        let (kind, message) = match text.split_once(": ") {
            Some((k, m)) if !k.is_empty() && !k.contains(' ') => (k, m),
            _ if !text.contains(' ') => (text, ""),
            _ => ("Info", text),
        };
        Self {
            kind: kind.to_string(),
            message: message.to_string(),
            since: since.map(format_utc),
        }
    }

    /// The `"Type: message"` text again (for logs and one-line displays).
    pub fn text(&self) -> String {
        if self.message.is_empty() {
            self.kind.clone()
        } else {
            format!("{}: {}", self.kind, self.message)
        }
    }
}

/// The controller holds a pool's creates after failed ones (its per-pool backoff): the
/// planner creates nothing until `until`, and once it has passed, while the failures last,
/// only `probe` creates (one VM tells whether the error is gone; a whole scale-up of failing
/// PUTs would not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Creates are held until then.
    pub until: UnixSeconds,
    /// At most this many creates per plan once `until` has passed (None: no limit).
    pub probe: Option<u32>,
    /// The condition shown while the failures last, in the `"Type: message"` convention
    /// (`"Blocked: InvalidResourceReference: ...; fix: ..."`).
    pub condition: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_convention_splits_into_type_and_message() {
        let c = Condition::parse("NoCapacity: every size is unavailable (x: y)", Some(0));
        assert_eq!(c.kind, "NoCapacity");
        assert_eq!(c.message, "every size is unavailable (x: y)");
        assert_eq!(c.since.as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(c.text(), "NoCapacity: every size is unavailable (x: y)");
        let bare = Condition::parse("AtMax", None);
        assert_eq!((bare.kind.as_str(), bare.message.as_str()), ("AtMax", ""));
        assert_eq!(bare.since, None);
        let prose = Condition::parse("something odd happened: here", None);
        assert_eq!(prose.kind, "Info");
        assert_eq!(prose.message, "something odd happened: here");
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["type"], "NoCapacity");
    }
}
