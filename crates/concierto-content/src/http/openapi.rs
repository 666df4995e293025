//! The content library API as OpenAPI 3.1 (feature `openapi`): the routes of
//! [`router`](super::router) with the schemas derived from the types they take
//! and answer. `docs/openapi.yaml` is generated from [`LibraryApi`] (with the
//! tracker's and the feedback intake's) by `tests/tests/openapi.rs`, which also
//! checks that every operation here is one the router serves.

#![allow(dead_code)]

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{AddItem, EditBody, HitOut, NewCollection};
use crate::model::{Collection, FontUse, Item, Kind, Outcome, Swatch};

/// Every refusal and failure: a line that says what to do.
#[derive(Serialize, ToSchema)]
pub struct ApiErrorBody {
    /// What went wrong and what to do.
    pub error: String,
}

/// `GET /api/items`: one page of matches.
#[derive(Serialize, ToSchema)]
struct SearchPage {
    /// Matches in all (not only on this page).
    total: u64,
    /// This page, best match first (newest first without `q`).
    items: Vec<HitOut>,
}

/// `GET /api/collections`.
#[derive(Serialize, ToSchema)]
struct Collections {
    collections: Vec<Collection>,
}

/// `GET /api/collections/{name}`: the collection with its items in order.
#[derive(Serialize, ToSchema)]
struct CollectionWithItems {
    name: String,
    description: String,
    created_ms: i64,
    updated_ms: i64,
    items: Vec<Item>,
}

/// One file of an upload that was stored.
#[derive(Serialize, ToSchema)]
struct StoredFile {
    /// The item's id (its content hash).
    id: String,
    outcome: Outcome,
    title: String,
}

/// One file of an upload that was refused, and why.
#[derive(Serialize, ToSchema)]
struct RefusedFile {
    name: String,
    reason: String,
}

/// `POST /api/upload`: what became of each file; `error` when every file was refused.
#[derive(Serialize, ToSchema)]
struct UploadAnswer {
    items: Vec<StoredFile>,
    refused: Vec<RefusedFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `POST /api/upload`, `multipart/form-data`.
#[derive(ToSchema)]
struct UploadForm {
    /// One or more images (PNG, JPEG, WebP, GIF), checked by their content.
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<Vec<u8>>,
    /// Tags for every file, comma-separated.
    tags: Option<String>,
    /// A collection to add every stored file to (it must exist).
    collection: Option<String>,
    /// The source name the items are stored under (default `upload`).
    source: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct Added {
    /// False when the item was in the collection already.
    added: bool,
}

#[derive(Serialize, ToSchema)]
struct Removed {
    removed: bool,
}

#[utoipa::path(get, path = "/api/items", tag = "library",
    params(
        ("q" = Option<String>, Query, description = "Search text (words, \"phrases\", -excluded); newest first without it"),
        ("kind" = Option<Kind>, Query, description = "Only this kind"),
        ("source" = Option<String>, Query, description = "Only this source"),
        ("collection" = Option<String>, Query, description = "Only items of this collection"),
        ("tag" = Option<String>, Query, description = "Tags, repeated or comma-separated; every one must match"),
        ("colour" = Option<String>, Query, description = "`#rrggbb` (also `color`): items with a palette colour near it"),
        ("delta_e" = Option<f32>, Query, description = "Largest colour difference (CIEDE2000, above 0, at most 100; 10 by default)"),
        ("min_share" = Option<f32>, Query, description = "Smallest share of the picture the near colour covers (0..1)"),
        ("from" = Option<String>, Query, description = "Published (else ingested) at or after: ms since the epoch, RFC 3339 or YYYY-MM-DD"),
        ("to" = Option<String>, Query, description = "Published (else ingested) before: ms, RFC 3339 or YYYY-MM-DD"),
        ("limit" = Option<u32>, Query, description = "Page size, at most 1000"),
        ("offset" = Option<u32>, Query, description = "Matches to skip"),
    ),
    responses(
        (status = 200, description = "A page of matches", body = SearchPage),
        (status = 400, description = "A bad parameter, or search text over its limits", body = ApiErrorBody),
        (status = 401, description = "No valid token (reads need one unless `server.library_public`)", body = ApiErrorBody),
    ))]
fn search() {}

#[utoipa::path(get, path = "/api/items/{id}", tag = "library",
    params(("id" = String, Path, description = "The item's id (content hash)")),
    responses(
        (status = 200, description = "The item", body = Item),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "No such item", body = ApiErrorBody),
    ))]
fn get_item() {}

