//! Read-only, auth and cross-site refusals; loopback unless auth is set.

use crate::common::*;

fn dead_len(env: &Env) -> u64 {
    env.redis(&["XLEN", "millrace:{emails}:dead"])
}

#[test]
fn read_only_hides_and_refuses_every_action() {
    let env = Env::new();
    let s = seed(&env, Q);
    let mut config = Dashboard::config(&env);
    config.read_only = true;
    let web = Dashboard::start(&env, config);
    for path in [
        "/",
        "/queues/emails",
        "/queues/emails/pending",
        "/queues/emails/delayed",
        "/queues/emails/dead",
        "/queues/emails/consumers",
    ] {
        let page = web.get(path).ok();
        assert!(
            !page.contains("method=\"post\""),
            "{path} shows an action: {page}"
        );
        assert!(!page.contains("Purge"), "{path}");
    }
    let origin = format!("http://127.0.0.1:{}", web.port);
    for (path, id) in [
        ("/queues/emails/dead/replay", s.dead_noop_entry.as_str()),
        ("/queues/emails/run-now", &s.retrying),
        ("/queues/emails/pause", ""),
    ] {
        let r = web.post_raw(path, &[("id", id), ("csrf", "x")], &[("Origin", &origin)]);
        assert_eq!(r.status, 403, "{path}");
        assert!(r.body.contains("read-only"), "{}", r.body);
    }
    let r = web.get("/queues/emails/dead/confirm?action=purge&job=noop");
    assert_eq!(r.status, 403);
    assert_eq!(dead_len(&env), 2);
}

#[test]
fn cross_site_posts_are_refused() {
    let env = Env::new();
    let s = seed(&env, Q);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let csrf = web.csrf();
    let form = [("id", s.dead_noop_entry.as_str()), ("csrf", csrf.as_str())];
    let path = "/queues/emails/dead/replay";
    let r = web.post_raw(path, &form, &[("Origin", "http://evil.example")]);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("cross-site request refused"), "{}", r.body);
    let r = web.post_raw(path, &form, &[("Sec-Fetch-Site", "cross-site")]);
    assert_eq!(r.status, 403);
    let r = web.post_raw(path, &form[..1], &[]);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("CSRF token"), "{}", r.body);
    let r = web.post_raw(path, &[form[0], ("csrf", "0123")], &[]);
    assert_eq!(r.status, 403);
    assert_eq!(dead_len(&env), 2, "nothing replayed");
    // The same form from the page itself works.
    web.post(path, &form[..1]).redirect();
    assert_eq!(dead_len(&env), 1);
}

#[test]
fn a_token_is_required_by_bearer_query_or_cookie() {
    let env = Env::new();
    seed(&env, Q);
    let token = "a-token-long-enough-1234";
    let mut config = Dashboard::config(&env);
    config.auth = Some(millrace_web::Auth::Token(token.into()));
    let web = Dashboard::start(&env, config);
    let r = web.get("/queues/emails");
    assert_eq!(r.status, 401);
    assert!(!r.body.contains("emails"), "nothing of the queue leaks");
    assert_eq!(
        http(
            web.port,
            "GET",
            "/",
            &[("Authorization", "Bearer wrong-token-wrong-token")],
            ""
        )
        .status,
        401
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        http(web.port, "GET", "/", &[("Authorization", &bearer)], "").status,
        200
    );
    let r = web.get(&format!("/queues/emails/dead?job=noop&token={token}"));
    assert_eq!(r.redirect(), "/queues/emails/dead?job=noop");
    let cookie = r.header("set-cookie").unwrap_or_default().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap_or_default();
    assert_eq!(
        http(
            web.port,
            "GET",
            "/queues/emails/dead",
            &[("Cookie", pair)],
            ""
        )
        .status,
        200
    );
    // A POST with the cookie still needs the CSRF token.
    let r = http(
        web.port,
        "POST",
        "/queues/emails/resume",
        &[("Cookie", pair)],
        "",
    );
    assert_eq!(r.status, 403);
}

#[test]
fn basic_auth_asks_the_browser() {
    let env = Env::new();
    let mut config = Dashboard::config(&env);
    config.auth = Some(millrace_web::Auth::basic("ops:hunter22").unwrap_or_else(|e| panic!("{e}")));
    let web = Dashboard::start(&env, config);
    let r = web.get("/");
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic"))
    );
    // ops:hunter22 and ops:wrong
    assert_eq!(
        http(
            web.port,
            "GET",
            "/",
            &[("Authorization", "Basic b3BzOmh1bnRlcjIy")],
            ""
        )
        .status,
        200
    );
    assert_eq!(
        http(
            web.port,
            "GET",
            "/",
            &[("Authorization", "Basic b3BzOndyb25n")],
            ""
        )
        .status,
        401
    );
}

#[test]
fn a_public_address_without_auth_is_refused() {
    let env = Env::new();
    let mut config = Dashboard::config(&env);
    config.listen = "0.0.0.0:0".parse().unwrap_or(config.listen);
    let err = config
        .validate()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err,
        "refusing to serve the dashboard on non-loopback address 0.0.0.0:0 without --auth-token or --basic-auth"
    );
    config.auth = Some(millrace_web::Auth::Token("short".into()));
    let err = config
        .validate()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("at least 16 characters"), "{err}");
}

#[test]
fn pages_carry_security_headers() {
    let env = Env::new();
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let r = web.get("/");
    assert!(
        r.header("content-security-policy")
            .is_some_and(|c| c.contains("default-src 'self'"))
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    let js = web.get("/assets/app.js");
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(js.ok().contains("data-poll"));
}
