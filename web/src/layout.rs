//! The page shell, the action buttons (POST forms with the CSRF token,
//! absent on a read-only dashboard) and the throughput sparkline.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::app::App;

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · millrace" }
            link rel="stylesheet" href="/assets/app.css";
            script src="/assets/app.js" defer {}
        }
    }
}

/// A full page: header with the Redis (password hidden) and prefix, an
/// optional flash message, then `body`.
pub(crate) fn page(app: &App, title: &str, flash: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    a.brand href="/" { "millrace" }
                    nav.main { a href="/" { "Queues" } a href="/schedules" { "Schedules" } }
                    span.where { (app.config.redis_shown) " · prefix " code { (app.config.prefix) } }
                    @if app.config.read_only { span.badge { "read-only" } }
                }
                main {
                    @if let Some(f) = flash { p.flash role="status" { (f) } }
                    (body)
                }
            }
        }
    }
}

/// A page with no connection details (errors, 401).
pub(crate) fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { header { a.brand href="/" { "millrace" } } main { h1 { (title) } (body) } }
        }
    }
}

/// The hidden CSRF field every form carries.
pub(crate) fn csrf(app: &App) -> Markup {
    html! { input type="hidden" name="csrf" value=(app.csrf); }
}

/// A one-button POST form to `url` with hidden `fields`; nothing on a
/// read-only dashboard.
pub(crate) fn button(
    app: &App,
    url: &str,
    label: &str,
    class: &str,
    fields: &[(&str, &str)],
) -> Markup {
    if app.config.read_only {
        return html! {};
    }
    html! {
        form.inline method="post" action=(url) {
            (csrf(app))
            @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
            button type="submit" class=(class) { (label) }
        }
    }
}

/// A link styled as a button (to a confirmation page); nothing when
/// read-only.
pub(crate) fn link_button(app: &App, url: &str, label: &str, class: &str) -> Markup {
    if app.config.read_only {
        return html! {};
    }
    html! { a class=(format!("button {class}")) href=(url) { (label) } }
}

/// An inline SVG polyline of `series` (oldest first), scaled to its max.
pub(crate) fn sparkline(series: &[f64]) -> Markup {
    const W: f64 = 120.0;
    const H: f64 = 24.0;
    let series: Vec<f64> = match series {
        [] => return html! { span.muted { "–" } },
        [one] => vec![*one, *one],
        many => many.to_vec(),
    };
    let max = series.iter().copied().fold(0.0_f64, f64::max).max(1.0);
    let step = W / (series.len() - 1) as f64;
    let points: Vec<String> = series
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                H - 1.0 - v / max * (H - 2.0)
            )
        })
        .collect();
    let svg = format!(
        r#"<svg class="spark" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="processed per second, peak {max:.1}"><polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{}"/></svg>"#,
        points.join(" ")
    );
    PreEscaped(svg)
}

/// A query string from pairs, skipping empty values ("" when none).
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        s.append_pair(k, v);
        any = true;
    }
    if any {
        format!("?{}", s.finish())
    } else {
        String::new()
    }
}

/// `s` as one path segment: every byte but unreserved ones (RFC 3986)
/// percent-encoded.
pub(crate) fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The path of queue `q`'s page `rest` ("" for the queue itself), with the
/// name escaped.
pub(crate) fn queue_url(q: &str, rest: &str) -> String {
    if rest.is_empty() {
        format!("/queues/{}", segment(q))
    } else {
        format!("/queues/{}/{rest}", segment(q))
    }
}

/// The page of job (or entry) `id` of queue `q`.
pub(crate) fn job_url(q: &str, id: &str) -> String {
    queue_url(q, &format!("jobs/{}", segment(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_one_path_segment() {
        assert_eq!(
            job_url("a b", "x/y?z#1~2"),
            "/queues/a%20b/jobs/x%2Fy%3Fz%231~2"
        );
    }
}
