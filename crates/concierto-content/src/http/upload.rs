//! `POST /api/upload`: multipart files checked by their content, stored in
//! one batch; see the [API docs](super) for the answers.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{ApiError, ApiOptions, ApiState, Writer, run};
use crate::error::{ContentError, ErrorKind};
use crate::extract;
use crate::model::{Edit, Kind, NewItem, Outcome};

/// Largest text field of an upload (`tags`, `collection`, `source`).
const MAX_UPLOAD_FIELD: usize = 64 * 1024;
/// Longest file name kept from an upload (characters).
const MAX_FILE_NAME: usize = 150;

/// One file as received.
struct Received {
    name: String,
    bytes: Vec<u8>,
}

#[derive(Serialize)]
struct Stored {
    id: String,
    outcome: Outcome,
    title: String,
}

#[derive(Serialize)]
struct Refused {
    name: String,
    reason: String,
}

/// The last path segment of a file name, without control characters, at most
/// [`MAX_FILE_NAME`] characters; `upload` when nothing is left.
fn clean_file_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let name: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_FILE_NAME)
        .collect();
    let name = name.trim();
    if name.is_empty() || name == "." || name == ".." {
        "upload".to_string()
    } else {
        name.to_string()
    }
}

/// The title an upload gets: its file name without the extension.
fn title_of(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.trim().is_empty() => stem.to_string(),
        _ => name.to_string(),
    }
}

