//! The content library end to end: store, dedupe, search, filters, edits,
//! collections, exports, durability.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use concierto_content::{
    ContentError, ContentLibrary, Edit, ErrorKind, Kind, NewItem, Outcome, Query,
};
use concierto_core::clock::ManualClock;
use image::{ImageEncoder, Rgba, RgbaImage};

const NAVY: [u8; 3] = [0x1f, 0x3a, 0x5f];
const ORANGE: [u8; 3] = [0xd9, 0x7b, 0x4a];
const GREEN: [u8; 3] = [0x2e, 0x8b, 0x57];

fn png(w: u32, h: u32, split: u32, a: [u8; 3], b: [u8; 3]) -> Vec<u8> {
    let img = RgbaImage::from_fn(w, h, |x, _| {
        let c = if x < split { a } else { b };
        Rgba([c[0], c[1], c[2], 255])
    });
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgba8)
        .expect("encode png");
    out
}

fn image_item(key: &str, bytes: Vec<u8>) -> NewItem {
    NewItem::new(Kind::Image, "image_database", key).bytes(bytes, None)
}

fn post(source: &str, key: &str, title: &str, text: &str) -> NewItem {
    NewItem::new(Kind::Post, source, key)
        .title(title)
        .text(text)
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
            .single()
            .expect("date"),
    ))
}

fn titles(page: &concierto_content::Page) -> Vec<String> {
    page.hits.iter().map(|h| h.item.title.clone()).collect()
}

#[test]
fn the_same_image_twice_is_stored_once() {
    let lib = ContentLibrary::temporary().unwrap();
    let bytes = png(100, 50, 70, NAVY, ORANGE);
    let first = lib
        .put(image_item("boards/hero.png", bytes.clone()))
        .unwrap();
    assert_eq!(first.outcome, Outcome::New);
    assert_eq!(first.item.media_type.as_deref(), Some("image/png"));
    assert_eq!(first.item.title, "hero.png");
    assert_eq!(first.item.palette.len(), 2);
    assert_eq!(first.item.palette[0].hex, "#1f3a5f");
    assert_eq!(first.item.id.len(), 64);

    let again = lib
        .put(image_item("boards/hero.png", bytes.clone()))
        .unwrap();
    assert_eq!(again.outcome, Outcome::Unchanged);
    assert_eq!(again.item, first.item, "nothing rewritten");
    assert_eq!(lib.count(), 1);

    // The same bytes under another name are the same content.
    let copy = lib
        .put(image_item("boards/copy-of-hero.png", bytes.clone()))
        .unwrap();
    assert_eq!(copy.outcome, Outcome::Unchanged);
    assert_eq!(copy.item.id, first.item.id);
    assert_eq!(lib.count(), 1);

    let blob = lib.blob(&first.item.id).unwrap().unwrap();
    assert_eq!(blob.media_type, "image/png");
    assert_eq!(blob.bytes, bytes);
}

