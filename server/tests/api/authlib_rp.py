"""An independent OpenID Connect relying party (Python's Authlib) against Twofold.

Run by the HTTP suite (oidc::authlib_*): discovery, the code flow with PKCE (S256) and a
nonce, client_secret_basic, the ID token verified against the JWKS with Authlib's own
claim checks (iss, aud, exp, iat, nonce, at_hash, auth_time), userinfo with the access
token, refresh-token rotation, and the refusal of a rotated-out refresh token.

Arguments: issuer client_id client_secret redirect_uri cookie. The cookie is the session
of a signed-in browser; the authorization request is sent with it, redirects not
followed. Prints one JSON object with what the suite checks on its side.
"""

import base64
import json
import sys

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken


def main():
    issuer, client_id, client_secret, redirect_uri, cookie = sys.argv[1:6]
    meta = requests.get(issuer + "/.well-known/openid-configuration", timeout=10).json()
    assert meta["issuer"] == issuer, meta
    session = OAuth2Session(
        client_id,
        client_secret,
        scope="openid profile offline_access",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = generate_token(64)
    nonce = generate_token(24)
    url, state = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    browser = requests.get(url, headers={"Cookie": cookie}, allow_redirects=False, timeout=10)
    assert browser.status_code == 303, (browser.status_code, browser.text)
    back = browser.headers["Location"]
    assert back.startswith(redirect_uri), back
    # Authlib checks the state it sent against the one that came back.
    token = session.fetch_token(
        meta["token_endpoint"], authorization_response=back, code_verifier=verifier
    )
    published = requests.get(meta["jwks_uri"], timeout=10).json()
    keys = JsonWebKey.import_key_set(published)
    claims = jwt.decode(
        token["id_token"],
        keys,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": issuer}},
        claims_params={"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]},
    )
    claims.validate()
    header = json.loads(base64.urlsafe_b64decode(token["id_token"].split(".")[0] + "=="))

    userinfo = session.get(meta["userinfo_endpoint"], timeout=10).json()
    assert userinfo["sub"] == claims["sub"], (userinfo, dict(claims))

    first_refresh = token["refresh_token"]
    renewed = session.refresh_token(meta["token_endpoint"], refresh_token=first_refresh)
    assert renewed["refresh_token"] != first_refresh, "refresh tokens rotate"
    replay = requests.post(
        meta["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": first_refresh},
        auth=(client_id, client_secret),
        timeout=10,
    )

    print(
        json.dumps(
            {
                "alg": header["alg"],
                "kid_published": any(k["kid"] == header.get("kid") for k in published["keys"]),
                "sub": claims["sub"],
                "aud": claims["aud"],
                "acr": claims.get("acr"),
                "amr": claims.get("amr"),
                "preferred_username": userinfo.get("preferred_username"),
                "state_sent": state,
                "refreshed_has_id_token": "id_token" in renewed,
                "replay_status": replay.status_code,
                "replay_error": replay.json().get("error"),
            }
        )
    )


if __name__ == "__main__":
    main()
