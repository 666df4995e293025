//! The content library's JSON API over a real socket: uploads checked by
//! content, search, edits, collections, exports, tokens and limits.

use std::sync::Arc;

use concierto_content::{ApiOptions, ContentLibrary, TokenAuth, router};
use image::{ImageEncoder, Rgba, RgbaImage};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-token";
const NAVY: [u8; 3] = [0x1f, 0x3a, 0x5f];
const ORANGE: [u8; 3] = [0xd9, 0x7b, 0x4a];
const GREEN: [u8; 3] = [0x2e, 0x8b, 0x57];

fn png(w: u32, h: u32, c: [u8; 3]) -> Vec<u8> {
    let img = RgbaImage::from_fn(w, h, |x, y| {
        // A faint pattern, so that two images of one colour differ.
        let d = u8::from((x + y) % 7 == 0);
        Rgba([c[0], c[1].saturating_add(d), c[2], 255])
    });
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgba8)
        .expect("encode png");
    out
}

/// A server on 127.0.0.1:0 over a library in memory; stopped when dropped.
struct Server {
    base: String,
    http: reqwest::Client,
    library: Arc<ContentLibrary>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start(opts: ApiOptions) -> Server {
        let library = Arc::new(ContentLibrary::temporary().expect("library"));
        let auth: TokenAuth = Arc::new(|token: &str| (token == TOKEN).then(|| "ana".to_string()));
        let app = router(library.clone(), auth, opts);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
        Server {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            library,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A `GET` as a reviewer (reads need a token unless the options say otherwise).
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(TOKEN)
    }

    async fn json(&self, path: &str) -> (StatusCode, Value) {
        let res = self.get(path).send().await.expect("send");
        let status = res.status();
        (status, res.json().await.expect("json body"))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let res = req.send().await.expect("send");
        let status = res.status();
        (status, res.json().await.expect("json body"))
    }

    fn with_token(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.bearer_auth(TOKEN)
    }

    async fn upload(&self, form: Form) -> (StatusCode, Value) {
        self.send(self.with_token(self.http.post(self.url("/api/upload")).multipart(form)))
            .await
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn file(bytes: Vec<u8>, name: &str, declared: &str) -> Part {
    Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(declared)
        .expect("mime")
}

/// Uploads a navy and an orange PNG; returns their ids.
async fn two_images(s: &Server) -> (String, String) {
    let form = Form::new()
        .part(
            "file",
            file(png(60, 40, NAVY), "navy-riso.png", "image/png"),
        )
        .part(
            "file",
            file(png(60, 40, ORANGE), "orange-poster.png", "image/png"),
        )
        .text("tags", "riso, Print");
    let (status, body) = s.upload(form).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ids: Vec<String> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect();
    (ids[0].clone(), ids[1].clone())
}

fn titles(body: &Value) -> Vec<String> {
    let mut t: Vec<String> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["title"].as_str().expect("title").to_string())
        .collect();
    t.sort();
    t
}

#[tokio::test]
async fn uploads_are_checked_by_content_and_stored_once() {
    let s = Server::start(ApiOptions::default()).await;
    let navy = png(60, 40, NAVY);
    let form = Form::new()
        .part("file", file(navy.clone(), "navy-riso.png", "image/png"))
        .part(
            "file",
            file(png(60, 40, ORANGE), "orange-poster.png", "image/png"),
        )
        .part(
            "file",
            file(
                b"just some text, not a picture".to_vec(),
                "x.png",
                "image/png",
            ),
        )
        .text("tags", "riso, Print");
    let (status, body) = s.upload(form).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{body}");
    assert!(items.iter().all(|i| i["outcome"] == "new"), "{body}");
    assert_eq!(titles(&body), ["navy-riso", "orange-poster"]);
    let refused = body["refused"].as_array().expect("refused");
    assert_eq!(refused.len(), 1, "{body}");
    assert_eq!(refused[0]["name"], "x.png");
    assert!(
        refused[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("checked by its content"),
        "{body}"
    );
    let navy_id = items[0]["id"].as_str().expect("id").to_string();

    // The item as stored: tags normalised, palette extracted, source `upload`.
    let (status, item) = s.json(&format!("/api/items/{navy_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(item["source"], "upload");
    assert_eq!(item["media_type"], "image/png");
    assert_eq!(item["tags"], json!(["riso", "print"]));
    assert_eq!(item["palette"][0]["hex"], "#1f3a5f");

    // The original bytes come back as they went in, cacheable by their hash.
    let res = s
        .get(&format!("/api/items/{navy_id}/blob"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .expect("text")
            .contains("immutable")
    );
    let etag = res.headers()["etag"].clone();
    assert_eq!(res.bytes().await.expect("bytes").as_ref(), navy.as_slice());
    let res = s
        .get(&format!("/api/items/{navy_id}/blob"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    // The same PNG again, under another name and with a new tag: unchanged,
    // the tag added.
    let form = Form::new()
        .part("file", file(navy, "copy.png", "application/octet-stream"))
        .text("tags", "again");
    let (status, body) = s.upload(form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"][0]["outcome"], "unchanged");
    assert_eq!(body["items"][0]["id"], navy_id.as_str());
    let (_, item) = s.json(&format!("/api/items/{navy_id}")).await;
    assert_eq!(item["tags"], json!(["riso", "print", "again"]));
    assert_eq!(s.library.count(), 2);

    // Only non-images: nothing stored, 415 with the reasons.
    let form = Form::new().part("file", file(b"GIF? no".to_vec(), "y.gif", "image/gif"));
    let (status, body) = s.upload(form).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["refused"][0]["name"], "y.gif");
    assert!(body["error"].is_string());

    // Not multipart at all: 415; no files: 400.
    let (status, _) = s
        .send(
            s.with_token(s.http.post(s.url("/api/upload")))
                .json(&json!({"file": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = s.upload(Form::new().text("tags", "x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    s.shutdown().await;
}

#[tokio::test]
async fn search_by_text_tag_colour_kind_and_time() {
    let s = Server::start(ApiOptions::default()).await;
    let (navy, orange) = two_images(&s).await;

    // Browse, newest first, with paging.
    let (status, body) = s.json("/api/items").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total"], 2);
    assert!(body["items"][0]["score"].is_null());
    let (_, body) = s.json("/api/items?limit=1&offset=1").await;
    assert_eq!(body["total"], 2);
    assert_eq!(body["items"].as_array().expect("items").len(), 1);

    // Text, ranked with a score.
    let (status, body) = s.json("/api/items?q=poster").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(titles(&body), ["orange-poster"]);
    assert!(body["items"][0]["score"].as_f64().expect("score") > 0.0);
    assert_eq!(body["items"][0]["id"], orange.as_str());

    // Tag (any case), kind, source.
    let (_, body) = s.json("/api/items?tag=RISO&kind=image&source=upload").await;
    assert_eq!(body["total"], 2, "{body}");
    let (_, body) = s.json("/api/items?tag=riso,nope").await;
    assert_eq!(body["total"], 0, "{body}");
    let (_, body) = s.json("/api/items?kind=page").await;
    assert_eq!(body["total"], 0, "{body}");

    // Colour: navy is close to navy, far from green.
    let (status, body) = s.json("/api/items?colour=%231f3a5f&delta_e=5").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 1, "{body}");
    assert_eq!(body["items"][0]["id"], navy.as_str());
    let hex = format!("%23{:02x}{:02x}{:02x}", GREEN[0], GREEN[1], GREEN[2]);
    let (_, body) = s.json(&format!("/api/items?colour={hex}&delta_e=3")).await;
    assert_eq!(body["total"], 0, "{body}");

    // Time window: everything is from now.
    let (_, body) = s.json("/api/items?from=2000-01-01").await;
    assert_eq!(body["total"], 2, "{body}");
    let (_, body) = s.json("/api/items?to=2000-01-01T00:00:00Z").await;
    assert_eq!(body["total"], 0, "{body}");

    // Bad parameters: 400 with a reason.
    for bad in [
        "colour=%23nothex",
        "colour=blue",
        "delta_e=4",
        "kind=video",
        "limit=many",
        "from=last-week",
        "sort=new",
    ] {
        let (status, body) = s.json(&format!("/api/items?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn edits_are_searchable_and_need_a_token() {
    let s = Server::start(ApiOptions::default()).await;
    let (navy, _) = two_images(&s).await;
    let path = format!("/api/items/{navy}");

    let edit = json!({"title": "Midnight Riso", "tags": ["night", "Ink"], "notes": "for the spring board"});
    let (status, body) = s.send(s.http.patch(s.url(&path)).json(&edit)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = s
        .send(s.http.patch(s.url(&path)).bearer_auth("wrong").json(&edit))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    let (status, body) = s
        .send(s.with_token(s.http.patch(s.url(&path))).json(&edit))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["title"], "Midnight Riso");
    assert_eq!(body["tags"], json!(["night", "ink"]));

    let (_, body) = s.json("/api/items?tag=ink").await;
    assert_eq!(body["total"], 1, "{body}");
    assert_eq!(body["items"][0]["id"], navy.as_str());
    let (_, body) = s.json("/api/items?tag=riso").await;
    assert_eq!(body["total"], 1, "the old tags were replaced: {body}");
    let (_, body) = s.json("/api/items?q=midnight").await;
    assert_eq!(body["items"][0]["id"], navy.as_str(), "{body}");
    let (_, body) = s.json("/api/items?q=spring").await;
    assert_eq!(
        body["items"][0]["id"],
        navy.as_str(),
        "notes are searched: {body}"
    );

    // Bad edits: blank title, unknown field, nothing, not JSON, unknown id.
    for bad in [json!({"title": "  "}), json!({"colour": "red"}), json!({})] {
        let (status, body) = s
            .send(s.with_token(s.http.patch(s.url(&path))).json(&bad))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _) = s
        .send(
            s.with_token(s.http.patch(s.url(&path)))
                .header("content-type", "text/plain")
                .body("title=x"),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = s
        .send(
            s.with_token(s.http.patch(s.url(&path)))
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = s
        .send(
            s.with_token(s.http.patch(s.url("/api/items/feedface")))
                .json(&json!({"notes": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    s.shutdown().await;
}

#[tokio::test]
async fn collections_gather_items_and_export_mood_boards() {
    let s = Server::start(ApiOptions::default()).await;
    let (navy, orange) = two_images(&s).await;
    let post = |path: &str| s.with_token(s.http.post(s.url(path)));

    let spring = json!({"name": "Spring board", "description": "warm and deep"});
    let (status, body) = s
        .send(s.http.post(s.url("/api/collections")).json(&spring))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = s.send(post("/api/collections").json(&spring)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "Spring board");
    let (status, body) = s.send(post("/api/collections").json(&spring)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = s
        .send(post("/api/collections").json(&json!({"name": " "})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let items = "/api/collections/Spring%20board/items";
    for id in [&navy, &orange] {
        let (status, body) = s.send(post(items).json(&json!({ "id": id }))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["added"], true);
    }
    let (status, body) = s.send(post(items).json(&json!({ "id": navy }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["added"], false);
    let (status, _) = s.send(post(items).json(&json!({"id": "feedface"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .send(post("/api/collections/nope/items").json(&json!({ "id": navy })))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = s.json("/api/collections").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["collections"][0]["name"], "Spring board");
    let (status, body) = s.json("/api/collections/Spring%20board").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["description"], "warm and deep");
    assert_eq!(body["items"][0]["id"], navy.as_str());
    assert_eq!(body["items"][1]["id"], orange.as_str());
    let (_, body) = s.json("/api/items?collection=Spring%20board").await;
    assert_eq!(body["total"], 2, "{body}");

    // The mood board: one HTML file with both images inside and their palettes.
    let res = s
        .get("/api/collections/Spring%20board/export.html")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("text")
            .starts_with("text/html")
    );
    let disposition = res.headers()["content-disposition"]
        .to_str()
        .expect("text")
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"Spring board.html\""),
        "{disposition}"
    );
    let html = res.text().await.expect("html");
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 2);
    assert!(html.contains("#1f3a5f") && html.contains("#d97b4a"));
    assert!(!html.contains("http://") && !html.contains("https://"));

    let res = s
        .get("/api/collections/Spring%20board/export.json")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["collection"]["name"], "Spring board");
    assert_eq!(body["items"].as_array().expect("items").len(), 2);

    // Remove: once, then 404; without a token 401.
    let one = format!("{items}/{orange}");
    let (status, _) = s.send(s.http.delete(s.url(&one))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = s.send(s.with_token(s.http.delete(s.url(&one)))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["removed"], true);
    let (status, _) = s.send(s.with_token(s.http.delete(s.url(&one)))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = s.json("/api/collections/Spring%20board").await;
    assert_eq!(body["items"].as_array().expect("items").len(), 1);

    // Upload straight into a collection; an unknown one is 404 and stores nothing.
    let form = Form::new()
        .part("file", file(png(30, 30, GREEN), "moss.png", "image/png"))
        .text("collection", "Spring board");
    let (status, body) = s.upload(form).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = s.json("/api/collections/Spring%20board").await;
    assert_eq!(body["items"].as_array().expect("items").len(), 2);
    let form = Form::new()
        .part("file", file(png(31, 30, GREEN), "moss2.png", "image/png"))
        .text("collection", "nope");
    let (status, _) = s.upload(form).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(s.library.count(), 3);

    // Delete the collection: its items stay.
    let res = s
        .with_token(s.http.delete(s.url("/api/collections/Spring%20board")))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (status, _) = s.json("/api/collections/Spring%20board").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(s.library.count(), 3);
    s.shutdown().await;
}

#[tokio::test]
async fn unknown_ids_and_collections_are_404() {
    let s = Server::start(ApiOptions::default()).await;
    for path in [
        "/api/items/feedface",
        "/api/items/feedface/blob",
        "/api/collections/nope",
        "/api/collections/nope/export.html",
        "/api/collections/nope/export.json",
    ] {
        let (status, body) = s.json(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let res = s.get("/healthz").send().await.expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    s.shutdown().await;
}

#[tokio::test]
async fn writes_need_a_token_and_reads_may() {
    let s = Server::start(ApiOptions::default()).await;
    let form = Form::new().part("file", file(png(8, 8, NAVY), "a.png", "image/png"));
    let res = s
        .http
        .post(s.url("/api/upload"))
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer realm=\"concierto\""
    );
    let (status, _) = s.send(s.http.delete(s.url("/api/collections/x"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.library.count(), 0);
    s.shutdown().await;

    let opts = ApiOptions {
        read_requires_token: true,
        ..ApiOptions::default()
    };
    let s = Server::start(opts).await;
    for path in ["/api/items", "/api/collections", "/api/items/feedface"] {
        let (status, _) = s.send(s.http.get(s.url(path))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (status, body) = s.send(s.with_token(s.get("/api/items"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let res = s.http.get(s.url("/healthz")).send().await.expect("send");
    assert_eq!(res.status(), StatusCode::OK, "health needs no token");
    s.shutdown().await;
}

#[tokio::test]
async fn oversized_uploads_are_413_and_store_nothing() {
    let opts = ApiOptions {
        max_file_bytes: 20_000,
        max_upload_bytes: 30_000,
        max_files: 2,
        ..ApiOptions::default()
    };
    let s = Server::start(opts).await;
    let small = png(8, 8, NAVY);
    let mut big = png(8, 8, ORANGE);
    big.resize(25_000, 0);

    // One file over the per-file limit, after a good one.
    let form = Form::new()
        .part("file", file(small.clone(), "small.png", "image/png"))
        .part("file", file(big, "big.png", "image/png"));
    let (status, body) = s.upload(form).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"].as_str().expect("error").contains("big.png"));

    // Each file fits, together they do not.
    let mut half = png(8, 8, GREEN);
    half.resize(18_000, 0);
    let mut other = png(9, 8, GREEN);
    other.resize(18_000, 0);
    let form = Form::new()
        .part("file", file(half, "a.png", "image/png"))
        .part("file", file(other, "b.png", "image/png"));
    let (status, body) = s.upload(form).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    // Too many files.
    let form = (0..3).fold(Form::new(), |f, i| {
        f.part("file", file(png(4 + i, 4, NAVY), "n.png", "image/png"))
    });
    let (status, body) = s.upload(form).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    // A body far over the limit is cut off by the body limit (the server may
    // close the connection before the client has sent it all).
    let huge = vec![0u8; 2_000_000];
    let res = s
        .with_token(s.http.post(s.url("/api/upload")))
        .multipart(Form::new().part("file", file(huge, "huge.png", "image/png")))
        .send()
        .await;
    if let Ok(res) = res {
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert_eq!(s.library.count(), 0);

    // Within the limits it works.
    let form = Form::new().part("file", file(small, "small.png", "image/png"));
    let (status, body) = s.upload(form).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    s.shutdown().await;
}