#[test]
fn changed_bytes_at_a_known_key_replace_the_old_version() {
    let lib = ContentLibrary::temporary().unwrap();
    let old = lib
        .put(image_item("moodboard.png", png(40, 40, 28, NAVY, ORANGE)))
        .unwrap();
    lib.update(
        &old.item.id,
        Edit {
            title: Some("Harbour at dusk".into()),
            tags: Some(vec!["harbour".into(), "dusk".into()]),
            notes: Some("client loved the orange".into()),
        },
    )
    .unwrap();
    lib.create_collection("spring", "").unwrap();
    lib.add_to_collection("spring", &old.item.id).unwrap();

    let new = lib
        .put(image_item("moodboard.png", png(40, 40, 28, GREEN, ORANGE)))
        .unwrap();
    assert_eq!(new.outcome, Outcome::Changed);
    assert_ne!(new.item.id, old.item.id);
    assert_eq!(new.item.replaces.as_deref(), Some(old.item.id.as_str()));
    // What people added carries over.
    assert_eq!(new.item.tags, ["harbour", "dusk"]);
    assert_eq!(new.item.notes, "client loved the orange");
    assert_eq!(new.item.collections, ["spring"]);
    assert_eq!(
        lib.collection("spring").unwrap().items,
        vec![new.item.id.clone()]
    );

    // Only the new version is searchable.
    let found = lib.search(&Query::text("harbour")).unwrap();
    assert_eq!(found.total, 1);
    assert_eq!(found.hits[0].item.id, new.item.id);
    assert_eq!(lib.search(&Query::browse()).unwrap().total, 1);
    assert_eq!(
        lib.search(&Query::browse().colour("#1f3a5f", 5.0))
            .unwrap()
            .total,
        0,
        "the old palette is gone from the index"
    );
    // The old one is still there by id, marked.
    let gone = lib.get(&old.item.id).unwrap().unwrap();
    assert_eq!(gone.superseded_by.as_deref(), Some(new.item.id.as_str()));
    let err = lib.update(&old.item.id, Edit::default()).unwrap_err();
    assert!(matches!(err, ContentError::Superseded { .. }));
    assert_eq!(err.kind(), ErrorKind::Conflict);

    // Reverting to the old bytes brings the old version back.
    let back = lib
        .put(image_item("moodboard.png", png(40, 40, 28, NAVY, ORANGE)))
        .unwrap();
    assert_eq!(back.outcome, Outcome::Changed);
    assert_eq!(back.item.id, old.item.id);
    assert!(back.item.superseded_by.is_none());
    assert_eq!(lib.count(), 1);
    assert_eq!(
        lib.search(&Query::browse().colour("#1f3a5f", 5.0))
            .unwrap()
            .total,
        1
    );
}

#[test]
fn a_shared_old_version_stays_while_another_key_still_has_it() {
    let lib = ContentLibrary::temporary().unwrap();
    let a = lib
        .put(post("feed", "a", "Same words", "same body"))
        .unwrap();
    let b = lib
        .put(post("feed", "b", "Same words", "same body"))
        .unwrap();
    assert_eq!(b.outcome, Outcome::Unchanged);
    assert_eq!(a.item.id, b.item.id);
    let changed = lib
        .put(post("feed", "a", "Other words", "new body"))
        .unwrap();
    assert_eq!(changed.outcome, Outcome::Changed);
    // Key b still holds the first version: both are searchable.
    assert_eq!(lib.count(), 2);
    assert!(
        lib.get(&a.item.id)
            .unwrap()
            .unwrap()
            .superseded_by
            .is_none()
    );
    assert_eq!(
        lib.get_by_source_key("feed", "b").unwrap().unwrap().id,
        a.item.id
    );
}

#[test]
fn a_title_match_outranks_a_body_match() {
    let lib = ContentLibrary::temporary().unwrap();
    lib.put(post(
        "feed",
        "1",
        "Quarterly notes",
        "We tried a risograph print for the zine and it worked.",
    ))
    .unwrap();
    lib.put(post(
        "feed",
        "2",
        "Risograph zine",
        "Two colours, one press.",
    ))
    .unwrap();
    lib.put(post("feed", "3", "Unrelated", "Nothing to see."))
        .unwrap();
    let page = lib.search(&Query::text("risograph")).unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(titles(&page), ["Risograph zine", "Quarterly notes"]);
    let scores: Vec<f32> = page.hits.iter().map(|h| h.score.unwrap()).collect();
    assert!(scores[0] > scores[1], "{scores:?}");
    // Stemming: "prints" finds "print".
    assert_eq!(lib.search(&Query::text("prints")).unwrap().total, 1);
    // Both words are required.
    assert_eq!(
        titles(&lib.search(&Query::text("risograph press")).unwrap()),
        ["Risograph zine"]
    );
    // User input never fails to parse.
    for odd in [
        "\"unclosed",
        "title:",
        "(((",
        "AND OR NOT",
        "-",
        "*",
        "a:b:c",
    ] {
        lib.search(&Query::text(odd)).unwrap();
    }
}

