//! serde's messages in people's words: `invalid value: integer `-5`, expected u32` becomes
//! `must be 0 or more, got -5`. The field is named beside the message by the caller
//! ([`crate::SpecError`]); this only rewrites the sentence, and leaves any message it does
//! not recognise as it is.

/// Rewrites a serde data error about a number; other messages come back unchanged.
pub fn humanize(message: &str) -> String {
    let unsigned = ["u8", "u16", "u32", "u64", "usize"];
    let signed = ["i8", "i16", "i32", "i64", "isize"];
    let Some((what, expected)) = message.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    // serde_json says `u32`; the `config` crate says `an unsigned 32 bit or less integer`.
    let is_unsigned = unsigned.contains(&expected) || expected.starts_with("an unsigned ");
    if !is_unsigned && !signed.contains(&expected) && !expected.starts_with("a signed ") {
        return message.to_owned();
    }
    // `invalid value: integer `-5`` (serde_json), `invalid type: 64-bit integer `-5`` (config).
    let integer = what
        .strip_prefix("invalid value: integer `")
        .or_else(|| {
            what.strip_prefix("invalid type: ")
                .and_then(|rest| rest.split_once("integer `"))
                .map(|(_, n)| n)
        })
        .and_then(|rest| rest.strip_suffix('`'))
        .filter(|n| n.parse::<i128>().is_ok());
    if let Some(n) = integer {
        return if is_unsigned && n.starts_with('-') {
            format!("must be 0 or more, got {n}")
        } else {
            format!("{n} is too large for this field")
        };
    }
    if let Some(got) = what.strip_prefix("invalid type: ") {
        let got = got.replace('`', "");
        return if is_unsigned {
            format!("must be a whole number, 0 or more, got {got}")
        } else {
            format!("must be a whole number, got {got}")
        };
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::humanize;

    #[test]
    fn numbers_are_explained() {
        assert_eq!(
            humanize("invalid value: integer `-5`, expected u32"),
            "must be 0 or more, got -5"
        );
        assert_eq!(
            humanize("invalid type: floating point `1.5`, expected u32"),
            "must be a whole number, 0 or more, got floating point 1.5"
        );
        assert_eq!(
            humanize("invalid type: string \"ten\", expected u64"),
            "must be a whole number, 0 or more, got string \"ten\""
        );
        assert_eq!(
            humanize(
                "invalid type: 64-bit integer `-5`, expected an unsigned 64 bit or less integer"
            ),
            "must be 0 or more, got -5"
        );
        assert_eq!(
            humanize("invalid value: integer `99999999999`, expected u32"),
            "99999999999 is too large for this field"
        );
    }

    #[test]
    fn other_messages_are_left_alone() {
        for m in [
            "missing field `name`",
            "unknown field `maxx`, expected one of `name`, `max`",
            "invalid type: string \"x\", expected a boolean",
        ] {
            assert_eq!(humanize(m), m);
        }
    }
}
