//! The content library over HTTP: the JSON API the dashboard and scripts use
//! to browse, search, upload, edit, collect and export.
//!
//! ```text
//!  request ──▶ auth (Authorization: Bearer <token> → identity)
//!                │ writes always; reads unless `read_requires_token` is off
//!                ▼
//!  handler ──▶ spawn_blocking(ContentLibrary call) ──▶ JSON, or {"error": "..."}
//! ```
//!
//! | route | answers |
//! |---|---|
//! | `GET /api/items?q=&kind=&source=&collection=&tag=&colour=&delta_e=&min_share=&from=&to=&limit=&offset=` | 200 `{total, items: [item + score]}`; 400 (also search text over a limit: [`MAX_QUERY_CHARS`](crate::MAX_QUERY_CHARS), [`MAX_QUERY_TERMS`](crate::MAX_QUERY_TERMS), [`MAX_QUERY_DEPTH`](crate::MAX_QUERY_DEPTH)) |
//! | `GET /api/items/{id}` | 200 the item; 404 |
//! | `GET /api/items/{id}/blob` | 200 the original bytes (`ETag`, `Cache-Control`), 304; 404 |
//! | `PATCH /api/items/{id}` `{title?, tags?, notes?}` | 200 the item; 400, 401, 404, 409 (superseded) |
//! | `POST /api/upload` multipart `file`… + `tags`, `collection`, `source` | 201 / 200 `{items, refused}`; 400, 401, 404, 413, 415 |
//! | `GET /api/collections` | 200 `{collections}` |
//! | `POST /api/collections` `{name, description?}` | 201 the collection; 400, 401, 409 |
//! | `GET /api/collections/{name}` | 200 the collection with its items; 404 |
//! | `DELETE /api/collections/{name}` | 204; 401, 404 |
//! | `POST /api/collections/{name}/items` `{id}` | 201 `{added: true}`, 200 `{added: false}`; 400, 401, 404, 409 |
//! | `DELETE /api/collections/{name}/items/{id}` | 200 `{removed: true}`; 401, 404 |
//! | `GET /api/collections/{name}/export.html` | 200 the mood board (attachment); 404 |
//! | `GET /api/collections/{name}/export.json` | 200 the collection as JSON (attachment); 404 |
//! | `GET /healthz` | 200 `{"status": "ok"}` (never needs a token) |
//!
//! Reads answer 401 without a valid token unless
//! [`ApiOptions::read_requires_token`] is turned off (the studio's
//! `server.library_public: true`). A JSON body in another media type is
//! answered 415, a malformed one 400, one over 1 MiB 413.
//!
//! # Uploads
//!
//! Every `file` field is checked by its content
//! ([`sniff_image_type`](crate::extract::sniff_image_type): PNG, JPEG, WebP,
//! GIF), never by its name or declared type. A file that is not one of
//! those, or does not decode, is refused with its reason and the others are
//! still stored. A file over [`ApiOptions::max_file_bytes`], files over
//! [`ApiOptions::max_upload_bytes`] together, or more than
//! [`ApiOptions::max_files`] files refuse the whole upload with 413 and store
//! nothing. An image whose header declares more pixels than
//! [`MAX_DIMENSION`](crate::extract::MAX_DIMENSION) a side or more memory
//! than [`MAX_DECODE_BYTES`](crate::extract::MAX_DECODE_BYTES) (a
//! decompression bomb) is refused before it is decoded; at most
//! [`MAX_CONCURRENT_DECODES`](crate::extract::MAX_CONCURRENT_DECODES) images
//! decode at once. The answer is 201 when something new was stored, 200 when
//! every file was known already, and 413 (an image over a decoding limit),
//! 415 (not an image) or 400 with the same body plus an `error` when every
//! file was refused.
//!
//! An upload's source key is `<sha256 of the bytes>/<file name>`, so the same
//! bytes uploaded again are [`Outcome::Unchanged`](crate::Outcome::Unchanged)
//! (the upload's tags are added to the item) and two different files with
//! the same name never replace each other.

use std::fmt;
use std::sync::Arc;

use axum::extract::multipart::MultipartError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[cfg(feature = "openapi")]
pub mod openapi;
mod upload;

use crate::error::{ContentError, ErrorKind};
use crate::library::ContentLibrary;
use crate::model::{ColourFilter, Edit, Item, Kind, Query};

