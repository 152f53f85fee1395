//! Parsing JSON bodies so that an error names the offending field.

use serde::de::DeserializeOwned;

use super::SpecError;

/// Parses a `T` from JSON, naming the offending field when the body does not fit (shared by
/// every body that `core` defines: pool specs, schedules).
pub(crate) fn from_json_named<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SpecError> {
    let err = match serde_json::from_slice::<T>(bytes) {
        Ok(v) => return Ok(v),
        Err(err) => err,
    };
    if !err.is_data() {
        // Syntax, early end of input: nothing names a field.
        return Err(SpecError::new("body", err.to_string()));
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Err(SpecError::new("body", err.to_string()));
    };
    // Errors from a Value carry no line and column, so they compare equal across probes.
    let message = match serde_json::from_value::<T>(value.clone()) {
        Err(e) => e.to_string(),
        // Only the text form failed (a duplicate key, for example): the message names it.
        Ok(_) => {
            let message = strip_position(&err.to_string());
            let field = backticked(&message).unwrap_or("body").to_string();
            return Err(SpecError::new(field, message));
        }
    };
    let mut path = locate_error::<T>(&value, &message);
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        path.push(name.to_string());
    }
    let field = if path.is_empty() {
        "body".to_string()
    } else {
        join_path(&path)
    };
    Err(SpecError::new(
        field,
        crate::serde_words::humanize(&message),
    ))
}

/// Most keys probed per object when locating an error: the probes clone the document, and a
/// body with thousands of tags is rejected by validation anyway.
const MAX_PROBED_KEYS: usize = 64;

/// Finds the path of the key that causes `message`: serde stops at the first bad key, so
/// removing the culprit (and only the culprit) changes the error. Generic over the spec's
/// shape, so new fields and sections need no table here.
fn locate_error<T: DeserializeOwned>(root: &serde_json::Value, message: &str) -> Vec<String> {
    let mut path: Vec<String> = Vec::new();
    // Removing the culprit (and only the culprit) changes the error.
    let changes = |probe: serde_json::Value, key: &str| match serde_json::from_value::<T>(probe) {
        Ok(_) => true,
        // Removing a required key only makes serde report that key missing instead; for a
        // missing-field error that says nothing about where the field belongs.
        Err(e) => {
            let changed = e.to_string();
            changed != message
                && !(message.starts_with("missing field `")
                    && changed == format!("missing field `{key}`"))
        }
    };
    loop {
        match value_at(root, &path) {
            Some(serde_json::Value::Object(obj)) if obj.len() <= MAX_PROBED_KEYS => {
                let culprit = obj.keys().find(|key| {
                    let mut probe = root.clone();
                    if let Some(serde_json::Value::Object(o)) = value_at_mut(&mut probe, &path) {
                        o.remove(key.as_str());
                    }
                    changes(probe, key)
                });
                match culprit {
                    Some(key) => path.push(key.clone()),
                    None => return path,
                }
            }
            // Lists of objects (mounts, hosts...): the element whose removal changes the
            // error. Lists of plain values (`vm_sizes`) are named as a whole.
            Some(serde_json::Value::Array(items))
                if !path.is_empty()
                    && items.len() <= MAX_PROBED_KEYS
                    && items.iter().any(serde_json::Value::is_object) =>
            {
                let culprit = (0..items.len()).find(|&i| {
                    let mut probe = root.clone();
                    if let Some(serde_json::Value::Array(a)) = value_at_mut(&mut probe, &path) {
                        a.remove(i);
                    }
                    changes(probe, "")
                });
                match culprit {
                    Some(i) => path.push(format!("[{i}]")),
                    None => return path,
                }
            }
            _ => return path,
        }
    }
}

/// `["bootstrap", "mounts", "[0]", "source"]` → `bootstrap.mounts[0].source`.
fn join_path(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if !out.is_empty() && !seg.starts_with('[') {
            out.push('.');
        }
        out.push_str(seg);
    }
    out
}

fn index_of(seg: &str) -> Option<usize> {
    seg.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

fn value_at<'a>(root: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(root, |v, seg| match index_of(seg) {
        Some(i) => v.get(i),
        None => v.get(seg.as_str()),
    })
}

fn value_at_mut<'a>(
    root: &'a mut serde_json::Value,
    path: &[String],
) -> Option<&'a mut serde_json::Value> {
    path.iter().try_fold(root, |v, seg| match index_of(seg) {
        Some(i) => v.get_mut(i),
        None => v.get_mut(seg.as_str()),
    })
}

/// serde_json appends " at line L column C" to errors from text.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// The first `name` in backticks of a serde message ("unknown field `foo`, expected ...").
fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}
