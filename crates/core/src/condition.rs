//! Pool conditions: what an admin should know about a pool (why it is not at its desired
//! count, what is holding it). Producers (the planners, the controller) write the text
//! convention `"Type: message"`; the controller turns each into a typed [`Condition`] at one
//! place, adding `since` (when that type of condition appeared on the pool), which is what
//! the API shows (`{"type", "message", "since"}`).

use serde::{Deserialize, Serialize};

use crate::UnixSeconds;
use crate::offerings::format_utc;
use crate::plan::{ActionKind, Plan, Step};

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

impl Hold {
    /// The condition as a plan shows it: while held, with the time of the next attempt at
    /// writes of the kind `verb` names (`"create"`, `"Batch pool resize"`...).
    pub fn shown(&self, verb: &str, now: UnixSeconds) -> String {
        if now < self.until {
            format!(
                "{}; next {verb} attempt at {}",
                self.condition,
                format_utc(self.until)
            )
        } else {
            self.condition.clone()
        }
    }
}

/// How conditions and events name a kind of write (`"create"`, `"Batch pool resize"`).
pub fn write_words(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Create => "create",
        ActionKind::Start => "start",
        ActionKind::Deallocate => "deallocate",
        ActionKind::Delete => "delete",
        ActionKind::Forget => "forget",
        ActionKind::CreatePool => "Batch pool create",
        ActionKind::ResizePool => "Batch pool resize",
        ActionKind::RemoveNode => "Batch node removal",
        ActionKind::DeletePool => "Batch pool delete",
        ActionKind::StopResize => "Batch pool stop-resize",
        ActionKind::RotateEnrollToken => "enrollment token rotation",
        ActionKind::DeleteNic => "NIC delete",
        ActionKind::DeleteDisk => "OS disk delete",
    }
}

/// Applies the controller's holds on kinds of writes to a plan made without them: actions of
/// a held kind are taken out until the hold's `until`, then all but `probe` of them while
/// the failures last; the hold's condition is added while the plan wants writes of its kind
/// (a streak of failed deletes says nothing once no delete is wanted). Returns what was held,
/// in plan order. (VM creates are held by the planner itself, [`crate::PlanInput::hold`]; the
/// API's what-if plans without it and holds them here, to show what is held.)
pub fn apply_holds<A: Step>(
    plan: &mut Plan<A>,
    holds: &[(ActionKind, Hold)],
    now: UnixSeconds,
) -> Vec<A> {
    let mut held = Vec::new();
    for (kind, hold) in holds {
        if !plan.actions.iter().any(|a| a.kind() == *kind) {
            continue;
        }
        let keep = if now < hold.until {
            0
        } else {
            hold.probe.map_or(usize::MAX, |p| p as usize)
        };
        let mut kept = 0;
        let mut rest = Vec::with_capacity(plan.actions.len());
        for a in std::mem::take(&mut plan.actions) {
            if a.kind() != *kind {
                rest.push(a);
            } else if kept < keep {
                kept += 1;
                rest.push(a);
            } else {
                held.push(a);
            }
        }
        plan.actions = rest;
        let text = hold.shown(write_words(*kind), now);
        if !plan.conditions.contains(&text) {
            plan.conditions.push(text);
        }
    }
    held
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

    use crate::plan::{VmAction, VmActionKind};

    fn action(kind: VmActionKind, node: &str) -> VmAction {
        VmAction {
            kind,
            node: node.into(),
            size: None,
            priority: None,
            reason: "r".into(),
        }
    }

    #[test]
    fn holds_take_out_their_kind_then_let_a_probe_through() {
        let plan = Plan {
            actions: vec![
                action(VmActionKind::Delete, "a"),
                action(VmActionKind::Deallocate, "b"),
                action(VmActionKind::Delete, "c"),
            ],
            ..Plan::default()
        };
        let hold = Hold {
            until: 100,
            probe: Some(1),
            condition: "Blocked: AuthorizationFailed: no".into(),
        };
        let holds = [(ActionKind::Delete, hold.clone())];
        let mut held_plan = plan.clone();
        let held = apply_holds(&mut held_plan, &holds, 50);
        assert_eq!(held.len(), 2);
        assert_eq!(held_plan.actions.len(), 1);
        assert_eq!(held_plan.actions[0].kind, VmActionKind::Deallocate);
        assert_eq!(
            held_plan.conditions,
            ["Blocked: AuthorizationFailed: no; next delete attempt at 1970-01-01T00:01:40Z"]
        );
        // Lapsed: one probe, the rest still held.
        let mut probing = plan.clone();
        let held = apply_holds(&mut probing, &holds, 100);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].node, "c");
        assert_eq!(probing.actions.len(), 2);
        assert_eq!(probing.conditions, ["Blocked: AuthorizationFailed: no"]);
        // Open (the admin changed the pool): everything goes.
        let open = [(
            ActionKind::Delete,
            Hold {
                probe: None,
                ..hold.clone()
            },
        )];
        let mut all = plan.clone();
        assert!(apply_holds(&mut all, &open, 100).is_empty());
        // No write of the kind wanted: no condition.
        let mut other: Plan = Plan::default();
        assert!(apply_holds(&mut other, &holds, 50).is_empty());
        assert!(other.conditions.is_empty());
    }
}
