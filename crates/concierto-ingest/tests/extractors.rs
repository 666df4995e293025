//! A source's `extractor`/`extract` selects which extractors run on its items.

mod common;

use common::{daily, fast_opts, harness, source};
use concierto_core::config::SourceKind;

fn png(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

const CSS: &str = "body { font-family: 'Inter', sans-serif; font-size: 16px }";
const PAGE: &str = "<html><head><title>Market notes</title>\
    <style>h1 { font-family: 'Playfair Display', serif }</style></head>\
    <body><h1>Studio news</h1><p>Figma launches a collage tool for brands this spring. \
    Agencies report 34% more demand for risograph posters in 2026. We had coffee.</p></body></html>";

#[tokio::test]
async fn only_the_named_extractors_run() {
    // One folder per source, each file different (the library keys items by
    // content: the same bytes in two sources are one item).
    let dir = tempfile::tempdir().expect("dir");
    let folder = |name: &str, shade: u8| {
        let root = dir.path().join(name);
        std::fs::create_dir(&root).expect("mkdir");
        std::fs::write(root.join("red.png"), png(8, 8, [220, 20, shade])).expect("write");
        std::fs::write(root.join("theme.css"), format!("{CSS} /* {name} */")).expect("write");
        std::fs::write(root.join("news.html"), PAGE.replace("Studio news", name)).expect("write");
        root.to_str().expect("utf-8").to_string()
    };
    let mut h = harness(fast_opts()).await;

    // `extract: [colour_palettes]`: palettes, no typography, no concepts.
    let mut palettes_only = source(
        "palettes_only",
        SourceKind::ComponentLibrary,
        &folder("palettes_only", 30),
        daily(),
    );
    palettes_only.extract = vec!["colour_palettes".into()];
    let r = h.ingester.run_once(&palettes_only).await.expect("cycle");
    assert_eq!(r.new, 3, "{r:?}");
    let get = |source: &str, key: &str| {
        h.library
            .get_by_source_key(source, key)
            .expect("read")
            .expect("stored")
    };
    let red = get("palettes_only", "red.png");
    assert!(!red.palette.is_empty(), "palettes run");
    let css = get("palettes_only", "theme.css");
    assert!(css.typography.is_empty(), "{:?}", css.typography);
    let page = get("palettes_only", "news.html");
    assert!(
        page.typography.is_empty() && page.concepts.is_empty(),
        "{page:?}"
    );
    assert!(!page.notes.contains("Industry insights"));

    // No list: every default extractor (and no insights).
    let all = source(
        "all_default",
        SourceKind::ComponentLibrary,
        &folder("all_default", 40),
        daily(),
    );
    h.ingester.run_once(&all).await.expect("cycle");
    let css = get("all_default", "theme.css");
    assert!(css.typography.iter().any(|f| f.family == "Inter"));
    let page = get("all_default", "news.html");
    assert!(
        page.concepts.iter().any(|c| c == "collage"),
        "{:?}",
        page.concepts
    );
    assert!(!page.notes.contains("Industry insights"));

    // `extract: [creative_techniques, industry_insights]`: techniques and
    // insights from the page's text, no palette, no typography.
    let mut insights = source(
        "insights",
        SourceKind::ComponentLibrary,
        &folder("insights", 50),
        daily(),
    );
    insights.extract = vec!["creative_techniques".into(), "industry_insights".into()];
    h.ingester.run_once(&insights).await.expect("cycle");
    let red = get("insights", "red.png");
    assert!(red.palette.is_empty());
    let page = get("insights", "news.html");
    assert!(page.typography.is_empty());
    assert!(
        page.concepts
            .iter()
            .all(|c| c == "collage" || c == "risograph"),
        "{:?}",
        page.concepts
    );
    assert!(
        page.concepts.iter().any(|c| c == "collage"),
        "{:?}",
        page.concepts
    );
    assert!(
        page.notes
            .contains("Figma launches a collage tool for brands this spring")
            && page
                .notes
                .contains("- Agencies report 34% more demand for risograph posters in 2026")
            && !page.notes.contains("coffee"),
        "{}",
        page.notes
    );
    let _ = h.drain().await;
}
