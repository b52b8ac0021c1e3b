//! The HTTP client of the app. Every call goes through here so that each state-changing
//! request carries the CSRF header the server demands, cookies stay same-origin, and
//! every failure arrives as the API's one error shape ([`ErrorBody`]), network trouble
//! included.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use gloo_net::http::{Request, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use twofold_policy::wire::{ErrorBody, ErrorCode};
use web_sys::RequestCredentials;

/// The value of `X-Requested-With`; the server only checks that the header is present,
/// but naming the client helps when reading its logs.
const CLIENT: &str = "twofold-web";

/// A failed call: the HTTP status (0 when the server could not be reached) and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

impl ApiError {
    fn local(error: &str, message: &str) -> Self {
        ApiError {
            status: 0,
            body: ErrorBody {
                error: error.to_owned(),
                message: message.to_owned(),
                field: None,
                retry_after_seconds: None,
                attempts_left: None,
            },
        }
    }

    /// A failure in the browser itself (no passkey support, a cancelled prompt).
    pub fn message(message: &str) -> Self {
        Self::local("local", message)
    }

    pub fn is(&self, code: ErrorCode) -> bool {
        self.body.is(code)
    }

    /// The sentence to show.
    pub fn text(&self) -> String {
        crate::text::error_text(&self.body)
    }

    pub fn field(&self) -> Option<&str> {
        self.body.field.as_deref()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

thread_local! {
    /// Called when a signed-in call answers `unauthenticated` (the session ended or was
    /// revoked), so the app can drop its idea of who is signed in and show sign-in.
    static ON_UNAUTHENTICATED: RefCell<Option<Rc<dyn Fn()>>> = const { RefCell::new(None) };
}

pub fn on_unauthenticated(f: impl Fn() + 'static) {
    ON_UNAUTHENTICATED.with(|slot| *slot.borrow_mut() = Some(Rc::new(f)));
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

fn builder(method: Method, url: &str) -> RequestBuilder {
    let b = match method {
        Method::Get => Request::get(url),
        Method::Post => Request::post(url),
        Method::Put => Request::put(url),
        Method::Patch => Request::patch(url),
        Method::Delete => Request::delete(url),
    };
    let b = b.credentials(RequestCredentials::SameOrigin).header("Accept", "application/json");
    if matches!(method, Method::Get) {
        b
    } else {
        b.header("X-Requested-With", CLIENT).header("Content-Type", "application/json")
    }
}

async fn call<T: DeserializeOwned>(method: Method, url: &str, body: Option<String>) -> ApiResult<T> {
    let b = builder(method, url);
    let request = match body {
        Some(json) => b.body(json),
        None => b.build(),
    }
    .map_err(|_| ApiError::local("client", "The request could not be built."))?;
    let response = request
        .send()
        .await
        .map_err(|_| ApiError::local("network", "Could not reach the server. Check your connection and try again."))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if (200..300).contains(&status) {
        // 204 and other empty answers deserialise as JSON null, which is what `()` is.
        let text = if text.trim().is_empty() { "null" } else { text.as_str() };
        return serde_json::from_str(text)
            .map_err(|_| ApiError::local("client", "The server's answer could not be read. Reload the page."));
    }
    let body = serde_json::from_str::<ErrorBody>(&text).unwrap_or_else(|_| ErrorBody {
        error: format!("http_{status}"),
        message: format!("the server answered with status {status}; try again later"),
        field: None,
        retry_after_seconds: None,
        attempts_left: None,
    });
    let err = ApiError { status, body };
    if err.is(ErrorCode::Unauthenticated)
        && let Some(f) = ON_UNAUTHENTICATED.with(|slot| slot.borrow().clone())
    {
        f();
    }
    Err(err)
}

fn json<B: Serialize>(body: &B) -> ApiResult<String> {
    serde_json::to_string(body).map_err(|_| ApiError::local("client", "The request could not be encoded."))
}

// The calls serialise their body and copy their URL before returning, so the futures
// own everything and can be kept (for a retry after reauthentication) or spawned freely.

pub fn get<T: DeserializeOwned>(url: &str) -> impl Future<Output = ApiResult<T>> + 'static + use<T> {
    let url = url.to_owned();
    async move { call(Method::Get, &url, None).await }
}

pub fn post<B: Serialize, T: DeserializeOwned>(
    url: &str,
    body: &B,
) -> impl Future<Output = ApiResult<T>> + 'static + use<B, T> {
    let (url, body) = (url.to_owned(), json(body));
    async move { call(Method::Post, &url, Some(body?)).await }
}

/// A POST whose endpoint takes no body.
pub fn post_empty<T: DeserializeOwned>(url: &str) -> impl Future<Output = ApiResult<T>> + 'static + use<T> {
    let url = url.to_owned();
    async move { call(Method::Post, &url, None).await }
}

pub fn put<B: Serialize, T: DeserializeOwned>(
    url: &str,
    body: &B,
) -> impl Future<Output = ApiResult<T>> + 'static + use<B, T> {
    let (url, body) = (url.to_owned(), json(body));
    async move { call(Method::Put, &url, Some(body?)).await }
}

pub fn patch<B: Serialize, T: DeserializeOwned>(
    url: &str,
    body: &B,
) -> impl Future<Output = ApiResult<T>> + 'static + use<B, T> {
    let (url, body) = (url.to_owned(), json(body));
    async move { call(Method::Patch, &url, Some(body?)).await }
}

pub fn delete(url: &str) -> impl Future<Output = ApiResult<()>> + 'static + use<> {
    let url = url.to_owned();
    async move { call(Method::Delete, &url, None).await }
}

/// Percent-encodes one query value or path segment.
pub fn enc(s: &str) -> String {
    String::from(js_sys::encode_uri_component(s))
}

/// `?q=..&page=..&per_page=..` for the paged list endpoints.
pub fn list_query(q: &str, page: u32, per_page: u32) -> String {
    let q = q.trim();
    if q.is_empty() {
        format!("?page={page}&per_page={per_page}")
    } else {
        format!("?q={}&page={page}&per_page={per_page}", enc(q))
    }
}
