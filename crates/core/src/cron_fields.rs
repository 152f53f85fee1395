//! Names the part of a cron pattern that is wrong, before `croner` parses it: `0 25 * * *`
//! says "hour 25 is out of range 0–23" rather than a parser's generic complaint.
//!
//! Only numbers are checked here (names such as `MON` or `JAN`, `L`, `W`, `#` and `?` are
//! left to `croner`, which knows them); anything this passes, `croner` still parses.

/// The fields of a 5-field pattern, or of a 6-field one after its seconds.
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

/// `Err("hour 25 is out of range 0–23")` for the first number out of its field's range,
/// or a step of 0.
pub fn check(cron: &str) -> Result<(), String> {
    let parts: Vec<&str> = cron.split_whitespace().collect();
    let fields: Vec<(&str, u32, u32)> = match parts.len() {
        5 => FIELDS.to_vec(),
        6 => std::iter::once(("second", 0, 59)).chain(FIELDS).collect(),
        _ => return Ok(()),
    };
    for (text, (name, lo, hi)) in parts.iter().zip(fields) {
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            if let Some(step) = step.and_then(|s| s.parse::<u32>().ok())
                && step == 0
            {
                return Err(format!("{name} step /0 never advances: use /1 or more"));
            }
            for bound in range.split('-') {
                let Ok(n) = bound.parse::<u32>() else {
                    continue;
                };
                if n < lo || n > hi {
                    return Err(format!("{name} {n} is out of range {lo}–{hi}"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn the_wrong_part_is_named() {
        assert_eq!(
            check("0 25 * * *"),
            Err("hour 25 is out of range 0–23".into())
        );
        assert_eq!(
            check("61 * * * *"),
            Err("minute 61 is out of range 0–59".into())
        );
        assert_eq!(
            check("0 0 0 * *"),
            Err("day-of-month 0 is out of range 1–31".into())
        );
        assert_eq!(
            check("0 0 * 1-13 *"),
            Err("month 13 is out of range 1–12".into())
        );
        assert_eq!(
            check("0 0 * * 1,9"),
            Err("day-of-week 9 is out of range 0–7".into())
        );
        assert_eq!(
            check("75 0 0 * * *"),
            Err("second 75 is out of range 0–59".into())
        );
        assert!(check("*/0 * * * *").unwrap_err().contains("minute step"));
    }

    #[test]
    fn good_patterns_pass() {
        for ok in [
            "0 20 * * MON-FRI",
            "*/15 7-19 * * 1-5",
            "30 7 1,15 JAN-DEC *",
            "0 0 L * *",
            "0 0 0 * * 7",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }
}