#[test]
fn filters_kind_source_tag_collection_and_colour() {
    let lib = ContentLibrary::temporary().unwrap();
    let navy = lib
        .put(
            image_item("navy.png", png(50, 50, 40, NAVY, ORANGE))
                .title("Navy poster")
                .tags(["Poster", "blue"]),
        )
        .unwrap()
        .item;
    let green = lib
        .put(
            NewItem::new(Kind::Image, "uploads", "green.png")
                .bytes(png(50, 50, 40, GREEN, [250, 250, 250]), Some("image/png"))
                .title("Green poster")
                .tags(["poster"]),
        )
        .unwrap()
        .item;
    lib.put(
        NewItem::new(Kind::Page, "siteinspire", "https://a.example/")
            .title("Poster archive")
            .text("A page about posters."),
    )
    .unwrap();

    let q = |q: Query| titles(&lib.search(&q).unwrap());
    assert_eq!(q(Query::text("poster").kind(Kind::Image)).len(), 2);
    assert_eq!(
        q(Query::text("poster").kind(Kind::Page)),
        ["Poster archive"]
    );
    assert_eq!(q(Query::browse().source("uploads")), ["Green poster"]);
    assert_eq!(q(Query::browse().tag("BLUE")), ["Navy poster"]);
    assert_eq!(
        q(Query::browse().tag("poster").tag("blue")),
        ["Navy poster"]
    );
    assert_eq!(q(Query::browse().tag("poster")).len(), 2);

    // Colour: navy is in one palette only; a near navy matches too.
    assert_eq!(q(Query::browse().colour("#1f3a5f", 5.0)), ["Navy poster"]);
    assert_eq!(q(Query::browse().colour("#213c60", 5.0)), ["Navy poster"]);
    assert!(q(Query::browse().colour("#ff00ff", 10.0)).is_empty());
    assert_eq!(
        q(Query::text("poster").colour("#2e8b57", 3.0)),
        ["Green poster"]
    );
    let mut mostly = Query::browse().colour("#d97b4a", 5.0);
    assert_eq!(q(mostly.clone()), ["Navy poster"]);
    mostly.colour.as_mut().unwrap().min_share = 0.5;
    assert!(q(mostly).is_empty(), "orange covers only 20%");
    let err = lib
        .search(&Query::browse().colour("navy", 5.0))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);

    lib.create_collection("blue things", "").unwrap();
    lib.add_to_collection("blue things", &navy.id).unwrap();
    assert_eq!(
        q(Query::browse().collection("blue things")),
        ["Navy poster"]
    );
    assert_eq!(
        q(Query::text("poster").collection("blue things")),
        ["Navy poster"]
    );
    lib.remove_from_collection("blue things", &navy.id).unwrap();
    assert!(q(Query::browse().collection("blue things")).is_empty());
    let _ = green;
}

#[test]
fn browse_is_newest_first_with_paging_and_time_ranges() {
    let clock = clock();
    let lib = ContentLibrary::temporary()
        .unwrap()
        .with_clock(clock.clone());
    let start = clock_ms(&clock);
    for i in 0..25 {
        lib.put(post(
            "feed",
            &format!("p{i}"),
            &format!("Post {i:02}"),
            "body",
        ))
        .unwrap();
        clock.advance(Duration::from_secs(60));
    }
    // An old post published long ago sorts by its publication time.
    lib.put(post("feed", "old", "Ancient", "body").published_ms(start - 86_400_000))
        .unwrap();

    let first = lib.search(&Query::browse().page(10, 0)).unwrap();
    assert_eq!(first.total, 26);
    assert_eq!(first.hits[0].item.title, "Post 24");
    assert_eq!(first.hits[9].item.title, "Post 15");
    assert!(first.hits.iter().all(|h| h.score.is_none()));
    let third = lib.search(&Query::browse().page(10, 20)).unwrap();
    assert_eq!(
        titles(&third),
        [
            "Post 04", "Post 03", "Post 02", "Post 01", "Post 00", "Ancient"
        ]
    );
    assert!(
        lib.search(&Query::browse().page(10, 30))
            .unwrap()
            .hits
            .is_empty()
    );
    let too_deep = Query::browse().page(usize::MAX, usize::MAX);
    assert_eq!(
        lib.search(&too_deep).unwrap_err().kind(),
        ErrorKind::Invalid
    );
    let huge_limit = Query::browse().page(usize::MAX, 0);
    assert_eq!(lib.search(&huge_limit).unwrap().hits.len(), 26);
    let count_only = lib.search(&Query::text("body").page(0, 0)).unwrap();
    assert_eq!((count_only.total, count_only.hits.len()), (26, 0));

    // Ranked results page too.
    let a = lib.search(&Query::text("post").page(5, 0)).unwrap();
    let b = lib.search(&Query::text("post").page(5, 5)).unwrap();
    assert_eq!(a.total, 25);
    let ids: std::collections::HashSet<_> = a
        .hits
        .iter()
        .chain(&b.hits)
        .map(|h| h.item.id.clone())
        .collect();
    assert_eq!(ids.len(), 10);

    // Time range: minutes 5..10 → posts 5 to 9.
    let range = Query::browse().between(Some(start + 5 * 60_000), Some(start + 10 * 60_000));
    assert_eq!(
        titles(&lib.search(&range).unwrap()),
        ["Post 09", "Post 08", "Post 07", "Post 06", "Post 05"]
    );
    let before = Query::browse().between(None, Some(start));
    assert_eq!(titles(&lib.search(&before).unwrap()), ["Ancient"]);
}

