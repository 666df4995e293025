//! The content library: a gallery page rendered from the library's JSON API,
//! and a proxy (`/library/api/...` → `{library_url}/api/...`) that passes the
//! signed-in reviewer's token, so the page's script can upload, edit,
//! collect and export. Bodies are limited to `library_max_bytes` either way,
//! each exchange to `library_timeout`; the library not running is a clear
//! message (502 on the proxy, on the page a box saying what to start).

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::DashboardState;
use crate::auth::{Authed, check_csrf};
use crate::html::{esc, page, refusal_box, seg};
use crate::services::Refusal;

/// Query keys of the gallery that go to the library's search.
const FILTERS: &[&str] = &[
    "q",
    "kind",
    "source",
    "collection",
    "tag",
    "colour",
    "from",
    "to",
];
/// Items per gallery page.
const PAGE: usize = 60;

fn down(state: &DashboardState, e: &reqwest::Error) -> Refusal {
    let url = &state.opts().library_url;
    if e.is_timeout() {
        Refusal::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("the content library at {url} did not answer in time"),
        )
    } else {
        Refusal::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "the content library is not running at {url} (it is served by the ingest service: \
`concierto serve ingest` or `concierto up`)"
            ),
        )
    }
}

/// Reads an answer's body, at most `limit` bytes.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Bytes, Refusal> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(Refusal::new(
            StatusCode::BAD_GATEWAY,
            format!("the content library's answer is over {limit} bytes"),
        ));
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > limit {
                    return Err(Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        format!("the content library's answer is over {limit} bytes"),
                    ));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(Bytes::from(out)),
            Err(e) => {
                return Err(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    format!("the content library's answer broke off: {e}"),
                ));
            }
        }
    }
}

/// `GET {library}/api/{path}` as `who`, as JSON.
async fn get_json(state: &DashboardState, who: &Authed, path: &str) -> Result<Value, Refusal> {
    let url = format!("{}/api/{path}", state.opts().library_url);
    let resp = state
        .inner
        .http
        .get(&url)
        .bearer_auth(&who.token)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| down(state, &e))?;
    let status = resp.status();
    let body = read_limited(resp, state.opts().library_max_bytes).await?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_GATEWAY,
            format!("the content library answered something that is not JSON: {e}"),
        )
    })?;
    if !status.is_success() {
        let msg = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("the content library refused the request")
            .to_string();
        let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        return Err(Refusal::new(status, msg));
    }
    Ok(value)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `#rrggbb` only (it goes into an attribute).
