//! The one way a pool spec is stored, for the API (`POST /v1/pools`, `PUT /v1/pools/{name}`)
//! and for the `[[pools]]` of the configuration file at start: the spec's rules, declared
//! secrets only, the replacement rules (what cannot change on a live pool), the store's write
//! (a new pool at generation 1, or the spec replaced with its generation bumped), then the
//! audit event. Waking the controller is the caller's: at start there is none yet.

use std::collections::BTreeSet;

use rb_core::{PoolSpec, SpecError};
use serde_json::{Value, json};
use store::{NewEvent, PoolRecord, Store, StoreError};

/// Who writes: the actor, message and data of the event follow from it.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A caller of the API: the token's name.
    Api { actor: &'a str },
    /// The `[[pools]]` of the configuration file, at start (actor `config`).
    Config,
}

/// What the writer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolWrite {
    /// A new pool; a pool of that name (even one being deleted) is a conflict.
    Create,
    /// A new spec for an existing pool; even an identical one bumps the generation.
    Replace,
    /// Create the pool if missing, replace its spec if different, else leave it alone (the
    /// configuration file at every start).
    CreateOrReplace,
}

/// What was stored.
#[derive(Debug)]
pub enum Written {
    Created(PoolRecord),
    Replaced {
        old: Box<PoolRecord>,
        record: PoolRecord,
    },
    /// `CreateOrReplace` of the spec already stored: nothing written, no event.
    Unchanged(PoolRecord),
}

impl Written {
    /// The pool as stored now.
    pub fn record(&self) -> &PoolRecord {
        match self {
            Written::Created(record)
            | Written::Replaced { record, .. }
            | Written::Unchanged(record) => record,
        }
    }
}

/// Why nothing (or, for [`PoolWriteError::Event`], only the event) was not written.
#[derive(Debug)]
pub enum PoolWriteError {
    /// The spec breaks a rule, or changes what cannot change: the field and why.
    Invalid(SpecError),
    /// The store refused (a name taken, no such pool, being deleted) or failed.
    Store(StoreError),
    /// The pool was written but its event was not (the configuration file's path only: the
    /// API logs it, since the change is stored and the client must not take it for a failure).
    Event(StoreError),
}

impl From<StoreError> for PoolWriteError {
    fn from(err: StoreError) -> Self {
        PoolWriteError::Store(err)
    }
}

/// The rules every stored spec follows: the spec's own (names, bounds, sizes Azure has,
/// image, tags...), and secrets named only if the daemon's configuration declares them
/// (`declared`), so no writer can point at the daemon's environment or files.
pub fn check_spec(spec: &PoolSpec, declared: &BTreeSet<String>) -> Result<(), SpecError> {
    spec.validate(&|size| arm_model::sizes::lookup(size).is_some())?;
    for (field, r) in spec.bootstrap.iter().flat_map(|b| b.secret_refs()) {
        if !declared.contains(&r.secret) {
            return Err(SpecError::new(
                format!("{field}.secret"),
                format!(
                    "secret {:?} is not declared: the daemon's configuration needs [secrets.{}] with env = \"VAR\" or file = \"/path\"",
                    r.secret, r.secret
                ),
            ));
        }
    }
    Ok(())
}

/// Checks and stores `spec` as `write` asks, then records the event (`pool.created` or
/// `pool.replaced`). Nothing is stored unless every check passes.
pub async fn write_pool(
    store: &Store,
    spec: &PoolSpec,
    write: PoolWrite,
    declared: &BTreeSet<String>,
    origin: Origin<'_>,
) -> Result<Written, PoolWriteError> {
    check_spec(spec, declared).map_err(PoolWriteError::Invalid)?;
    let old = match write {
        PoolWrite::Create => None,
        PoolWrite::Replace => {
            Some(
                store
                    .get_pool(&spec.name)
                    .await?
                    .ok_or_else(|| StoreError::NotFound {
                        what: format!("pool {:?}", spec.name),
                    })?,
            )
        }
        PoolWrite::CreateOrReplace => store.get_pool(&spec.name).await?,
    };
    let written = match old {
        None => Written::Created(store.create_pool(spec).await?),
        Some(old) if write == PoolWrite::CreateOrReplace && old.spec == *spec => {
            return Ok(Written::Unchanged(old));
        }
        Some(old) => {
            spec.check_replacement(&old.spec)
                .map_err(PoolWriteError::Invalid)?;
            let record = store.replace_pool(spec).await?;
            Written::Replaced {
                old: Box::new(old),
                record,
            }
        }
    };
    let event = event(spec, &written, origin);
    if let Err(err) = store.append_event(&event).await {
        match origin {
            Origin::Config => return Err(PoolWriteError::Event(err)),
            Origin::Api { .. } => tracing::error!(
                error = %crate::error::error_chain(&err),
                kind = %event.kind,
                "cannot record the event of a change that was stored"
            ),
        }
    }
    Ok(written)
}

/// The event of a write: for the API, what changed (the spec in `data.spec`); for the
/// configuration file, that it came from there (the spec as `data`).
fn event(spec: &PoolSpec, written: &Written, origin: Origin<'_>) -> NewEvent {
    let created = matches!(written, Written::Created(_));
    let kind = if created {
        "pool.created"
    } else {
        "pool.replaced"
    };
    let (actor, message, data) = match origin {
        Origin::Config => {
            let verb = if created { "created" } else { "updated" };
            (
                "config".to_string(),
                format!("pool {} {verb} from the configuration file", spec.name),
                serde_json::to_value(spec).unwrap_or(Value::Null),
            )
        }
        Origin::Api { actor } => {
            let message = match written {
                Written::Replaced { old, .. } => {
                    let changes = spec_changes(&old.spec, spec);
                    if changes.is_empty() {
                        "pool spec replaced, unchanged".to_string()
                    } else {
                        format!("pool spec replaced: {}", changes.join(", "))
                    }
                }
                _ => format!(
                    "pool created: {} nodes of {}, min {} max {} target {}",
                    serde_json::to_value(spec.priority)
                        .unwrap_or_default()
                        .as_str()
                        .unwrap_or("?"),
                    spec.vm_sizes.join(" or "),
                    spec.min,
                    spec.max,
                    spec.target
                ),
            };
            (actor.to_string(), message, json!({ "spec": spec }))
        }
    };
    NewEvent {
        kind: kind.to_string(),
        pool: Some(spec.name.clone()),
        node: None,
        actor,
        message,
        data,
    }
}

/// `field old → new` for each top-level spec field that changed, for the event message;
/// `bootstrap changed` for that section, whose details are for admins (in the event's data).
fn spec_changes(old: &PoolSpec, new: &PoolSpec) -> Vec<String> {
    let (Ok(Value::Object(old)), Ok(Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    new.iter()
        .filter_map(|(key, value)| {
            let before = old.get(key).unwrap_or(&Value::Null);
            (before != value).then(|| match key.as_str() {
                "bootstrap" => "bootstrap changed".to_string(),
                _ => format!("{key} {before} → {value}"),
            })
        })
        .collect()
}
