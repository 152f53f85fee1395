//! Entra ID as far as ARM clients need it: OpenID discovery, the client-credentials token
//! endpoint, a managed-identity style endpoint, and verification of the bearer tokens we
//! issued.
//!
//! Tokens are JWT-shaped (`header.payload.signature`, base64url) so clients that peek at
//! `exp` or `tid` work, and are signed with a key generated at start (SHA-256 over key and
//! content), so verification needs no token table and memory stays bounded however many
//! tokens are issued.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

/// What a token is good for, from its audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// ARM (`https://management.azure.com/`, `https://management.core.windows.net/`).
    Arm,
    /// The Batch data plane (`https://batch.core.windows.net/`).
    Batch,
}

impl Audience {
    /// Maps an OAuth scope (`…/.default`) or a v1 `resource` to an audience.
    pub fn from_scope(scope: &str) -> Option<(Audience, String)> {
        // A request may carry several space-separated scopes; msal adds offline_access etc.
        let resource_scope = scope
            .split_whitespace()
            .find(|s| s.starts_with("https://"))?;
        let aud = resource_scope
            .strip_suffix("/.default")
            .unwrap_or(resource_scope)
            .to_owned();
        let norm = aud.trim_end_matches('/').to_ascii_lowercase();
        let kind = match norm.as_str() {
            "https://management.azure.com" | "https://management.core.windows.net" => Audience::Arm,
            "https://batch.core.windows.net" => Audience::Batch,
            _ => return None,
        };
        Some((kind, aud))
    }
}

/// Issues and verifies tokens.
pub struct TokenMint {
    key: [u8; 32],
}

#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Malformed,
    Expired { exp: i64, now: i64 },
    WrongAudience,
}

impl TokenMint {
    pub fn new() -> Self {
        let mut key = [0u8; 32];
        for b in &mut key {
            *b = fastrand::u8(..);
        }
        Self { key }
    }

    /// A mint with the key of an earlier one (a persistent simulator's state file), so the
    /// tokens it issued stay valid across a restart.
    pub fn from_key(key: [u8; 32]) -> Self {
        Self { key }
    }

    pub fn key(&self) -> [u8; 32] {
        self.key
    }

    fn sign(&self, content: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(content.as_bytes());
        URL_SAFE_NO_PAD.encode(h.finalize())
    }

    pub fn issue(
        &self,
        tenant: &str,
        client_id: &str,
        aud: &str,
        issuer: &str,
        now: i64,
        lifetime_s: u64,
    ) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256","kid":"azure-sim"}"#);
        let payload = json!({
            "aud": aud,
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s as i64,
            "tid": tenant,
            "oid": client_id,
            "appid": client_id,
            "sub": client_id,
            "idtyp": "app",
        });
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        let content = format!("{header}.{payload}");
        let sig = self.sign(&content);
        format!("{content}.{sig}")
    }

    /// Checks an `Authorization` header value. Returns the token's audience on success.
    pub fn verify(&self, authorization: Option<&str>, now: i64) -> Result<Audience, TokenError> {
        let value = authorization.ok_or(TokenError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(TokenError::Malformed)?
            .trim();
        let (content, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        if self.sign(content) != sig {
            return Err(TokenError::Malformed);
        }
        let (_, payload) = content.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: serde_json::Value =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        let exp = claims["exp"].as_i64().ok_or(TokenError::Malformed)?;
        if exp <= now {
            return Err(TokenError::Expired { exp, now });
        }
        let aud = claims["aud"].as_str().ok_or(TokenError::Malformed)?;
        Audience::from_scope(aud)
            .map(|(a, _)| a)
            .ok_or(TokenError::WrongAudience)
    }
}

impl Default for TokenMint {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let mint = TokenMint::new();
        let t = mint.issue("t", "c", "https://management.azure.com", "iss", 1000, 60);
        let header = format!("Bearer {t}");
        assert_eq!(mint.verify(Some(&header), 1059), Ok(Audience::Arm));
        assert!(matches!(
            mint.verify(Some(&header), 1060),
            Err(TokenError::Expired { .. })
        ));
        assert_eq!(mint.verify(None, 0), Err(TokenError::Missing));
        let forged = format!("Bearer {}x", t);
        assert_eq!(mint.verify(Some(&forged), 1001), Err(TokenError::Malformed));
        let other = TokenMint::new();
        assert_eq!(
            other.verify(Some(&header), 1001),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn scopes_map_to_audiences() {
        assert_eq!(
            Audience::from_scope("https://management.azure.com/.default")
                .unwrap()
                .0,
            Audience::Arm
        );
        assert_eq!(
            Audience::from_scope("https://management.core.windows.net//.default offline_access")
                .unwrap()
                .0,
            Audience::Arm
        );
        assert_eq!(
            Audience::from_scope("https://batch.core.windows.net/.default")
                .unwrap()
                .0,
            Audience::Batch
        );
        assert!(Audience::from_scope("https://graph.microsoft.com/.default").is_none());
    }
}