fn clock_ms(clock: &ManualClock) -> i64 {
    use concierto_core::clock::Clock;
    clock.now().timestamp_millis()
}

#[test]
fn edits_are_searchable_after_update() {
    let lib = ContentLibrary::temporary().unwrap();
    let item = lib
        .put(post("uploads", "x", "Untitled", "a photo"))
        .unwrap()
        .item;
    assert_eq!(lib.search(&Query::text("lighthouse")).unwrap().total, 0);
    let edited = lib
        .update(
            &item.id,
            Edit {
                title: Some("  Lighthouse   study ".into()),
                tags: Some(vec!["Coastal".into(), "coastal".into(), "night".into()]),
                notes: Some("use for the autumn campaign".into()),
            },
        )
        .unwrap();
    assert_eq!(edited.title, "Lighthouse study");
    assert_eq!(edited.tags, ["coastal", "night"]);
    assert_eq!(lib.get(&item.id).unwrap().unwrap(), edited);
    assert_eq!(
        titles(&lib.search(&Query::text("lighthouse")).unwrap()),
        ["Lighthouse study"]
    );
    assert_eq!(lib.search(&Query::text("coastal")).unwrap().total, 1);
    assert_eq!(
        lib.search(&Query::text("autumn campaign")).unwrap().total,
        1
    );
    assert_eq!(lib.search(&Query::browse().tag("night")).unwrap().total, 1);
    assert_eq!(lib.search(&Query::text("untitled")).unwrap().total, 0);

    // Only what is given changes.
    let again = lib
        .update(
            &item.id,
            Edit {
                notes: Some(String::new()),
                ..Edit::default()
            },
        )
        .unwrap();
    assert_eq!(again.tags, ["coastal", "night"]);
    assert_eq!(again.notes, "");

    let blank = lib.update(
        &item.id,
        Edit {
            title: Some("   ".into()),
            ..Edit::default()
        },
    );
    assert!(matches!(blank, Err(ContentError::Invalid(_))));
    let missing = lib.update("nope", Edit::default()).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

#[test]
fn collections_keep_order_and_refuse_unknowns() {
    let lib = ContentLibrary::temporary().unwrap();
    let a = lib.put(post("s", "a", "A", "x")).unwrap().item;
    let b = lib.put(post("s", "b", "B", "y")).unwrap().item;
    let c = lib.create_collection("autumn", "  warm tones  ").unwrap();
    assert_eq!(c.description, "warm tones");
    assert!(matches!(
        lib.create_collection("autumn", ""),
        Err(ContentError::CollectionExists(_))
    ));
    assert!(matches!(
        lib.create_collection(" ", ""),
        Err(ContentError::Invalid(_))
    ));
    assert!(lib.add_to_collection("autumn", &b.id).unwrap());
    assert!(lib.add_to_collection("autumn", &a.id).unwrap());
    assert!(!lib.add_to_collection("autumn", &a.id).unwrap());
    assert_eq!(
        lib.collection("autumn").unwrap().items,
        [b.id.clone(), a.id.clone()]
    );
    let items: Vec<String> = lib
        .collection_items("autumn")
        .unwrap()
        .into_iter()
        .map(|i| i.title)
        .collect();
    assert_eq!(items, ["B", "A"]);
    assert_eq!(lib.get(&a.id).unwrap().unwrap().collections, ["autumn"]);
    assert_eq!(
        lib.add_to_collection("winter", &a.id).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        lib.add_to_collection("autumn", "missing")
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    lib.create_collection("a first", "").unwrap();
    let names: Vec<String> = lib
        .collections()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["a first", "autumn"]);
    assert!(lib.remove_from_collection("autumn", &b.id).unwrap());
    assert!(!lib.remove_from_collection("autumn", &b.id).unwrap());
    lib.delete_collection("autumn").unwrap();
    assert!(lib.get(&a.id).unwrap().unwrap().collections.is_empty());
    assert_eq!(
        lib.search(&Query::browse().collection("autumn"))
            .unwrap()
            .total,
        0
    );
    assert!(matches!(
        lib.collection("autumn"),
        Err(ContentError::CollectionNotFound(_))
    ));
}

#[test]
fn moodboard_export_is_self_contained_and_escaped() {
    let lib = ContentLibrary::temporary().unwrap();
    let img = lib
        .put(
            image_item("x.png", png(30, 10, 21, NAVY, ORANGE))
                .title("<script>alert('x')</script> & co")
                .tags(["<b>bold</b>"])
                .notes("notes with \"quotes\""),
        )
        .unwrap()
        .item;
    let page = lib
        .put(
            NewItem::new(Kind::Page, "siteinspire", "https://studio.example/")
                .url("https://studio.example/")
                .title("Studio site")
                .text("Brutalist <i>portfolio</i>"),
        )
        .unwrap()
        .item;
    lib.create_collection("board <1>", "for the \"spring\" pitch")
        .unwrap();
    lib.add_to_collection("board <1>", &img.id).unwrap();
    lib.add_to_collection("board <1>", &page.id).unwrap();

    let html = lib.export_moodboard_html("board <1>").unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("data:image/png;base64,"));
    assert!(html.contains("#1f3a5f") && html.contains("#d97b4a"));
    assert!(html.contains("70%") && html.contains("30%"));
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"));
    assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"));
    assert!(html.contains("board &lt;1&gt;"));
    assert!(html.contains("&quot;spring&quot;"));
    assert!(html.contains("Brutalist &lt;i&gt;portfolio&lt;/i&gt;"));
    // No external requests: no src/href other than data URIs, a CSP that forbids them.
    assert!(html.contains("default-src 'none'; img-src data:"));
    for attr in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attr) {
            assert!(html[i + attr.len()..].starts_with("data:"), "{attr} at {i}");
        }
    }
    assert!(!html.contains("<link") && !html.contains("@import") && !html.contains("url("));

    let json = lib.export_json("board <1>").unwrap();
    assert_eq!(json["collection"]["name"], "board <1>");
    assert_eq!(json["items"].as_array().unwrap().len(), 2);
    assert_eq!(json["items"][0]["palette"][0]["hex"], "#1f3a5f");
    assert_eq!(json["items"][1]["kind"], "page");
    assert!(matches!(
        lib.export_json("nope"),
        Err(ContentError::CollectionNotFound(_))
    ));
}