/// What of a running content API can change while it serves (a changed
/// studio): whether reads need a token. Cheap to clone; see
/// [`router_with_control`].
#[derive(Debug, Clone)]
pub struct ApiControl {
    read_requires_token: Arc<std::sync::atomic::AtomicBool>,
}

impl ApiControl {
    /// Whether reads need a token now.
    pub fn read_requires_token(&self) -> bool {
        self.read_requires_token
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads need a token from the next request on (`true`), or are public.
    pub fn set_read_requires_token(&self, on: bool) {
        self.read_requires_token
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// What `studio` says (`server.library_public`), from the next request on.
    pub fn follow_studio(&self, studio: &concierto_core::config::Studio) {
        self.set_read_requires_token(ApiOptions::for_studio(studio).read_requires_token);
    }
}

/// Maps a bearer token to the identity it belongs to (`None`: unknown token).
pub type TokenAuth = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Largest JSON request body (`PATCH`, collections).
const MAX_JSON_BYTES: usize = 1024 * 1024;
/// Room for multipart boundaries and part headers on top of the file bytes.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// How the API runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiOptions {
    /// Reads (`GET`) need a valid bearer token too (writes always do); on by
    /// default, off for a studio with `server.library_public: true`.
    pub read_requires_token: bool,
    /// Largest single uploaded file (25 MiB by default).
    pub max_file_bytes: usize,
    /// Largest upload, all its files together (100 MiB by default).
    pub max_upload_bytes: usize,
    /// Most files in one upload (32 by default).
    pub max_files: usize,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            read_requires_token: true,
            max_file_bytes: 25 * 1024 * 1024,
            max_upload_bytes: 100 * 1024 * 1024,
            max_files: 32,
        }
    }
}

impl ApiOptions {
    /// The defaults, with reads public when the studio says
    /// `server.library_public: true`.
    pub fn for_studio(studio: &concierto_core::config::Studio) -> Self {
        ApiOptions {
            read_requires_token: !studio.server.library_public,
            ..ApiOptions::default()
        }
    }

    /// Checks the options; the error says which one to fix.
    pub fn validate(&self) -> Result<(), ContentError> {
        let bad = |m: &str| Err(ContentError::Invalid(format!("content API options: {m}")));
        if self.max_file_bytes == 0 || self.max_upload_bytes == 0 || self.max_files == 0 {
            return bad("max_file_bytes, max_upload_bytes and max_files must be more than 0");
        }
        if self.max_file_bytes > self.max_upload_bytes {
            return bad("max_file_bytes must not be more than max_upload_bytes");
        }
        Ok(())
    }
}

#[derive(Clone)]
struct ApiState {
    library: Arc<ContentLibrary>,
    auth: TokenAuth,
    opts: ApiOptions,
    control: ApiControl,
}

/// The content API's routes (see the [module docs](self) for the table), with
/// their body limits applied, ready to be merged into another server.
pub fn router(library: Arc<ContentLibrary>, auth: TokenAuth, opts: ApiOptions) -> Router {
    router_with_control(library, auth, opts).0
}

