//! A software WebAuthn authenticator for the tests: ES256 (P-256) keys, `none`
//! attestation, authenticator data and client data built as a browser and an
//! authenticator would, and the JSON a browser hands to the server (binary fields
//! base64url, as webauthn-rs reads them). It can be cloned (a copy of the key with the
//! same counter) and told to lie about user verification.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;

#[derive(Debug, Clone)]
pub struct SoftAuthenticator {
    key: SigningKey,
    pub credential_id: Vec<u8>,
    /// The signature counter; 0 forever when `counts` is false (as synced passkeys do).
    pub counter: u32,
    pub counts: bool,
    pub user_handle: Option<Vec<u8>>,
    pub origin: String,
    pub rp_id: String,
    pub aaguid: [u8; 16],
    /// Whether the authenticator says it verified the user (PIN, biometrics).
    pub verifies_user: bool,
    pub backup_eligible: bool,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).expect("base64url")
}

// ---------------------------------------------------------------- a little CBOR

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
    }
}

fn int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 { head(out, 0, v as u64) } else { head(out, 1, (-1 - v) as u64) }
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    head(out, 2, b.len() as u64);
    out.extend(b);
}

fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend(s.as_bytes());
}

impl SoftAuthenticator {
    /// A new authenticator for the relying party `rp_id` at `origin`.
    pub fn new(rp_id: &str, origin: &str) -> Self {
        use p256::elliptic_curve::Generate;
        let secret = p256::SecretKey::try_generate_from_rng(&mut getrandom::SysRng).expect("P-256 key");
        Self {
            key: SigningKey::from(&secret),
            credential_id: rand::random::<[u8; 32]>().to_vec(),
            counter: 0,
            counts: true,
            user_handle: None,
            origin: origin.to_owned(),
            rp_id: rp_id.to_owned(),
            aaguid: [0; 16],
            verifies_user: true,
            backup_eligible: false,
        }
    }

    fn flags(&self) -> u8 {
        let mut f = FLAG_UP;
        if self.verifies_user {
            f |= FLAG_UV;
        }
        if self.backup_eligible {
            f |= FLAG_BE | FLAG_BS;
        }
        f
    }

    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.verifying_key().to_sec1_point(false);
        let raw = point.as_bytes();
        let (x, y) = (&raw[1..33], &raw[33..65]);
        let mut out = Vec::new();
        head(&mut out, 5, 5);
        int(&mut out, 1);
        int(&mut out, 2); // kty: EC2
        int(&mut out, 3);
        int(&mut out, -7); // alg: ES256
        int(&mut out, -1);
        int(&mut out, 1); // crv: P-256
        int(&mut out, -2);
        bytes(&mut out, x);
        int(&mut out, -3);
        bytes(&mut out, y);
        out
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(
            &json!({ "type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false }),
        )
        .expect("client data")
    }

    fn next_counter(&mut self) -> u32 {
        if self.counts {
            self.counter += 1;
        }
        self.counter
    }

    /// Answers `navigator.credentials.create` with the server's `options`
    /// (`{"publicKey": {...}}`): a new credential with `none` attestation.
    pub fn register(&mut self, options: &Value) -> Value {
        let pk = &options["publicKey"];
        let challenge = pk["challenge"].as_str().expect("challenge");
        assert_eq!(pk["rp"]["id"], self.rp_id.as_str(), "relying party: {options}");
        self.user_handle = Some(unb64(pk["user"]["id"].as_str().expect("user id")));
        let counter = self.next_counter();
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(self.flags() | FLAG_AT);
        auth_data.extend(counter.to_be_bytes());
        auth_data.extend(self.aaguid);
        auth_data.extend((self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend(&self.credential_id);
        auth_data.extend(self.cose_key());
        let mut object = Vec::new();
        head(&mut object, 5, 3);
        text(&mut object, "fmt");
        text(&mut object, "none");
        text(&mut object, "attStmt");
        head(&mut object, 5, 0);
        text(&mut object, "authData");
        bytes(&mut object, &auth_data);
        let client_data = self.client_data("webauthn.create", challenge);
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": { "attestationObject": b64(&object), "clientDataJSON": b64(&client_data) },
            "clientExtensionResults": {}
        })
    }

    /// Answers `navigator.credentials.get` with the server's `options`: an assertion
    /// signed over the authenticator data and the hash of the client data.
    pub fn assert(&mut self, options: &Value) -> Value {
        let challenge = options["publicKey"]["challenge"].as_str().expect("challenge").to_owned();
        self.assert_challenge(&challenge)
    }

    pub fn assert_challenge(&mut self, challenge: &str) -> Value {
        let counter = self.next_counter();
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(self.flags());
        auth_data.extend(counter.to_be_bytes());
        let client_data = self.client_data("webauthn.get", challenge);
        let mut signed = auth_data.clone();
        signed.extend(Sha256::digest(&client_data));
        let signature: Signature = self.key.sign(&signed);
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(signature.to_der().as_bytes()),
                "userHandle": self.user_handle.as_deref().map(b64),
            },
            "clientExtensionResults": {}
        })
    }
}
