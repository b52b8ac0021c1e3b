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

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::db::oidc::CodeRow;
use crate::secrets::Keys;

/// What a sealed code is for: nothing sealed for another purpose opens as a code.
const PURPOSE: &str = "oidc-authorization-code";

/// The grant an authorization code stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// Random, so two codes never share the spent row's key.
    pub id: [u8; 16],
    pub application_id: String,
    pub grant_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scopes: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub sid: String,
    pub auth_time: i64,
    pub amr: String,
    pub acr: String,
    pub security_stamp: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A code as sealed: the fields in order (postcard: no names, integers as varints),
/// ids and tokens as their bytes. A code travels in a URL: every answer carries it and
/// every client parses it (745 characters as JSON, about 440 like this).
#[derive(Serialize, Deserialize)]
struct Wire {
    id: [u8; 16],
    application_id: Packed,
    grant_id: Packed,
    user_id: Packed,
    redirect_uri: String,
    scopes: String,
    code_challenge: Option<Packed>,
    nonce: Option<Packed>,
    sid: Packed,
    auth_time: i64,
    amr: String,
    acr: String,
    security_stamp: Packed,
    created_at: i64,
    expires_at: i64,
}

/// A string in as few bytes as it allows: a UUID in its 16 bytes, a base64url token of
/// 32 bytes (a session id, a security stamp, an S256 challenge) in those; anything else
/// as it is. Each form is used only when it gives back exactly the same string.
#[derive(Serialize, Deserialize)]
enum Packed {
    Uuid([u8; 16]),
    Token([u8; 32]),
    Text(String),
}

impl Packed {
    fn of(s: &str) -> Packed {
        if s.len() == uuid::fmt::Hyphenated::LENGTH
            && let Ok(u) = uuid::Uuid::parse_str(s)
            && u.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).as_bytes() == s.as_bytes()
        {
            return Packed::Uuid(u.into_bytes());
        }
        if s.len() == 43
            && let Ok(bytes) = URL_SAFE_NO_PAD.decode(s)
            && let Ok(token) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            return Packed::Token(token);
        }
        Packed::Text(s.to_owned())
    }

    fn text(self) -> String {
        match self {
            Packed::Uuid(bytes) => uuid::Uuid::from_bytes(bytes).hyphenated().to_string(),
            Packed::Token(bytes) => URL_SAFE_NO_PAD.encode(bytes),
            Packed::Text(s) => s,
        }
    }
}

impl Code {
    /// A fresh random id for a new code.
    pub fn new_id() -> [u8; 16] {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        id
    }

    /// The code handed to the client.
    pub fn seal(&self, keys: &Keys) -> String {
        let wire = Wire {
            id: self.id,
            application_id: Packed::of(&self.application_id),
            grant_id: Packed::of(&self.grant_id),
            user_id: Packed::of(&self.user_id),
            redirect_uri: self.redirect_uri.clone(),
            scopes: self.scopes.clone(),
            code_challenge: self.code_challenge.as_deref().map(Packed::of),
            nonce: self.nonce.as_deref().map(Packed::of),
            sid: Packed::of(&self.sid),
            auth_time: self.auth_time,
            amr: self.amr.clone(),
            acr: self.acr.clone(),
            security_stamp: Packed::of(&self.security_stamp),
            created_at: self.created_at,
            expires_at: self.expires_at,
        };
        // Strings, byte arrays and integers always encode.
        let plain = postcard::to_allocvec(&wire).unwrap_or_default();
        keys.seal(PURPOSE, &plain)
    }

    /// The grant of a code this deployment sealed, unaltered, under a key it still
    /// holds; `None` for anything else, which the client learns only as an unknown code.
    pub fn open(keys: &Keys, code: &str) -> Option<Code> {
        let plain = keys.open(PURPOSE, code).ok()?;
        let w: Wire = postcard::from_bytes(&plain).ok()?;
        Some(Code {
            id: w.id,
            application_id: w.application_id.text(),
            grant_id: w.grant_id.text(),
            user_id: w.user_id.text(),
            redirect_uri: w.redirect_uri,
            scopes: w.scopes,
            code_challenge: w.code_challenge.map(Packed::text),
            nonce: w.nonce.map(Packed::text),
            sid: w.sid.text(),
            auth_time: w.auth_time,
            amr: w.amr,
            acr: w.acr,
            security_stamp: w.security_stamp.text(),
            created_at: w.created_at,
            expires_at: w.expires_at,
        })
    }

    /// The key of the spent row: the hash of the code's id.
    pub fn spent_key(&self) -> String {
        auth::token_hash(&URL_SAFE_NO_PAD.encode(self.id))
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
            id: Code::new_id(),
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
        let plain = keys.open(PURPOSE, &sealed).unwrap();
        assert_eq!(Code::open(&keys, &keys.seal("remember-browser", &plain)), None);
        assert_eq!(Code::open(&Keys::from_bytes([4u8; 32]), &sealed), None);
        // Short enough for a URL: a typical grant is under 500 characters.
        assert!(sealed.len() < 500, "{}", sealed.len());
    }

    #[test]
    fn every_string_comes_back_exactly_whatever_its_form() {
        let keys = Keys::from_bytes([3u8; 32]);
        let tricky = [
            "",
            "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B",
            "{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b}",
            "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c=",
            "admin",
            "é ü \u{0}",
        ];
        for s in tricky {
            let c = Code {
                application_id: s.into(),
                grant_id: s.into(),
                user_id: s.into(),
                code_challenge: Some(s.into()),
                nonce: Some(s.into()),
                sid: s.into(),
                security_stamp: s.into(),
                ..code()
            };
            assert_eq!(Code::open(&keys, &c.seal(&keys)), Some(c), "{s:?}");
        }
    }

    #[test]
    fn the_spent_row_is_keyed_by_the_codes_random_id() {
        let c = code();
        let row = c.spent(5, "family");
        assert_eq!(row.code_hash, auth::token_hash(&URL_SAFE_NO_PAD.encode(c.id)));
        assert_ne!(code().spent_key(), row.code_hash);
        assert_eq!((row.used_at, row.family_id.as_deref()), (Some(5), Some("family")));
    }
}