#[test]
fn html_pages_are_extracted_when_put() {
    let lib = ContentLibrary::temporary().unwrap();
    let html = "<html><head><title>Nord Studio</title>\
        <meta name=description content='Swiss grid and a grainy duotone hero'>\
        <link href='https://fonts.googleapis.com/css2?family=Inter:wght@400;700' rel=stylesheet>\
        <style>body{font-family:Inter,sans-serif;font-size:17px}</style>\
        <meta name='csrf' content='abc'></head>\
        <body><h1>Café work</h1><img src='/a.png' alt='isometric city'></body></html>";
    let bytes: Vec<u8> = html.bytes().collect();
    let put = lib
        .put(
            NewItem::new(Kind::Page, "siteinspire", "https://nord.example/work")
                .bytes(bytes, Some("text/html; charset=utf-8")),
        )
        .unwrap();
    let item = put.item;
    assert_eq!(item.title, "Nord Studio");
    assert!(
        item.text
            .starts_with("Swiss grid and a grainy duotone hero")
    );
    assert_eq!(item.media_type.as_deref(), Some("text/html"));
    assert_eq!(item.typography[0].family, "Inter");
    assert_eq!(item.typography[0].weights, [400, 700]);
    for c in ["duotone", "grain", "isometric", "swiss style"] {
        assert!(
            item.concepts.iter().any(|x| x == c),
            "{c}: {:?}",
            item.concepts
        );
    }
    // Concepts and typefaces are searchable.
    assert_eq!(lib.search(&Query::text("isometric")).unwrap().total, 1);
    assert_eq!(lib.search(&Query::text("inter")).unwrap().total, 1);

    // Markup churn with the same visible content is not a change.
    let churned = html.replace("content='abc'", "content='xyz'");
    let again = lib
        .put(
            NewItem::new(Kind::Page, "siteinspire", "https://nord.example/work")
                .bytes(churned.into_bytes(), Some("text/html; charset=utf-8")),
        )
        .unwrap();
    assert_eq!(again.outcome, Outcome::Unchanged);

    // Latin-1 bytes with the header's charset.
    let latin = b"<html><head><title>Caf\xe9 posters</title></head><body>x</body></html>".to_vec();
    let item = lib
        .put(
            NewItem::new(Kind::Page, "siteinspire", "https://cafe.example/")
                .bytes(latin, Some("text/html; charset=ISO-8859-1")),
        )
        .unwrap()
        .item;
    assert_eq!(item.title, "Café posters");
}