#[utoipa::path(patch, path = "/api/items/{id}", tag = "library",
    params(("id" = String, Path, description = "The item's id")),
    request_body = EditBody,
    responses(
        (status = 200, description = "The edited item", body = Item),
        (status = 400, description = "Nothing to change, or a bad body", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "Not found", body = ApiErrorBody),
        (status = 409, description = "The item was superseded by a newer version", body = ApiErrorBody),
    ))]
fn patch_item() {}

#[utoipa::path(get, path = "/api/items/{id}/blob", tag = "library",
    params(
        ("id" = String, Path, description = "The item's id"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of a copy you hold"),
    ),
    responses(
        (status = 200, description = "The original bytes, with `ETag` and `Cache-Control`", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "Not modified"),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "No such item, or it keeps no bytes (only images do)", body = ApiErrorBody),
    ))]
fn get_blob() {}

#[utoipa::path(post, path = "/api/upload", tag = "library",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Something new was stored", body = UploadAnswer),
        (status = 200, description = "Every file was known already", body = UploadAnswer),
        (status = 400, description = "Every file was refused, or a bad form", body = UploadAnswer),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "The collection does not exist", body = ApiErrorBody),
        (status = 413, description = "Over a size or file-count limit, or an image over a decoding limit", body = ApiErrorBody),
        (status = 415, description = "Not an image", body = UploadAnswer),
    ))]
fn upload() {}

#[utoipa::path(get, path = "/api/collections", tag = "library",
    responses(
        (status = 200, description = "Every collection", body = Collections),
        (status = 401, description = "No valid token", body = ApiErrorBody),
    ))]
fn list_collections() {}

#[utoipa::path(post, path = "/api/collections", tag = "library",
    request_body = NewCollection,
    responses(
        (status = 201, description = "The new collection", body = Collection),
        (status = 400, description = "Refused: a bad request (the error says which part)", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 409, description = "A collection of that name exists", body = ApiErrorBody),
    ))]
fn create_collection() {}

#[utoipa::path(get, path = "/api/collections/{name}", tag = "library",
    params(("name" = String, Path, description = "The collection")),
    responses(
        (status = 200, description = "The collection with its items", body = CollectionWithItems),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "Not found", body = ApiErrorBody),
    ))]
fn get_collection() {}

#[utoipa::path(delete, path = "/api/collections/{name}", tag = "library",
    params(("name" = String, Path, description = "The collection")),
    responses(
        (status = 204, description = "Deleted (its items stay in the library)"),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "Not found", body = ApiErrorBody),
    ))]
fn delete_collection() {}

#[utoipa::path(post, path = "/api/collections/{name}/items", tag = "library",
    params(("name" = String, Path, description = "The collection")),
    request_body = AddItem,
    responses(
        (status = 201, description = "Added", body = Added),
        (status = 200, description = "It was in the collection already", body = Added),
        (status = 400, description = "Refused: a bad request (the error says which part)", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "Not found", body = ApiErrorBody),
        (status = 409, description = "Conflict", body = ApiErrorBody),
    ))]
fn add_item() {}

#[utoipa::path(delete, path = "/api/collections/{name}/items/{id}", tag = "library",
    params(
        ("name" = String, Path, description = "The collection"),
        ("id" = String, Path, description = "The item's id"),
    ),
    responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "No such collection, or the item is not in it", body = ApiErrorBody),
    ))]
fn remove_item() {}

#[utoipa::path(get, path = "/api/collections/{name}/export.html", tag = "library",
    params(("name" = String, Path, description = "The collection")),
    responses(
        (status = 200, description = "The mood board, a self-contained HTML page (attachment)", content_type = "text/html", body = String),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "Not found", body = ApiErrorBody),
    ))]
fn export_html() {}

#[utoipa::path(get, path = "/api/collections/{name}/export.json", tag = "library",
    params(("name" = String, Path, description = "The collection")),
    responses(
        (status = 200, description = "The collection and its items as JSON (attachment)", body = CollectionWithItems),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "Not found", body = ApiErrorBody),
    ))]
fn export_json() {}

/// The bearer scheme: a reviewer's admin token (`concierto token new`).
pub struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The content library's JSON API (`server.library_addr`, served by
/// `concierto serve ingest`).
#[derive(OpenApi)]
#[openapi(
    paths(
        search, get_item, patch_item, get_blob, upload, list_collections,
        create_collection, get_collection, delete_collection, add_item, remove_item,
        export_html, export_json
    ),
    components(schemas(
        ApiErrorBody, Item, Kind, Swatch, FontUse, Collection, Outcome, HitOut, EditBody,
        NewCollection, AddItem
    )),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags((name = "library", description = "The content library (`server.library_addr`, default 127.0.0.1:8081): browse, search, upload, edit, collect, export. Writes need a reviewer's token; reads too unless `server.library_public: true`."))
)]
pub struct LibraryApi;
