//! The one generator of every secret renderburst makes: the admin token it writes to
//! `admin.token`, API tokens, node and enrollment tokens, and the throwaway passwords of VMs.
//!
//! Every byte comes from the operating system's CSPRNG (`getrandom`: the `getrandom(2)` system
//! call on Linux), never from a generator seeded in the process: a `fastrand` admin token was
//! recovered offline from the daemon's start time in `/proc/PID/stat` (issue 12). `fastrand`
//! stays fine for what is not a secret (retry jitter, the simulator, the chaos audit).
//!
//! A token is a prefix that says its kind (the API asks the table the prefix names) and
//! [`TOKEN_CHARS`] characters of `[A-Za-z0-9]`, each drawn uniformly by rejection sampling:
//! 40 × log2(62) ≈ 238 bits. Only a token's SHA-256 is ever stored.
//!
//! It lives in the store because every crate that makes a secret (api, controller, the
//! binary) already depends on it, and the store holds what the secrets are checked against.

/// Characters of a token after its prefix.
pub const TOKEN_CHARS: usize = 40;

/// The admin token the daemon generates into `admin.token` when the config sets none. The API
/// recognises the admin token by its hash, so a configured one may have any form.
pub const ADMIN_TOKEN_PREFIX: &str = "rba_";

/// API tokens made by `POST /v1/tokens` (stored in `api_tokens`).
pub const API_TOKEN_PREFIX: &str = "rb_";

/// Random characters of a VM's throwaway password, before the fixed class suffix: 24 × log2(62)
/// ≈ 143 bits.
pub const PASSWORD_RANDOM_CHARS: usize = 24;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Fills `out` from the operating system's CSPRNG.
///
/// Panics if the operating system cannot give random bytes (no `getrandom(2)` and no
/// `/dev/urandom`): renderburst would rather not start than make a guessable secret.
fn os_random(out: &mut [u8]) {
    if let Err(e) = getrandom::fill(out) {
        panic!("the operating system's random source failed ({e}): refusing to make a secret");
    }
}

/// `n` characters of `[A-Za-z0-9]`, each uniform: bytes of 248 and above are dropped
/// (248 = 4 × 62, so `byte % 62` is uniform below it).
fn alphanumeric(n: usize) -> String {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        os_random(&mut buf);
        for byte in buf {
            if out.len() == n {
                break;
            }
            if byte < 248 {
                out.push(char::from(ALPHABET[usize::from(byte % 62)]));
            }
        }
    }
    out
}

/// A fresh token: `prefix` + [`TOKEN_CHARS`] characters of `[A-Za-z0-9]` from the OS CSPRNG.
/// Prefixes in use: `rba_` the generated admin token, `rb_` API tokens, `rbn_` node tokens,
/// `rbp_` Batch pools' enrollment tokens.
pub fn random_token(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + TOKEN_CHARS);
    out.push_str(prefix);
    out.push_str(&alphanumeric(TOKEN_CHARS));
    out
}

/// A fresh admin token for `admin.token`: `rba_` + 40 characters.
pub fn admin_token() -> String {
    random_token(ADMIN_TOKEN_PREFIX)
}

/// A password no one knows, for VMs that must have one: [`PASSWORD_RANDOM_CHARS`] random
/// letters and digits, then `aA1!` so that Azure's complexity rules (a lower-case letter, an
/// upper-case letter, a digit and a special character; 12 to 72 characters) hold whatever
/// was drawn. Letters, digits and `!` only: nothing to escape in JSON or XML.
pub fn vm_password() -> String {
    let mut p = alphanumeric(PASSWORD_RANDOM_CHARS);
    p.push_str("aA1!");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_their_prefix_and_40_alphanumerics() {
        for (token, prefix) in [
            (admin_token(), "rba_"),
            (random_token(API_TOKEN_PREFIX), "rb_"),
            (random_token("rbn_"), "rbn_"),
            (random_token("rbp_"), "rbp_"),
        ] {
            let rest = token.strip_prefix(prefix).unwrap();
            assert_eq!(rest.len(), TOKEN_CHARS, "{token}");
            assert!(rest.chars().all(|c| c.is_ascii_alphanumeric()), "{token}");
        }
        assert_ne!(admin_token(), admin_token());
    }

    #[test]
    fn vm_passwords_meet_azure_s_rules() {
        let p = vm_password();
        assert!((12..=72).contains(&p.len()), "{p}");
        assert!(p.chars().any(|c| c.is_ascii_lowercase()));
        assert!(p.chars().any(|c| c.is_ascii_uppercase()));
        assert!(p.chars().any(|c| c.is_ascii_digit()));
        assert!(p.chars().any(|c| !c.is_ascii_alphanumeric()));
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric() || c == '!'));
        assert_ne!(p, vm_password());
    }

    /// Every character of the alphabet is about equally likely: 62,000 draws, each
    /// character expected 1,000 times; the bounds are more than 6 standard deviations wide,
    /// so a uniform source fails this about never, and a modulo-biased or stuck one at once.
    #[test]
    fn characters_are_uniform() {
        let text = alphanumeric(62_000);
        let mut counts = [0u32; 62];
        for b in text.bytes() {
            let i = ALPHABET.iter().position(|a| *a == b).unwrap();
            counts[i] += 1;
        }
        for (i, n) in counts.iter().enumerate() {
            assert!(
                (800..=1200).contains(n),
                "{} drawn {n} times",
                char::from(ALPHABET[i])
            );
        }
    }
}