#[test]
fn put_many_reports_each_item_and_refuses_bad_images_alone() {
    let lib = ContentLibrary::temporary().unwrap();
    let good = png(20, 20, 10, NAVY, ORANGE);
    let truncated = good[..good.len() / 2].to_vec();
    let mut batch = vec![
        image_item("good.png", good.clone()),
        image_item("bad.png", truncated),
        NewItem::new(Kind::Image, "uploads", "fake.png").bytes(b"GIF89a? no".to_vec(), None),
        NewItem::new(Kind::Post, "", "x").text("no source"),
        image_item("good.png", good),
    ];
    for i in 0..40 {
        batch.push(post("feed", &format!("{i}"), &format!("Post {i}"), "text"));
    }
    let results = lib.put_many(batch).unwrap();
    assert_eq!(results.len(), 45);
    assert_eq!(results[0].as_ref().unwrap().outcome, Outcome::New);
    let bad = results[1].as_ref().unwrap_err();
    assert!(matches!(bad, ContentError::Image(_)), "{bad}");
    assert_eq!(bad.kind(), ErrorKind::Invalid);
    assert!(matches!(results[2], Err(ContentError::Image(_))));
    assert!(matches!(results[3], Err(ContentError::Invalid(_))));
    assert_eq!(results[4].as_ref().unwrap().outcome, Outcome::Unchanged);
    assert!(
        results[5..]
            .iter()
            .all(|r| r.as_ref().unwrap().outcome == Outcome::New)
    );
    assert_eq!(lib.count(), 41);
    assert!(
        lib.put(image_item("bad.png", b"\x89PNG\r\n\x1a\n".to_vec()))
            .is_err()
    );
}

#[test]
fn concurrent_writers_and_readers() {
    let lib = Arc::new(ContentLibrary::temporary().unwrap());
    std::thread::scope(|s| {
        for t in 0..4 {
            let lib = lib.clone();
            s.spawn(move || {
                for i in 0..10 {
                    lib.put(post(
                        "feed",
                        &format!("{t}-{i}"),
                        &format!("Thread {t} item {i}"),
                        "shared words",
                    ))
                    .unwrap();
                    lib.search(&Query::text("shared")).unwrap();
                }
            });
        }
    });
    assert_eq!(lib.search(&Query::text("shared")).unwrap().total, 40);
}

