// Starts the web app. A file rather than an inline script: the Content-Security-Policy
// allows scripts from this origin only.
import init from "/app.js";

init({ module_or_path: "/app_bg.wasm" });
