//! The guard in front of every route: authentication (token or basic),
//! the read-only switch and cross-site request checks for every POST, and
//! security headers on every response.
//!
//! A POST must (1) not come from another site by `Sec-Fetch-Site`, (2) have
//! an `Origin`, when sent, that matches its `Host`, and (3) carry the
//! process's CSRF token in its form (`csrf`). Checking here, before any
//! handler, means no action can forget it.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use crate::app::App;
use crate::config::Auth;
use crate::error::PageError;

/// The cookie that keeps a token given once as `?token=`.
pub(crate) const TOKEN_COOKIE: &str = "millrace_token";

/// Largest form body accepted.
const MAX_FORM: usize = 64 * 1024;

/// The middleware: see the module docs.
pub(crate) async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    if let Some(auth) = &app.config.auth
        && let Some(refused) = refuse(auth, &req)
    {
        return refused;
    }
    let req = if req.method() == Method::GET || req.method() == Method::HEAD {
        req
    } else {
        match check_post(&app, req).await {
            Ok(r) => r,
            Err(e) => return with_headers(e.into_response()),
        }
    };
    with_headers(next.run(req).await)
}

/// Constant-time equality of two secrets (their lengths may leak).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `None` when the request proves itself; otherwise the response to send
/// (a 401, or a redirect that moves `?token=` into the cookie).
fn refuse(auth: &Auth, req: &Request) -> Option<Response> {
    let authz = header_str(req.headers(), header::AUTHORIZATION);
    match auth {
        Auth::Token(token) => {
            let bearer = authz.and_then(|a| a.strip_prefix("Bearer "));
            if bearer.is_some_and(|b| same(b.trim().as_bytes(), token.as_bytes())) {
                return None;
            }
            let cookie = header_str(req.headers(), header::COOKIE)
                .into_iter()
                .flat_map(|c| c.split(';'))
                .filter_map(|kv| kv.trim().split_once('='))
                .any(|(k, v)| k == TOKEN_COOKIE && same(v.as_bytes(), token.as_bytes()));
            if cookie {
                return None;
            }
            let query = req.uri().query().unwrap_or("");
            let given = form_urlencoded::parse(query.as_bytes())
                .any(|(k, v)| k == "token" && same(v.as_bytes(), token.as_bytes()));
            if given && req.method() == Method::GET {
                return Some(keep_token(req, token));
            }
            Some(unauthorized(
                "this dashboard needs its token: open it once with ?token=<token>, or send Authorization: Bearer <token>",
                None,
            ))
        }
        Auth::Basic { user, password } => {
            let ok = authz
                .and_then(|a| a.strip_prefix("Basic "))
                .and_then(|b| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b.trim())
                        .ok()
                })
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|s| {
                    s.split_once(':').map(|(u, p)| {
                        same(u.as_bytes(), user.as_bytes())
                            & same(p.as_bytes(), password.as_bytes())
                    })
                })
                .unwrap_or(false);
            if ok {
                None
            } else {
                Some(unauthorized(
                    "this dashboard needs a user name and password",
                    Some("Basic realm=\"millrace\", charset=\"UTF-8\""),
                ))
            }
        }
    }
}

/// A redirect to the same page without `token`, setting the cookie.
fn keep_token(req: &Request, token: &str) -> Response {
    let query = req.uri().query().unwrap_or("");
    let rest: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != "token")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut to = req.uri().path().to_owned();
    if !rest.is_empty() {
        to.push('?');
        to.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .extend_pairs(rest)
                .finish(),
        );
    }
    let cookie = format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    with_headers(resp)
}

fn unauthorized(text: &str, challenge: Option<&'static str>) -> Response {
    let body = crate::layout::bare("Unauthorized", maud::html! { p.error { (text) } });
    let mut resp = (StatusCode::UNAUTHORIZED, body).into_response();
    if let Some(c) = challenge {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    with_headers(resp)
}

/// The read-only switch and the cross-site checks; hands the request on
/// with its body restored.
async fn check_post(app: &App, req: Request) -> Result<Request, PageError> {
    app.writable()?;
    let headers = req.headers();
    if let Some(site) = header_str(headers, header::HeaderName::from_static("sec-fetch-site"))
        && site != "same-origin"
        && site != "none"
    {
        return Err(PageError::Forbidden(format!(
            "cross-site request refused (Sec-Fetch-Site: {site})"
        )));
    }
    if let Some(origin) = header_str(headers, header::ORIGIN) {
        let host = header_str(headers, header::HOST).unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if origin_host != Some(host) {
            return Err(PageError::Forbidden(format!(
                "cross-site request refused (Origin {origin} is not this dashboard)"
            )));
        }
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| PageError::BadRequest(format!("form larger than {MAX_FORM} bytes")))?;
    let token_ok = form_urlencoded::parse(&bytes)
        .any(|(k, v)| k == "csrf" && same(v.as_bytes(), app.csrf.as_bytes()));
    if !token_ok {
        return Err(PageError::Forbidden(
            "missing or stale CSRF token: reload the page and try again".into(),
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// No framing, no sniffing, no referrer to other sites (`no-referrer`
/// would make browsers send `Origin: null` with our own forms), no script
/// or style from anywhere but here, no caching of job data.
fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "same-origin");
    set(h, "cache-control", "no-store");
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