/// [`router`], with the [`ApiControl`] that changes whether reads need a
/// token while it serves (the token check itself is `auth`'s, called per
/// request: give one that reads the current studio).
pub fn router_with_control(
    library: Arc<ContentLibrary>,
    auth: TokenAuth,
    opts: ApiOptions,
) -> (Router, ApiControl) {
    let upload_limit = opts.max_upload_bytes.saturating_add(MULTIPART_OVERHEAD);
    let control = ApiControl {
        read_requires_token: Arc::new(std::sync::atomic::AtomicBool::new(opts.read_requires_token)),
    };
    let state = ApiState {
        library,
        auth,
        opts,
        control: control.clone(),
    };
    let router = Router::new()
        .route(
            "/healthz",
            routing::get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/api/items", routing::get(search))
        .route("/api/items/{id}", routing::get(get_item).patch(patch_item))
        .route("/api/items/{id}/blob", routing::get(get_blob))
        .route(
            "/api/upload",
            routing::post(upload::upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/api/collections",
            routing::get(list_collections).post(create_collection),
        )
        .route(
            "/api/collections/{name}",
            routing::get(get_collection).delete(delete_collection),
        )
        .route("/api/collections/{name}/items", routing::post(add_item))
        .route(
            "/api/collections/{name}/items/{id}",
            routing::delete(remove_item),
        )
        .route(
            "/api/collections/{name}/export.html",
            routing::get(export_html),
        )
        .route(
            "/api/collections/{name}/export.json",
            routing::get(export_json),
        )
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .with_state(state);
    (router, control)
}

// ---------------------------------------------------------------------------
// Errors

/// A refusal or failure: its status and a line that says what to do, answered
/// as `{"error": "..."}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    fn internal(message: impl fmt::Display) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl From<ContentError> for ApiError {
    fn from(e: ContentError) -> Self {
        let status = match e.kind() {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<MultipartError> for ApiError {
    fn from(e: MultipartError) -> Self {
        let status = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, format!("multipart body: {}", e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(error = %self.message, "content API request failed");
            // The details are in the log; the caller gets what to do.
            let body = Json(json!({
                "error": "the content library failed (storage or index); see the server log and retry"
            }));
            return (self.status, body).into_response();
        }
        tracing::debug!(error = %self.message, status = self.status.as_u16(), "content API request refused");
        let mut res = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"concierto\""),
            );
        }
        res
    }
}

/// Runs a library call on a blocking thread.
async fn run<T, F>(library: &Arc<ContentLibrary>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&ContentLibrary) -> Result<T, ApiError> + Send + 'static,
{
    let library = library.clone();
    tokio::task::spawn_blocking(move || f(&library))
        .await
        .map_err(|e| ApiError::internal(format!("library call did not finish: {e}")))?
}

/// A JSON body, or the status its rejection deserves (415 wrong media type,
/// 413 too large, 400 otherwise).
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(v)) => Ok(v),
        Err(e) => {
            let status = match &e {
                JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                JsonRejection::BytesRejection(_) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    StatusCode::PAYLOAD_TOO_LARGE
                }
                _ => StatusCode::BAD_REQUEST,
            };
            Err(ApiError::new(status, e.body_text()))
        }
    }
}