fn is_hex_colour(h: &str) -> bool {
    h.len() == 7 && h.starts_with('#') && h[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn card(item: &Value, collections: &[String]) -> String {
    let id = s(item, "id");
    let title = s(item, "title");
    let thumb = if s(item, "media_type").starts_with("image/") {
        format!(
            "<img src=\"/library/api/items/{}/blob\" loading=\"lazy\" alt=\"{}\">",
            seg(id),
            esc(title)
        )
    } else {
        format!("<div class=\"no-thumb\">{}</div>", esc(s(item, "kind")))
    };
    let swatches: String = item
        .get("palette")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter(|sw| is_hex_colour(s(sw, "hex")))
                .map(|sw| {
                    let hex = s(sw, "hex");
                    let share = sw.get("share").and_then(Value::as_f64).unwrap_or(0.0);
                    // An SVG fill, not a style attribute: the page's policy
                    // allows no inline style.
                    format!(
                        "<a class=\"swatch\" title=\"{hex} {:.0}%\" href=\"/library?colour={}\">\
<svg viewBox=\"0 0 1 1\" aria-hidden=\"true\"><rect width=\"1\" height=\"1\" fill=\"{hex}\"/></svg></a>",
                        share * 100.0,
                        seg(hex)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let tags: String = strings(item, "tags")
        .iter()
        .map(|t| {
            format!(
                "<a class=\"tag\" href=\"/library?tag={}\">{}</a>",
                seg(t),
                esc(t)
            )
        })
        .collect();
    let in_cols = strings(item, "collections");
    let member: String = in_cols
        .iter()
        .map(|c| {
            format!(
                "<span class=\"in-collection\">{} <button type=\"button\" class=\"remove-from\" data-collection=\"{}\" data-item=\"{}\" title=\"Remove from {}\">×</button></span>",
                esc(c),
                esc(c),
                esc(id),
                esc(c)
            )
        })
        .collect();
    let options: String = collections
        .iter()
        .filter(|c| !in_cols.contains(c))
        .map(|c| format!("<option value=\"{}\">{}</option>", esc(c), esc(c)))
        .collect();
    let add = if options.is_empty() {
        String::new()
    } else {
        format!(
            "<select class=\"add-to\" data-item=\"{}\" aria-label=\"Add to a collection\"><option value=\"\">Add to collection…</option>{options}</select>",
            esc(id)
        )
    };
    format!(
        "<figure class=\"item\" data-id=\"{id_attr}\">{thumb}<figcaption>{title}</figcaption>\
<div class=\"swatches\">{swatches}</div><div class=\"tags\">{tags}</div><div class=\"collections\">{member}{add}</div></figure>",
        id_attr = esc(id),
        title = esc(title),
    )
}

/// `GET /library`: search, filters, collections, upload, the gallery.
async fn page_handler(state: &DashboardState, who: &Authed, raw: Option<&str>) -> Response {
    let params: Vec<(String, String)> = raw
        .map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
        .unwrap_or_default();
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let mut query: Vec<(&str, &str)> = FILTERS
        .iter()
        .map(|k| (*k, get(k)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let limit = PAGE.to_string();
    query.push(("limit", &limit));
    let qs = serde_urlencoded::to_string(&query).unwrap_or_default();

    let collections = match get_json(state, who, "collections").await {
        Ok(v) => v,
        Err(r) => {
            let body = format!("<section id=\"library\">{}</section>", refusal_box(&r));
            return page(state, who, r.status, "Library", "/library", &body);
        }
    };
    let cols: Vec<&Value> = collections
        .get("collections")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let names: Vec<String> = cols.iter().map(|c| s(c, "name").to_string()).collect();
    let (status, gallery) = match get_json(state, who, &format!("items?{qs}")).await {
        Ok(v) => {
            let items: Vec<&Value> = v
                .get("items")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let total = v.get("total").and_then(Value::as_u64).unwrap_or(0);
            let cards: String = items.iter().map(|i| card(i, &names)).collect();
            (
                StatusCode::OK,
                format!(
                    "<p class=\"muted\" id=\"total\">{total} items{}</p><div class=\"gallery\" id=\"gallery\">{cards}</div>",
                    if total as usize > items.len() {
                        format!(", the first {} shown", items.len())
                    } else {
                        String::new()
                    }
                ),
            )
        }
        Err(r) => (r.status, refusal_box(&r)),
    };
    let col_list: String = cols
        .iter()
        .map(|c| {
            let name = s(c, "name");
            let n = c
                .get("items")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0);
            format!(
                "<li data-collection=\"{attr}\"><a href=\"/library?collection={link}\">{name_html}</a> <span class=\"muted\">{n}</span> \
<a href=\"/library/api/collections/{link}/export.html\" class=\"export\">mood board</a> \
<a href=\"/library/api/collections/{link}/export.json\" class=\"export\">JSON</a></li>",
                attr = esc(name),
                link = seg(name),
                name_html = esc(name),
            )
        })
        .collect();
    let field = |k: &str, label: &str| {
        format!(
            "<label>{label} <input name=\"{k}\" value=\"{}\"></label>",
            esc(get(k))
        )
    };
    let body = format!(
        "<section id=\"library\" class=\"library\">\
<form method=\"get\" action=\"/library\" class=\"search\" id=\"search\">\
<input type=\"search\" name=\"q\" value=\"{q}\" placeholder=\"Search titles, text, tags, concepts\" aria-label=\"Search\">\
{tag}{kind}{source}{colour}{collection}<button type=\"submit\">Search</button> <a href=\"/library\">clear</a></form>\
<div class=\"dropzone\" id=\"dropzone\" tabindex=\"0\">Drop images here to upload them (several at once), or \
<label class=\"link\">choose files<input type=\"file\" id=\"upload-input\" multiple accept=\"image/*\" hidden></label>\
<div id=\"upload-status\" role=\"status\"></div></div>\
<div class=\"columns\"><aside><h2>Collections</h2><ul id=\"collections\">{col_list}</ul>\
<form id=\"new-collection\" class=\"stack\"><input name=\"name\" placeholder=\"New collection\" required aria-label=\"New collection name\">\
<input name=\"description\" placeholder=\"What it is for\" aria-label=\"Description\"><button type=\"submit\">Create</button></form>\
<div id=\"library-status\" role=\"status\"></div></aside>\
<div>{gallery}</div></div></section>",
        q = esc(get("q")),
        tag = field("tag", "Tag"),
        kind = field("kind", "Kind"),
        source = field("source", "Source"),
        colour = field("colour", "Colour"),
        collection = field("collection", "Collection"),
    );
    page(state, who, status, "Library", "/library", &body)
}

/// `GET /library`.
pub(crate) async fn gallery(
    State(state): State<DashboardState>,
    who: Authed,
    RawQuery(raw): RawQuery,
) -> Response {
    page_handler(&state, &who, raw.as_deref()).await
}

fn json_error(r: &Refusal) -> Response {
    (r.status, axum::Json(json!({ "error": r.message }))).into_response()
}

/// `ANY /library/api/{*path}`: the library's API as the signed-in reviewer.
pub(crate) async fn proxy(
    State(state): State<DashboardState>,
    who: Authed,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::GET
        && method != Method::HEAD
        && let Err(r) = check_csrf(&state, &headers, None)
    {
        return r.into_response();
    }
    // The path as sent (still percent-encoded), so ids and names pass unchanged.
    let rest = uri.path().strip_prefix("/library/api/").unwrap_or_default();
    // Checked encoded and decoded: the HTTP client reads `%2e%2e` as `..` and
    // `\` as `/`, so neither may reach it.
    let bad_segment = |p: &str| {
        let decoded = percent_decode(p);
        p.is_empty() || decoded == "." || decoded == ".." || decoded.contains(['/', '\\'])
    };
    if rest.is_empty() || rest.contains('\\') || rest.split('/').any(bad_segment) {
        return json_error(&Refusal::new(
            StatusCode::BAD_REQUEST,
            "not a content library path",
        ));
    }
    let mut url = format!("{}/api/{rest}", state.opts().library_url);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(&q);
    }
    let Ok(m) = reqwest::Method::from_bytes(method.as_str().as_bytes()) else {
        return json_error(&Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "unsupported method",
        ));
    };
    let mut req = state.inner.http.request(m, &url).bearer_auth(&who.token);
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::IF_NONE_MATCH] {
        if let Some(v) = headers.get(&name).and_then(|v| v.to_str().ok()) {
            req = req.header(name.as_str(), v);
        }
    }
    if !body.is_empty() {
        req = req.body(body);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return json_error(&down(&state, &e)),
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut keep = HeaderMap::new();
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_DISPOSITION,
        header::ETAG,
        header::CACHE_CONTROL,
    ] {
        if let Some(v) = resp
            .headers()
            .get(name.as_str())
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        {
            keep.insert(name, v);
        }
    }
    // Stored files (SVG among them) must never run as the dashboard's page.
    keep.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    keep.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    match read_limited(resp, state.opts().library_max_bytes).await {
        Ok(bytes) => (status, keep, bytes).into_response(),
        Err(r) => json_error(&r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_hex_colours_reach_an_attribute() {
        assert!(is_hex_colour("#a1b2c3"));
        assert!(!is_hex_colour("#a1b2c"));
        assert!(!is_hex_colour("red;x:url(y)"));
        assert!(!is_hex_colour("#a1b2cg"));
    }

    #[test]
    fn a_card_shows_thumbnail_swatches_tags_and_collection_actions() {
        let item = json!({
            "id": "abc", "title": "Poster <1>", "kind": "image", "media_type": "image/png",
            "palette": [{"hex": "#ff0000", "share": 0.5}, {"hex": "bad", "share": 0.5}],
            "tags": ["neon"], "collections": ["spring"]
        });
        let html = card(&item, &["spring".into(), "summer".into()]);
        assert!(
            html.contains("src=\"/library/api/items/abc/blob\""),
            "{html}"
        );
        assert!(html.contains("Poster &lt;1&gt;"), "{html}");
        assert_eq!(html.matches("class=\"swatch\"").count(), 1, "{html}");
        assert!(html.contains("fill=\"#ff0000\""), "an SVG fill: {html}");
        assert!(!html.contains("style="), "no inline style: {html}");
        assert!(html.contains("href=\"/library?tag=neon\""), "{html}");
        assert!(html.contains("data-collection=\"spring\""), "{html}");
        assert!(html.contains("<option value=\"summer\">"), "{html}");
        assert!(!html.contains("<option value=\"spring\">"), "{html}");
    }
}

/// `%XX` escapes decoded (invalid ones kept as written), for path checks.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod path_tests {
    use super::percent_decode;

    #[test]
    fn encoded_dots_decode() {
        assert_eq!(percent_decode("%2e%2E"), "..");
        assert_eq!(percent_decode(".%2e"), "..");
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("items"), "items");
    }
}
