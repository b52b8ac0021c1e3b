//! Authorization codes. A code carries the grant it stands for (the user, the session
//! and what it proved, the client, the redirect URI, the PKCE challenge, the nonce)
//! sealed with XChaCha20-Poly1305 under a subkey of the deployment's master key
//! ([`crate::secrets::Keys::seal`]), so issuing one writes nothing: an authorization
//! request that a session already satisfies is a read, like the effective-policy read,
//! and every node that shares the key redeems the codes of every other.
//!
//! Single use is still the database's: the exchange records the code as spent (a row
//! in `oidc_authorization_codes` keyed by the hash of the code's random id, with the
//! token family it started) in the same statement or transaction that writes the
//! tokens, and a second exchange meets that row (RFC 6749 section 4.1.2: refused, and
//! what the first gave is revoked). The row lives until the code would have expired,
//! after which the code is refused for its age.
//!
//! What a stored code row did besides, the code now carries or the exchange checks:
//! the grant's foreign key (a grant revoked after the code was issued fails the spent
//! row's insert), and the user's security stamp at issuance (a security profile change
//! in between refuses the code, as it ends the sessions).

use serde::{Deserialize, Serialize};

use crate::auth;
use crate::db::oidc::CodeRow;
use crate::secrets::Keys;

/// What a sealed code is for: nothing sealed for another purpose opens as a code.
const PURPOSE: &str = "oidc-authorization-code";

/// The grant an authorization code stands for. Short field names keep the code short:
/// it travels in a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    /// Random, so two codes never share the spent row's key.
    #[serde(rename = "j")]
    pub id: String,
    #[serde(rename = "a")]
    pub application_id: String,
    #[serde(rename = "g")]
    pub grant_id: String,
    #[serde(rename = "u")]
    pub user_id: String,
    #[serde(rename = "r")]
    pub redirect_uri: String,
    #[serde(rename = "s")]
    pub scopes: String,
    #[serde(rename = "c")]
    pub code_challenge: Option<String>,
    #[serde(rename = "n")]
    pub nonce: Option<String>,
    #[serde(rename = "i")]
    pub sid: String,
    #[serde(rename = "t")]
    pub auth_time: i64,
    #[serde(rename = "m")]
    pub amr: String,
    #[serde(rename = "l")]
    pub acr: String,
    #[serde(rename = "k")]
    pub security_stamp: String,
    #[serde(rename = "at")]
    pub created_at: i64,
    #[serde(rename = "e")]
    pub expires_at: i64,
}

impl Code {
    /// The code handed to the client.
    pub fn seal(&self, keys: &Keys) -> String {
        // A struct of strings and integers always serialises.
        let plain = serde_json::to_vec(self).unwrap_or_default();
        keys.seal(PURPOSE, &plain)
    }

    /// The grant of a code this deployment sealed, unaltered, under a key it still
    /// holds; `None` for anything else, which the client learns only as an unknown code.
    pub fn open(keys: &Keys, code: &str) -> Option<Code> {
        let plain = keys.open(PURPOSE, code).ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// The key of the spent row: the hash of the code's id.
    pub fn spent_key(&self) -> String {
        auth::token_hash(&self.id)
    }

    /// The row that records the code as spent at `now` by the exchange that started
    /// `family_id`.
    pub fn spent(&self, now: i64, family_id: &str) -> CodeRow {
        CodeRow {
            code_hash: self.spent_key(),
            application_id: self.application_id.clone(),
            grant_id: self.grant_id.clone(),
            user_id: self.user_id.clone(),
            redirect_uri: self.redirect_uri.clone(),
            scopes: self.scopes.clone(),
            code_challenge: self.code_challenge.clone(),
            nonce: self.nonce.clone(),
            sid: self.sid.clone(),
            auth_time: self.auth_time,
            amr: self.amr.clone(),
            acr: self.acr.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            used_at: Some(now),
            family_id: Some(family_id.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn code() -> Code {
        Code {
            id: auth::new_token(),
            application_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            grant_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c".into(),
            user_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5d".into(),
            redirect_uri: "https://app.example/callback".into(),
            scopes: "openid profile".into(),
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            nonce: Some("n-0S6_WzA2Mj".into()),
            sid: auth::new_token(),
            auth_time: 1_700_000_000_000,
            amr: "pwd otp mfa".into(),
            acr: "urn:twofold:acr:mfa".into(),
            security_stamp: "stamp".into(),
            created_at: 1_700_000_001_000,
            expires_at: 1_700_000_061_000,
        }
    }

    #[test]
    fn a_code_opens_to_its_grant_and_only_under_its_purpose() {
        let keys = Keys::from_bytes([3u8; 32]);
        let c = code();
        let sealed = c.seal(&keys);
        assert_eq!(Code::open(&keys, &sealed), Some(c.clone()));
        // Sealed for another purpose, the same bytes are not a code.
        let other = keys.seal("remember-browser", &serde_json::to_vec(&c).unwrap());
        assert_eq!(Code::open(&keys, &other), None);
        assert_eq!(Code::open(&Keys::from_bytes([4u8; 32]), &sealed), None);
        // Short enough for a URL: a typical grant stays under 800 characters.
        assert!(sealed.len() < 800, "{}", sealed.len());
    }

    #[test]
    fn the_spent_row_is_keyed_by_the_codes_random_id() {
        let c = code();
        let row = c.spent(5, "family");
        assert_eq!(row.code_hash, auth::token_hash(&c.id));
        assert_ne!(code().spent_key(), row.code_hash);
        assert_eq!((row.used_at, row.family_id.as_deref()), (Some(5), Some("family")));
    }
}
