//! Serving the built web app (`web_dir`, what `scripts/build-web` writes). Asset names
//! carry a hash of their content, so they are cached for a year and never revalidated;
//! `index.html`, the only file that names them, is revalidated on every load with an
//! ETag, so a new build reaches browsers at once. Files are sent brotli- or
//! gzip-compressed when the build left such a copy and the browser accepts it.
//! Every path that is neither a file nor the API gets `index.html`, for the client-side
//! router's deep links, except paths that look like a file: a missing script must be a
//! 404, never a page the browser tries to run.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use tower_http::services::ServeDir;

use crate::app::AppState;

/// For names with a content hash: a changed file gets a new name, so a cached copy is
/// never stale.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The favicon keeps its well-known name, so it cannot be immutable; a day is plenty.
pub const FAVICON_CACHE: &str = "public, max-age=86400";
/// Store, but ask the server each time (a 304 when nothing changed).
pub const REVALIDATE: &str = "no-cache";

/// Extensions of the files a build holds: such a path that is not there is a 404.
const FILE_EXTENSIONS: &[&str] = &["js", "mjs", "wasm", "css", "ico", "png", "svg", "map", "html", "br", "gz"];

pub fn router(state: AppState) -> Router {
    let files = ServeDir::new(&state.config().web_dir)
        .precompressed_br()
        .precompressed_gzip()
        // `/` is answered by `index` (with its ETag), not by ServeDir's own index.html.
        .append_index_html_on_directories(false)
        .fallback(get(index).with_state(state.clone()));
    Router::new()
        .route("/index.html", get(index))
        .fallback_service(files)
        .layer(middleware::from_fn(cache_headers))
        .with_state(state)
}

/// Whether `path` names a file whose name carries a content hash, as
/// `scripts/build-web` writes them: `/<name>-<16 hex digits>.<js|wasm|css>`.
pub fn is_hashed_asset(path: &str) -> bool {
    let Some(file) = path.strip_prefix('/') else { return false };
    let Some((stem, ext)) = file.rsplit_once('.') else { return false };
    let Some((name, hash)) = stem.rsplit_once('-') else { return false };
    !file.contains('/')
        && !name.is_empty()
        && matches!(ext, "js" | "wasm" | "css")
        && hash.len() == 16
        && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn looks_like_file(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or_default();
    last.rsplit_once('.').is_some_and(|(_, ext)| FILE_EXTENSIONS.contains(&ext))
}

async fn cache_headers(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let mut resp = next.run(req).await;
    let served = resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED;
    if !served || !looks_like_file(&path) || path == "/index.html" {
        return resp;
    }
    // Anything else keeps the app-wide `no-store`.
    let cache = if is_hashed_asset(&path) {
        Some(IMMUTABLE)
    } else if path == "/favicon.ico" {
        Some(FAVICON_CACHE)
    } else {
        None
    };
    let headers = resp.headers_mut();
    if let Some(cache) = cache {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    }
    // The body depends on Accept-Encoding (a precompressed copy or not): a shared
    // cache must not hand a brotli body to a browser that did not ask for it.
    headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    resp
}

/// `index.html`, revalidated with an ETag on every load. Read per request: it is small,
/// and a new build swapped in under a running server is served at once.
async fn index(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    if looks_like_file(uri.path()) && uri.path() != "/index.html" {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    }
    let path = state.config().web_dir.join("index.html");
    let body = match tokio::fs::read(&path).await {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the web app is not built (scripts/build-web)");
            return (StatusCode::NOT_FOUND, "The web app is not built: run scripts/build-web.").into_response();
        }
    };
    // 64 bits of SHA-256: a tag only has to tell builds apart.
    let mut etag = String::from("\"");
    for byte in Sha256::digest(&body).iter().take(8) {
        let _ = write!(etag, "{byte:02x}");
    }
    etag.push('"');
    let Ok(etag_value) = HeaderValue::from_str(&etag) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let cache = [(header::ETAG, etag_value), (header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE))];
    if if_none_match(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], body).into_response()
}

/// Whether the browser's `If-None-Match` names `etag` (weak comparison, RFC 9110 13.1.2).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_assets_are_recognised_by_name() {
        for yes in ["/app-0123456789abcdef.js", "/app_bg-0123456789abcdef.wasm", "/style-fedcba9876543210.css"] {
            assert!(is_hashed_asset(yes), "{yes}");
        }
        for no in [
            "/app.js",
            "/boot.js",
            "/favicon.ico",
            "/index.html",
            "/-0123456789abcdef.js",
            "/app-0123456789ABCDEF.js",
            "/app-0123456789abcde.js",
            "/app-0123456789abcdef.html",
            "/x/app-0123456789abcdef.js",
            "/api/app-0123456789abcdef.js",
        ] {
            assert!(!is_hashed_asset(no), "{no}");
        }
    }

    #[test]
    fn deep_links_are_not_files() {
        assert!(looks_like_file("/app-0123456789abcdef.js"));
        assert!(looks_like_file("/favicon.ico"));
        assert!(!looks_like_file("/tenants/0190c0de-7e57-7000-8000-000000000000/users"));
        assert!(!looks_like_file("/"));
        assert!(!looks_like_file("/settings"));
    }
}