#[test]
fn reopening_from_disk_finds_everything_again() {
    let dir = tempfile::tempdir().unwrap();
    let (img_id, post_id);
    {
        let lib = ContentLibrary::open(dir.path()).unwrap();
        img_id = lib
            .put(image_item("hero.png", png(20, 20, 14, NAVY, ORANGE)).tags(["hero"]))
            .unwrap()
            .item
            .id;
        post_id = lib
            .put(post("feed", "1", "Risograph zine", "two colours"))
            .unwrap()
            .item
            .id;
        lib.create_collection("zines", "").unwrap();
        lib.add_to_collection("zines", &post_id).unwrap();
        lib.update(
            &post_id,
            Edit {
                notes: Some("print run of 200".into()),
                ..Edit::default()
            },
        )
        .unwrap();
    }
    let check = |lib: &ContentLibrary| {
        assert_eq!(lib.count(), 2);
        assert_eq!(
            lib.search(&Query::text("risograph")).unwrap().hits[0]
                .item
                .id,
            post_id
        );
        assert_eq!(lib.search(&Query::text("\"print run\"")).unwrap().total, 1);
        assert_eq!(
            lib.search(&Query::browse().collection("zines"))
                .unwrap()
                .total,
            1
        );
        assert_eq!(
            lib.search(&Query::browse().colour("#1f3a5f", 3.0))
                .unwrap()
                .total,
            1
        );
        assert_eq!(lib.search(&Query::browse().tag("hero")).unwrap().total, 1);
        assert_eq!(lib.blob(&img_id).unwrap().unwrap().media_type, "image/png");
        assert_eq!(
            lib.collection("zines").unwrap().items,
            vec![post_id.clone()]
        );
        assert_eq!(
            lib.put(image_item("hero.png", png(20, 20, 14, NAVY, ORANGE)))
                .unwrap()
                .outcome,
            Outcome::Unchanged
        );
    };
    {
        let lib = ContentLibrary::open(dir.path()).unwrap();
        check(&lib);
    }
    // An index lost or wiped is rebuilt from the store.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    {
        let lib = ContentLibrary::open(dir.path()).unwrap();
        check(&lib);
    }
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    std::fs::create_dir_all(dir.path().join("index")).unwrap();
    std::fs::write(dir.path().join("index").join("meta.json"), b"{not json").unwrap();
    let lib = ContentLibrary::open(dir.path()).unwrap();
    check(&lib);
}

#[test]
fn a_second_open_of_the_same_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _lib = ContentLibrary::open(dir.path()).unwrap();
    let err = ContentLibrary::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("only one process"), "{err}");
}

#[test]
fn svg_is_kept_when_it_is_svg_and_refused_otherwise() {
    let lib = ContentLibrary::temporary().unwrap();
    let svg = br##"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4" fill="#1f3a5f"/></svg>"##;
    let item = lib
        .put(
            NewItem::new(Kind::Image, "component_library", "icons/logo.svg")
                .bytes(svg.to_vec(), None),
        )
        .unwrap()
        .item;
    assert_eq!(item.media_type.as_deref(), Some("image/svg+xml"));
    assert_eq!(lib.blob(&item.id).unwrap().unwrap().bytes, svg.to_vec());
    let err = lib
        .put(
            NewItem::new(Kind::Other, "uploads", "fake.svg")
                .bytes(b"plain text".to_vec(), Some("image/svg+xml")),
        )
        .unwrap_err();
    assert!(matches!(err, ContentError::Image(_)), "{err}");
}

#[test]
fn content_leaves_the_library_only_when_no_source_key_has_it() {
    let lib = ContentLibrary::temporary().unwrap();
    let bytes = png(40, 20, 30, NAVY, GREEN);
    let a = lib.put(image_item("a/hero.png", bytes.clone())).unwrap();
    lib.put(image_item("b/hero-copy.png", bytes)).unwrap();
    let browse = |lib: &ContentLibrary| lib.search(&Query::default()).unwrap().total;
    assert_eq!(browse(&lib), 1);

    // One of its two keys gone: still in the library.
    assert!(
        lib.remove_source_keys("image_database", &["a/hero.png"])
            .unwrap()
            .is_empty()
    );
    assert_eq!(browse(&lib), 1);
    // An unknown key: nothing.
    assert!(
        lib.remove_source_keys("image_database", &["nowhere.png"])
            .unwrap()
            .is_empty()
    );
    // The last key gone: out of browse and search, kept by id, and an edit
    // does not bring it back into the index.
    let gone = lib
        .remove_source_keys("image_database", &["b/hero-copy.png"])
        .unwrap();
    assert_eq!(gone.len(), 1, "it left the library");
    assert_eq!(gone[0].id, a.item.id);
    assert_eq!(browse(&lib), 0);
    let edit = Edit {
        tags: Some(vec!["hero".into()]),
        ..Default::default()
    };
    lib.update(&a.item.id, edit).unwrap();
    assert_eq!(browse(&lib), 0);
    let kept = lib.get(&a.item.id).unwrap().unwrap();
    assert!(kept.removed_ms.is_some() && !kept.is_live());
    assert!(lib.source_keys("image_database", "").unwrap().is_empty());
}
