//! The web page of `airback serve`: one HTML shell, a script and a style sheet, built into
//! the binary (no CDN, no network), served with a Content Security Policy that lets the page
//! load only its own script and style and talk only to this service. The page is a small
//! single-page app over the JSON API (`web/app.js`); it puts every text from the repository
//! in the page as text, never as markup.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/app.css");

/// What the page may load and where it may connect: this service only.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' \
                      data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
                      frame-ancestors 'none'";

/// Whether `path` is one of the page's files (served without the access token: they hold
/// no data).
pub(super) fn is_asset(path: &str) -> bool {
    matches!(path, "/" | "/app.js" | "/app.css")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut answer = body.into_response();
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    answer
}

/// `GET /`: the page.
pub(super) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /app.js`.
pub(super) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /app.css`.
pub(super) async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}
