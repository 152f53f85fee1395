//! Helpers shared by the test binaries: a *faithful* parse.
//!
//! Deserializing alone proves little, because the model ignores unknown fields on purpose: a
//! misspelt field (`diskSizeGb` for `diskSizeGB`) would parse as `None` and pass. So every
//! parse here also serializes the value back and compares it with the input: a key present in
//! the input but missing from the output was silently dropped, and a key in the output but not
//! in the input was invented. Both fail, except for the few exceptions listed below.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Keys whose *empty* array the model deliberately drops on serialization (`ErrorDetail` skips
/// empty `details` / `additionalInfo`, as ARM itself does).
const EMPTY_ARRAYS_DROPPED: &[&str] = &["details", "additionalInfo"];

/// Parses `value` as `T`, then checks the round trip: serialize, compare with the input (nothing
/// dropped, nothing invented, numbers compared by value), deserialize again, compare equal.
pub fn parse_faithful<T>(value: &Value) -> Result<T, String>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let type_name = std::any::type_name::<T>();
    let parsed = T::deserialize(value).map_err(|e| format!("as {type_name}: {e}"))?;
    let back = serde_json::to_value(&parsed).map_err(|e| format!("serialize {type_name}: {e}"))?;
    let mut problems = Vec::new();
    compare(value, &back, "", &mut problems);
    if !problems.is_empty() {
        return Err(format!(
            "as {type_name}, round trip is not faithful:\n    {}",
            problems.join("\n    ")
        ));
    }
    let again = T::deserialize(&back).map_err(|e| format!("re-parse {type_name}: {e}"))?;
    if again != parsed {
        return Err(format!(
            "as {type_name}: deserialize -> serialize -> deserialize changed the value"
        ));
    }
    Ok(parsed)
}

fn compare(original: &Value, back: &Value, path: &str, problems: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(orig), Value::Object(out)) => {
            for (key, orig_value) in orig {
                let child = format!("{path}/{key}");
                match out.get(key) {
                    Some(out_value) => compare(orig_value, out_value, &child, problems),
                    None if droppable(key, orig_value) => {}
                    None => problems.push(format!("{child}: dropped (field not modelled?)")),
                }
            }
            for key in out.keys().filter(|k| !orig.contains_key(*k)) {
                problems.push(format!("{path}/{key}: invented on serialization"));
            }
        }
        (Value::Array(orig), Value::Array(out)) if orig.len() == out.len() => {
            for (i, (o, b)) in orig.iter().zip(out).enumerate() {
                compare(o, b, &format!("{path}/{i}"), problems);
            }
        }
        // `-1` read into an f64 comes back as `-1.0`: equal as numbers, which is what counts.
        (Value::Number(o), Value::Number(b)) if o.as_f64() == b.as_f64() => {}
        (o, b) if o == b => {}
        (o, b) => problems.push(format!("{path}: {o} came back as {b}")),
    }
}

/// Fixture commentary (`_comment`, `_source`, `_http`, ...) and explicit nulls are not wire
/// data the model must keep.
fn droppable(key: &str, value: &Value) -> bool {
    key.starts_with('_')
        || value.is_null()
        || (EMPTY_ARRAYS_DROPPED.contains(&key) && value.as_array().is_some_and(Vec::is_empty))
}
