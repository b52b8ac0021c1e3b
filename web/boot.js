// Starts the web app. A file rather than an inline script: the Content-Security-Policy
// allows scripts from this origin only. scripts/build-web writes the hashed names of
// the two files into the copy it serves.
import init from "/app.js";

init({ module_or_path: "/app_bg.wasm" });
