//! The `otpauth://` URI handed to authenticator apps at enrolment. Its label is made
//! from names users choose (user name, tenant name), so every name the name parsers
//! accept must give a URI, and that URI must read back (with totp-rs's own parser, as
//! an app would) to the same secret, issuer and account, and fit in a QR code.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use totp_rs::{Algorithm, Totp};
use twofold_policy::names::{TenantName, Username};
use twofold_server::totp;

/// Most bytes a QR code holds in byte mode at the medium error correction `qr_png` uses.
const QR_CAPACITY: usize = 2331;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    secret: &'a [u8],
    username: &'a str,
    tenant: Option<&'a str>,
    issuer: &'a str,
    draw: bool,
}

fuzz_target!(|input: Input<'_>| {
    let secret = input.secret;
    // The server's label: the user name, with the tenant's name for tenant users.
    let Ok(user) = Username::parse(input.username) else { return };
    let account = match input.tenant.map(TenantName::parse) {
        Some(Ok(tenant)) => format!("{}@{}", user.as_str(), tenant.as_str()),
        Some(Err(_)) => return,
        None => user.as_str().to_owned(),
    };

    for issuer in ["Twofold", input.issuer] {
        let uri = totp::otpauth_uri(secret, issuer, &account);
        if secret.len() < 16 || issuer.trim().is_empty() {
            assert!(uri.is_err(), "a short secret or a blank issuer got a URI");
            continue;
        }
        let uri = uri.unwrap_or_else(|e| panic!("no URI for account {account:?}, issuer {issuer:?}: {e}"));
        let parsed = Totp::from_url(&uri).unwrap_or_else(|e| panic!("{uri} does not parse: {e}"));
        for at in [59, 1_700_000_000] {
            assert_eq!(parsed.generate(at).to_string(), totp::code_at(secret, at), "{uri}: another secret");
        }
        assert!(parsed.algorithm() == Algorithm::SHA1, "{uri}");
        assert_eq!(parsed.digits(), 6, "{uri}");
        assert_eq!(parsed.step(), 30, "{uri}");
        // A ":" cannot appear in a label; it is the only character replaced.
        assert_eq!(parsed.account_name(), totp::label_part(&account), "{uri}");
        let issuer = issuer.trim();
        assert_eq!(parsed.issuer().map(str::to_owned), Some(totp::label_part(issuer)), "{uri}");
        if issuer == "Twofold" {
            assert!(uri.len() <= QR_CAPACITY, "{} bytes do not fit a QR code", uri.len());
            if input.draw {
                assert!(totp::qr_png(&uri).is_ok(), "{uri} cannot be drawn");
            }
        }
    }
});
