// Starts the web app. A file rather than an inline script: the Content-Security-Policy
// allows scripts from this origin only. scripts/build-web writes the hashed names of
// the two files into the copy it serves.
import init from "/app.js";

// Passkeys: the bridge between the server's WebAuthn options (JSON, binary fields
// base64url, as webauthn-rs writes them) and navigator.credentials, which wants and
// gives ArrayBuffers. The app calls these with JSON text and gets JSON text back, in
// the shape webauthn-rs reads.
const fromB64 = (s) => {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(s.length / 4) * 4, "="));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
};
const toB64 = (buf) => {
  let s = "";
  for (const c of new Uint8Array(buf)) s += String.fromCharCode(c);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};
const withIds = (list) => (list || []).map((c) => ({ ...c, id: fromB64(c.id) }));

let pending = null;

window.twofoldPasskeys = {
  // Whether this browser can use passkeys at all, and offer them in autofill.
  supported: () => typeof window.PublicKeyCredential === "function",
  async autofill() {
    const pkc = window.PublicKeyCredential;
    return !!(pkc && pkc.isConditionalMediationAvailable && (await pkc.isConditionalMediationAvailable()));
  },
  // Ends a waiting autofill request: only one request may be open at a time.
  abort() {
    if (pending) pending.abort();
    pending = null;
  },
  async create(json) {
    window.twofoldPasskeys.abort();
    const o = JSON.parse(json).publicKey;
    const publicKey = {
      ...o,
      challenge: fromB64(o.challenge),
      user: { ...o.user, id: fromB64(o.user.id) },
      excludeCredentials: withIds(o.excludeCredentials),
    };
    const c = await navigator.credentials.create({ publicKey });
    return JSON.stringify({
      id: c.id,
      rawId: toB64(c.rawId),
      type: c.type,
      response: {
        attestationObject: toB64(c.response.attestationObject),
        clientDataJSON: toB64(c.response.clientDataJSON),
      },
      clientExtensionResults: {},
    });
  },
  // `conditional`: wait for the person to pick a passkey from the user name field's
  // autofill, instead of asking at once.
  async get(json, conditional) {
    window.twofoldPasskeys.abort();
    const options = JSON.parse(json);
    const o = options.publicKey;
    const publicKey = { ...o, challenge: fromB64(o.challenge), allowCredentials: withIds(o.allowCredentials) };
    const request = { publicKey };
    if (conditional) {
      pending = new AbortController();
      request.mediation = "conditional";
      request.signal = pending.signal;
    }
    const c = await navigator.credentials.get(request);
    pending = null;
    const r = c.response;
    return JSON.stringify({
      id: c.id,
      rawId: toB64(c.rawId),
      type: c.type,
      response: {
        authenticatorData: toB64(r.authenticatorData),
        clientDataJSON: toB64(r.clientDataJSON),
        signature: toB64(r.signature),
        userHandle: r.userHandle ? toB64(r.userHandle) : null,
      },
      clientExtensionResults: {},
    });
  },
};

init({ module_or_path: "/app_bg.wasm" });
