//! The UI kit: what every page is made of, and knows nothing of any
//! product or route's logic. The frame of a page (layout, style,
//! navigation), form bodies as pairs, and where a page sends the browser to
//! declare a purpose. Every other module of the server may use it; it uses
//! none of them, so pages never form a cycle through it.

use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};

const STYLE: &str = r#"
:root { --fg:#1d1d1d; --muted:#4b4b4b; --bg:#fff; --line:#b1b4b6; --blue:#005eb8; --free:#e8f5e9; --free-b:#1b5e20; --occ:#e3ecf7; --occ-b:#003087; --closed:#eeeeee; --closed-b:#4b4b4b; --warn:#8a1c00; }
* { box-sizing: border-box; }
body { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Arial, sans-serif; color: var(--fg); background: var(--bg); margin: 0; }
header { background: var(--blue); color: #fff; padding: .6rem 1rem; display: flex; gap: 1.5rem; align-items: center; flex-wrap: wrap; }
header a { color: #fff; font-weight: 600; }
header .instance { margin-left: auto; font-size: .9rem; }
main { padding: 1rem; max-width: 1400px; }
a { color: var(--blue); }
a:focus, button:focus, input:focus, select:focus, summary:focus { outline: 3px solid #ffb81c; outline-offset: 1px; }
h1 { font-size: 1.6rem; margin: .2rem 0 .8rem; }
h2 { font-size: 1.25rem; margin: 1.4rem 0 .4rem; }
h3 { font-size: 1.05rem; margin: 1rem 0 .3rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; }
th, td { border-bottom: 1px solid var(--line); padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.summary { display: flex; gap: .8rem; flex-wrap: wrap; margin: .4rem 0 1rem; padding: 0; list-style: none; }
.summary li { border: 1px solid var(--line); padding: .4rem .8rem; min-width: 7rem; }
.summary b { display: block; font-size: 1.4rem; }
.beds { display: grid; grid-template-columns: repeat(auto-fill, minmax(12.5rem, 1fr)); gap: .35rem; list-style: none; padding: 0; margin: .3rem 0 1rem; }
.bed { border: 2px solid; padding: .25rem .45rem; min-height: 3.1rem; font-size: .9rem; }
.bed .label { font-weight: 600; }
.bed.free { background: var(--free); border-color: var(--free-b); }
.bed.occupied { background: var(--occ); border-color: var(--occ-b); }
.bed.closed { background: var(--closed); border-color: var(--closed-b); border-style: dashed; }
.bed .flags { font-size: .8rem; color: var(--warn); font-weight: 600; }
.chart rect.occupied { fill: #003087; } .chart rect.free { fill: #2e7d32; } .chart rect.closed { fill: #9e9e9e; } .chart rect.bar { fill: #005eb8; }
.chart .heat-0 { fill: #d5281b; } .chart .heat-1 { fill: #ed8b00; } .chart .heat-2 { fill: #ffeb3b; } .chart .heat-3 { fill: #a5d6a7; } .chart .heat-4 { fill: #e8f5e9; }
.chart .series-0 { fill: #005eb8; stroke: #005eb8; } .chart .series-1 { fill: #78be20; stroke: #78be20; } .chart .series-2 { fill: #ed8b00; stroke: #ed8b00; } .chart .series-3 { fill: #7c2855; stroke: #7c2855; }
.chart polyline { fill: none; stroke-width: 2.5; } .chart line.grid { stroke: #d8dde0; }
.chart-label { font-size: 12px; fill: var(--fg); }
.legend span { display: inline-block; margin-right: 1rem; } .legend i { display: inline-block; width: .9rem; height: .9rem; margin-right: .3rem; vertical-align: -2px; }
.error { color: var(--warn); font-weight: 600; }
.hint, .muted { color: var(--muted); }
pre.raw { background: #f3f3f3; padding: .5rem; overflow-x: auto; white-space: pre-wrap; word-break: break-all; max-width: 100%; }
form.inline { display: inline; }
label { display: block; margin-top: .5rem; font-weight: 600; }
fieldset { border: 1px solid var(--line); margin: .6rem 0; }
button { background: var(--blue); color: #fff; border: 0; padding: .45rem 1rem; font-size: 1rem; margin-top: .6rem; cursor: pointer; }
.live { font-size: .9rem; color: var(--muted); }
"#;

/// The frame of every page.
pub fn layout(title: &str, ods: Option<&str>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en-GB" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · OpenFDP" }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    header {
                        strong { "OpenFDP" }
                        nav aria-label="Main" {
                            a href="/" { "Instance" } " "
                            a href="/bed-board" { "Bed board" } " "
                            a href="/products" { "Products" } " "
                            a href="/marketplace" { "Marketplace" } " "
                            a href="/sources" { "Sources" } " "
                            a href="/tables" { "Tables" } " "
                            a href="/lineage" { "Lineage" } " "
                            a href="/quarantine" { "Quarantine" } " "
                            a href="/federation" { "Federation" } " "
                            a href="/returns" { "Returns" } " "
                            a href="/capacity" { "Capacity" } " "
                            a href="/referrals" { "Referrals" } " "
                            a href="/mutual-aid" { "Mutual aid" } " "
                            a href="/audit" { "Audit" } " "
                            a href="/purpose" { "Purpose" }
                        }
                        @if let Some(ods) = ods { span.instance { "Instance " (ods) } }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// Send the browser to declare a purpose, then back to `next`.
pub(crate) fn to_checkpoint(next: &str) -> Response {
    Redirect::to(&format!("/purpose?next={}", encode(next))).into_response()
}

fn encode(s: &str) -> String {
    percent_encode(s, b"-_.~/")
}

/// `s` as one segment of a path: a `/` in it is encoded too.
pub(crate) fn path_segment(s: &str) -> String {
    percent_encode(s, b"-_.~")
}

fn percent_encode(s: &str, kept: &[u8]) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || kept.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Only paths on this instance: an open redirect would let a link signed
/// by us send staff anywhere.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    // A browser drops tabs and line breaks from a URL before reading it,
    // and reads `\\` as `/`, so "/\t/evil.example" would leave for
    // another host: a path stays only if nothing in it can be read so.
    let on_this_instance = |n: &str| {
        n.starts_with('/')
            && !n.starts_with("//")
            && !n.contains('\\')
            && !n.chars().any(|c| c.is_control() || c.is_whitespace())
    };
    match next {
        Some(n) if on_this_instance(n) => n.to_string(),
        _ => "/".to_string(),
    }
}

/// Decode `application/x-www-form-urlencoded`, keeping repeated keys.
pub(crate) fn form_pairs(body: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    match u8::from_str_radix(
                        std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                        16,
                    ) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_instance() {
        assert_eq!(
            safe_next(Some("/tables/patient/rows")),
            "/tables/patient/rows"
        );
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        for hidden in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            " //evil.example",
            "/ /evil.example",
        ] {
            assert_eq!(safe_next(Some(hidden)), "/", "{hidden:?}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(encode("/tables/a b?x=1"), "/tables/a%20b%3Fx%3D1");
    }
}