async fn text_field(
    field: &mut axum::extract::multipart::Field<'_>,
    name: &str,
) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await? {
        if buf.len() + chunk.len() > MAX_UPLOAD_FIELD {
            return Err(ApiError::too_large(format!(
                "field {name}: at most {MAX_UPLOAD_FIELD} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf)
        .map_err(|_| ApiError::bad_request(format!("field {name} is not UTF-8 text")))
}

/// What a multipart upload carried.
#[derive(Default)]
struct UploadForm {
    files: Vec<Received>,
    tags: Vec<String>,
    collection: Option<String>,
    source: Option<String>,
}

async fn read_upload(mut mp: Multipart, opts: &ApiOptions) -> Result<UploadForm, ApiError> {
    let mut form = UploadForm::default();
    let mut total = 0usize;
    let mut files_seen = 0usize;
    // A limit broken: remembered, and the rest of the body still read (up to
    // the body limit) so the client gets the answer rather than a reset.
    let mut refusal: Option<ApiError> = None;
    while let Some(mut field) = mp.next_field().await? {
        let field_name = field.name().unwrap_or("").to_string();
        match field_name.as_str() {
            "file" => {
                files_seen += 1;
                if refusal.is_some() {
                    continue;
                }
                if files_seen > opts.max_files {
                    refusal = Some(ApiError::too_large(format!(
                        "more than {} files: upload at most {} at a time",
                        opts.max_files, opts.max_files
                    )));
                    continue;
                }
                let name = clean_file_name(field.file_name().unwrap_or(""));
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await? {
                    if bytes.len() + chunk.len() > opts.max_file_bytes {
                        refusal = Some(ApiError::too_large(format!(
                            "{name}: larger than {} bytes, the most one file may have",
                            opts.max_file_bytes
                        )));
                        break;
                    }
                    if total + bytes.len() + chunk.len() > opts.max_upload_bytes {
                        refusal = Some(ApiError::too_large(format!(
                            "the files together are larger than {} bytes: upload fewer at a time",
                            opts.max_upload_bytes
                        )));
                        break;
                    }
                    bytes.extend_from_slice(&chunk);
                }
                if refusal.is_some() {
                    continue;
                }
                total += bytes.len();
                // A browser sends an empty, nameless part for an empty file input.
                if bytes.is_empty() && field.file_name().unwrap_or("").is_empty() {
                    continue;
                }
                form.files.push(Received { name, bytes });
            }
            "tags" => {
                let v = text_field(&mut field, "tags").await?;
                form.tags.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string),
                );
            }
            "collection" => {
                let v = text_field(&mut field, "collection").await?;
                form.collection = Some(v.trim().to_string()).filter(|v| !v.is_empty());
            }
            "source" => {
                let v = text_field(&mut field, "source").await?;
                form.source = Some(v.trim().to_string()).filter(|v| !v.is_empty());
            }
            // Other fields (a submit button, a CSRF token) are skipped.
            _ => {}
        }
    }
    match refusal {
        Some(e) => Err(e),
        None => Ok(form),
    }
}

pub(super) async fn upload(
    Writer(who): Writer,
    State(st): State<ApiState>,
    headers: HeaderMap,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    if !is_multipart {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an upload is multipart/form-data with one `file` field per file",
        ));
    }
    let mp = mp.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let form = read_upload(mp, &st.opts).await?;
    if form.files.is_empty() {
        return Err(ApiError::bad_request(
            "no files: send one `file` field per file",
        ));
    }
    let source = form.source.unwrap_or_else(|| "upload".to_string());
    let tags = form.tags;
    let collection = form.collection;

    let mut refused = Vec::new();
    let mut wrong_type = false;
    let mut too_large = false;
    let mut names = Vec::new();
    let mut batch = Vec::new();
    for f in form.files {
        let Some(media_type) = extract::sniff_image_type(&f.bytes) else {
            wrong_type = true;
            refused.push(Refused {
                name: f.name,
                reason: "not a PNG, JPEG, WebP or GIF image (checked by its content, not its \
                         name or declared type)"
                    .to_string(),
            });
            continue;
        };
        let hash = hex::encode(Sha256::digest(&f.bytes));
        batch.push(
            NewItem::new(Kind::Image, source.clone(), format!("{hash}/{}", f.name))
                .title(title_of(&f.name))
                .bytes(f.bytes, Some(media_type))
                .tags(tags.clone()),
        );
        names.push(f.name);
    }

    let results = run(&st.library, move |lib| {
        if let Some(c) = &collection {
            lib.collection(c)?;
        }
        let mut out = Vec::with_capacity(batch.len());
        for (name, r) in names.into_iter().zip(lib.put_many(batch)?) {
            let put = match r {
                Ok(p) => p,
                Err(e) => {
                    out.push((name, Err(e)));
                    continue;
                }
            };
            let mut item = put.item;
            if put.outcome == Outcome::Unchanged && tags.iter().any(|t| !item.tags.contains(t)) {
                let mut merged = item.tags.clone();
                merged.extend(tags.iter().cloned());
                item = lib.update(
                    &item.id,
                    Edit {
                        tags: Some(merged),
                        ..Edit::default()
                    },
                )?;
            }
            if let Some(c) = &collection {
                lib.add_to_collection(c, &item.id)?;
            }
            out.push((
                name,
                Ok(Stored {
                    id: item.id,
                    outcome: put.outcome,
                    title: item.title,
                }),
            ));
        }
        Ok(out)
    })
    .await?;

    let mut items = Vec::new();
    for (name, r) in results {
        match r {
            Ok(s) => {
                tracing::info!(who = %who, id = %s.id, outcome = ?s.outcome, file = %name, "content uploaded");
                items.push(s);
            }
            Err(e) if matches!(e.kind(), ErrorKind::Invalid | ErrorKind::TooLarge) => {
                wrong_type |= matches!(e, ContentError::Image(_));
                too_large |= e.kind() == ErrorKind::TooLarge;
                refused.push(Refused {
                    name,
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    for r in &refused {
        tracing::info!(who = %who, file = %r.name, reason = %r.reason, "upload refused");
    }
    let stored_new = items.iter().any(|s| s.outcome != Outcome::Unchanged);
    let status = if stored_new {
        StatusCode::CREATED
    } else if !items.is_empty() {
        StatusCode::OK
    } else if too_large {
        StatusCode::PAYLOAD_TOO_LARGE
    } else if wrong_type {
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut body = json!({ "items": items, "refused": refused });
    if items.is_empty() {
        body["error"] = json!("every file was refused: see `refused` for why");
    }
    Ok((status, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_and_control_characters() {
        assert_eq!(clean_file_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_file_name("C:\\art\\riso\n.png"), "riso.png");
        assert_eq!(clean_file_name(".."), "upload");
        assert_eq!(title_of("hero shot.png"), "hero shot");
        assert_eq!(title_of(".hidden"), ".hidden");
    }
}