// ---------------------------------------------------------------------------
// Authentication

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer <token>` header"))?
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ));
    }
    Ok(token)
}

fn identify(parts: &Parts, state: &ApiState) -> Result<String, ApiError> {
    let token = bearer(parts)?;
    (state.auth)(token).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unknown token: use a token whose SHA-256 is a reviewer's token_sha256",
        )
    })
}

/// The identity behind a write: 401 without a valid token.
struct Writer(String);

impl FromRequestParts<ApiState> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        identify(parts, state).map(Writer)
    }
}

/// Permission to read: a valid token when reads require one.
struct Reader;

impl FromRequestParts<ApiState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        if state.control.read_requires_token() {
            identify(parts, state)?;
        }
        Ok(Reader)
    }
}

// ---------------------------------------------------------------------------
// Items

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct HitOut {
    #[serde(flatten)]
    item: Item,
    score: Option<f32>,
}

/// A time given as ms since the epoch, RFC 3339, or a `YYYY-MM-DD` date (UTC midnight).
fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp_millis());
    }
    if let Some(t) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(t.and_utc().timestamp_millis());
    }
    Err(ApiError::bad_request(format!(
        "{name}={v:?}: give ms since the Unix epoch, an RFC 3339 time or a YYYY-MM-DD date"
    )))
}

fn parse_number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ApiError> {
    v.parse()
        .map_err(|_| ApiError::bad_request(format!("{name}={v:?} is not a valid number")))
}

/// The search parameters of `GET /api/items`. Empty values count as absent;
/// `tag` may be repeated or comma-separated (every tag must match).
fn parse_query(raw: Option<&str>) -> Result<Query, ApiError> {
    let mut q = Query::default();
    let mut colour: Option<String> = None;
    let mut delta_e: Option<f32> = None;
    let mut min_share: Option<f32> = None;
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match k.as_ref() {
            "q" => q.text = v.to_string(),
            "kind" => q.kind = Some(v.parse::<Kind>()?),
            "source" => q.source = Some(v.to_string()),
            "collection" => q.collection = Some(v.to_string()),
            "tag" => q.tags.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
            ),
            "colour" | "color" => {
                crate::colour::parse_hex(v)?;
                colour = Some(v.to_string());
            }
            "delta_e" => {
                let d: f32 = parse_number("delta_e", v)?;
                if !(d.is_finite() && d > 0.0 && d <= 100.0) {
                    return Err(ApiError::bad_request(format!(
                        "delta_e={v}: give a colour difference above 0 and at most 100 (10 is close)"
                    )));
                }
                delta_e = Some(d);
            }
            "min_share" => {
                let s: f32 = parse_number("min_share", v)?;
                if !(0.0..=1.0).contains(&s) {
                    return Err(ApiError::bad_request(format!(
                        "min_share={v}: give a fraction from 0 to 1"
                    )));
                }
                min_share = Some(s);
            }
            "from" => q.since_ms = Some(parse_time("from", v)?),
            "to" => q.until_ms = Some(parse_time("to", v)?),
            "limit" => q.limit = parse_number("limit", v)?,
            "offset" => q.offset = parse_number("offset", v)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}: use q, kind, source, collection, tag, colour, \
                     delta_e, min_share, from, to, limit, offset"
                )));
            }
        }
    }
    match colour {
        Some(hex) => {
            let mut f = ColourFilter {
                hex,
                max_delta_e: 10.0,
                min_share: min_share.unwrap_or(0.0),
            };
            if let Some(d) = delta_e {
                f.max_delta_e = d;
            }
            q.colour = Some(f);
        }
        None if delta_e.is_some() || min_share.is_some() => {
            return Err(ApiError::bad_request(
                "delta_e and min_share need a colour: add colour=%23rrggbb",
            ));
        }
        None => {}
    }
    if q.limit > 1000 {
        return Err(ApiError::bad_request(format!(
            "limit={}: at most 1000; page with offset",
            q.limit
        )));
    }
    Ok(q)
}

async fn search(
    _: Reader,
    State(st): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query = parse_query(raw.as_deref())?;
    let page = run(&st.library, move |lib| Ok(lib.search(&query)?)).await?;
    let items: Vec<HitOut> = page
        .hits
        .into_iter()
        .map(|h| HitOut {
            item: h.item,
            score: h.score,
        })
        .collect();
    Ok(Json(json!({ "total": page.total, "items": items })))
}

fn no_item(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no content item {id:?}: check the id (a content hash) with a search"
    ))
}

async fn get_item(
    _: Reader,
    State(st): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Item>, ApiError> {
    let found = {
        let id = id.clone();
        run(&st.library, move |lib| Ok(lib.get(&id)?)).await?
    };
    found.map(Json).ok_or_else(|| no_item(&id))
}

async fn get_blob(
    _: Reader,
    State(st): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let etag = format!("\"{id}\"");
    let cache = if st.control.read_requires_token() {
        "private, max-age=31536000, immutable"
    } else {
        "public, max-age=31536000, immutable"
    };
    let fixed = [
        (header::CACHE_CONTROL, cache.to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox".to_string(),
        ),
    ];
    let found = {
        let id = id.clone();
        run(&st.library, move |lib| Ok(lib.blob(&id)?)).await?
    };
    let Some(blob) = found else {
        return Err(ApiError::not_found(format!(
            "content item {id:?} has no stored bytes (only images keep theirs), or does not exist"
        )));
    };
    // The id is the hash of the bytes: they never change under it.
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, fixed, [(header::ETAG, etag)]).into_response());
    }
    Ok((
        fixed,
        [
            (header::CONTENT_TYPE, blob.media_type),
            (header::ETAG, etag),
        ],
        blob.bytes,
    )
        .into_response())
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
struct EditBody {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    notes: Option<String>,
}

async fn patch_item(
    Writer(who): Writer,
    State(st): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<EditBody>, JsonRejection>,
) -> Result<Json<Item>, ApiError> {
    let body = json_body(body)?;
    if body.title.is_none() && body.tags.is_none() && body.notes.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give title, tags or notes",
        ));
    }
    let edit = Edit {
        title: body.title,
        tags: body.tags,
        notes: body.notes,
    };
    let item = run(&st.library, move |lib| Ok(lib.update(&id, edit)?)).await?;
    tracing::info!(who = %who, id = %item.id, "content item edited");
    Ok(Json(item))
}

// ---------------------------------------------------------------------------
// Collections

async fn list_collections(
    _: Reader,
    State(st): State<ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let all = run(&st.library, |lib| Ok(lib.collections()?)).await?;
    Ok(Json(json!({ "collections": all })))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
struct NewCollection {
    name: String,
    #[serde(default)]
    description: String,
}

async fn create_collection(
    Writer(who): Writer,
    State(st): State<ApiState>,
    body: Result<Json<NewCollection>, JsonRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    let name = body.name.trim().to_string();
    let c = run(&st.library, move |lib| {
        Ok(lib.create_collection(&name, &body.description)?)
    })
    .await?;
    tracing::info!(who = %who, collection = %c.name, "collection created");
    Ok((StatusCode::CREATED, Json(c)).into_response())
}

async fn get_collection(
    _: Reader,
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (c, items) = run(&st.library, move |lib| {
        Ok((lib.collection(&name)?, lib.collection_items(&name)?))
    })
    .await?;
    Ok(Json(json!({
        "name": c.name,
        "description": c.description,
        "created_ms": c.created_ms,
        "updated_ms": c.updated_ms,
        "items": items,
    })))
}

async fn delete_collection(
    Writer(who): Writer,
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let n = name.clone();
    run(&st.library, move |lib| Ok(lib.delete_collection(&n)?)).await?;
    tracing::info!(who = %who, collection = %name, "collection deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
struct AddItem {
    id: String,
}

async fn add_item(
    Writer(who): Writer,
    State(st): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Json<AddItem>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = json_body(body)?.id;
    let (n, i) = (name.clone(), id.clone());
    let added = run(&st.library, move |lib| Ok(lib.add_to_collection(&n, &i)?)).await?;
    tracing::info!(who = %who, collection = %name, id = %id, added, "collection item added");
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "added": added }))).into_response())
}

async fn remove_item(
    Writer(who): Writer,
    State(st): State<ApiState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (n, i) = (name.clone(), id.clone());
    let removed = run(&st.library, move |lib| {
        Ok(lib.remove_from_collection(&n, &i)?)
    })
    .await?;
    if !removed {
        return Err(ApiError::not_found(format!(
            "content item {id:?} is not in collection {name:?}"
        )));
    }
    tracing::info!(who = %who, collection = %name, id = %id, "collection item removed");
    Ok(Json(json!({ "removed": true })))
}

/// `Content-Disposition: attachment` with an ASCII fallback name and the
/// exact one in RFC 5987 form.
fn attachment(name: &str, ext: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ascii = ascii.trim();
    let ascii = if ascii.is_empty() {
        "collection"
    } else {
        ascii
    };
    let exact: String =
        url::form_urlencoded::byte_serialize(format!("{name}.{ext}").as_bytes()).collect();
    // byte_serialize writes spaces as `+`; RFC 5987 wants `%20`.
    let exact = exact.replace('+', "%20");
    format!("attachment; filename=\"{ascii}.{ext}\"; filename*=UTF-8''{exact}")
}

async fn export_html(
    _: Reader,
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let n = name.clone();
    let html = run(&st.library, move |lib| Ok(lib.export_moodboard_html(&n)?)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, attachment(&name, "html")),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        html,
    )
        .into_response())
}

async fn export_json(
    _: Reader,
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let n = name.clone();
    let v = run(&st.library, move |lib| Ok(lib.export_json(&n)?)).await?;
    Ok((
        [
            (header::CONTENT_DISPOSITION, attachment(&name, "json")),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Json(v),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_parse_and_bad_ones_are_refused() {
        let q = parse_query(Some(
            "q=riso&kind=image&tag=a,b&tag=c&colour=%231f3a5f&delta_e=5&limit=5&offset=10&from=2026-03-01&to=1700000000000&source=",
        ))
        .unwrap();
        assert_eq!(q.text, "riso");
        assert_eq!(q.kind, Some(Kind::Image));
        assert_eq!(q.tags, ["a", "b", "c"]);
        assert_eq!(q.colour.as_ref().map(|c| c.max_delta_e), Some(5.0));
        assert_eq!((q.limit, q.offset), (5, 10));
        assert_eq!(q.since_ms, Some(1_772_323_200_000));
        assert_eq!(q.until_ms, Some(1_700_000_000_000));
        assert_eq!(q.source, None);
        for bad in [
            "colour=%23zzz",
            "delta_e=5",
            "kind=video",
            "limit=-1",
            "limit=5000",
            "from=yesterday",
            "colur=%23fff",
        ] {
            let e = parse_query(Some(bad)).expect_err(bad);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn attachment_names_are_safe() {
        assert_eq!(
            attachment("Spring \"board\"/é", "html"),
            "attachment; filename=\"Spring _board___.html\"; filename*=UTF-8''Spring%20%22board%22%2F%C3%A9.html"
        );
    }
}
