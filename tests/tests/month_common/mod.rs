//! What `studio_month.rs` runs on: a copy of the example studio with its
//! content sources on local things and tokens for its people, and the local
//! `siteinspire` feed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The brand manager's token (the studio holds its SHA-256).
pub const BRAND: &str = "brand-manager-token-studio-month-0123456789";
/// The creative director's token.
pub const CREATIVE: &str = "creative-director-token-studio-month-0123456789";

/// The campaign whose engagement is under the threshold: the newest record
/// of the analytics file, so the series' latest sample.
pub const LOW_CAMPAIGN_DATE: &str = "2027-01-29";
const ANALYTICS: &str = "campaign_id,name,date,channel,impressions,clicks,engagement_rate
spring-teaser,Spring teaser,2027-01-11,instagram,12000,540,0.081
studio-film,Studio film,2027-01-18,youtube,9400,310,0.066
refill-reminder,Refill reminder,2027-01-29,newsletter,4100,70,0.032
";

// ---------------------------------------------------------------------------
// The studio copy
// ---------------------------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `text` with the one line containing `needle` replaced by `f(indent, line)`.
fn edit_line(text: &str, needle: &str, f: impl Fn(&str, &str) -> String) -> String {
    let hits = text.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        hits, 1,
        "the example studio has {hits} lines with {needle:?}; this test edits exactly one"
    );
    let mut out = String::new();
    for line in text.lines() {
        if line.contains(needle) {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(&f(indent, line));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// `text` without its top-level `section` (up to the next top-level line).
fn drop_section(text: &str, section: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    let mut found = false;
    for line in text.lines() {
        let top = !line.is_empty() && !line.starts_with(' ');
        if top {
            inside = line.trim_end() == format!("{section}:");
            found |= inside;
        }
        if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(found, "the example studio has no {section} section");
    out
}

fn png(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Copies the example studio into `dir/studio` with its content sources on
/// local folders and the feed at `feed_url`, and tokens for both people.
pub fn write_studio(dir: &Path, feed_url: &str) -> PathBuf {
    let example = concierto_e2e::example_studio();
    let example_dir = example.parent().unwrap();
    let studio = dir.join("studio");
    copy_dir(&example_dir.join("agents"), &studio.join("agents"));
    copy_dir(&example_dir.join("brand"), &studio.join("brand"));

    let content = dir.join("content");
    let assets = content.join("brand-assets");
    let design = content.join("design-system");
    let analytics = content.join("analytics/high-performing");
    let feedback = content.join("feedback/processed");
    for d in [&assets, &design, &analytics, &feedback] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(assets.join("navy-cover.png"), png(24, 16, [31, 58, 95])).unwrap();
    std::fs::write(
        assets.join("terracotta-tile.png"),
        png(16, 16, [217, 123, 74]),
    )
    .unwrap();
    std::fs::write(
        design.join("tokens.css"),
        ":root { --navy: #1f3a5f; --paper: #f4efe6; --clay: #d97b4a; }\n\
         body { font-family: \"Source Serif 4\", Georgia, serif; color: #2e2e2e; background: #f4efe6; }\n\
         .button { font-family: Inter, sans-serif; background: #1f3a5f; color: #ffffff; border-radius: 4px; }\n",
    )
    .unwrap();
    std::fs::write(analytics.join("campaigns.csv"), ANALYTICS).unwrap();
    std::fs::write(
        feedback.join("processed.jsonl"),
        "{\"feedback_id\": \"fb-101\", \"channel\": \"email\", \"category\": \"brand\", \"text\": \"The spring banner colour feels off-brand next to the jars.\", \"created_at\": \"2027-01-27T10:00:00Z\"}\n\
         {\"feedback_id\": \"fb-102\", \"channel\": \"web_form\", \"category\": \"growth\", \"text\": \"I would like a reminder when refills are back in stock.\", \"created_at\": \"2027-01-28T16:30:00Z\"}\n",
    )
    .unwrap();

    let slash = |p: &Path| format!("{}/", p.display());
    let mut text = std::fs::read_to_string(&example).unwrap();
    text = drop_section(&text, "demo_triggers");
    text = edit_line(&text, "path: \"content/brand-assets/\"", |i, _| {
        format!("{i}path: \"{}\"", slash(&assets))
    });
    text = edit_line(&text, "path: \"content/design-system/\"", |i, _| {
        format!("{i}path: \"{}\"", slash(&design))
    });
    text = edit_line(&text, "source: \"analytics/high-performing/\"", |i, _| {
        format!("{i}source: \"{}\"", slash(&analytics))
    });
    text = edit_line(&text, "source: \"feedback/processed/\"", |i, _| {
        format!("{i}source: \"{}\"", slash(&feedback))
    });
    // The example keeps its web source off; this month reads the local feed.
    let off = "enabled: false\n        extractor:";
    assert_eq!(
        text.matches(off).count(),
        1,
        "the siteinspire source is off in the example"
    );
    text = text.replacen(off, "enabled: true\n        extractor:", 1);
    text = edit_line(&text, "url: \"https://siteinspire.com/feed\"", |i, _| {
        format!("{i}url: \"{feed_url}\"\n{i}allow_private_networks: true")
    });
    for (slack, token) in [("U0BRANDMGR", BRAND), ("U0CREATIVE", CREATIVE)] {
        text = edit_line(&text, &format!("slack: \"{slack}\""), |i, line| {
            format!(
                "{line}\n{i}token_sha256: \"{}\"",
                concierto_admin::token_sha256(token)
            )
        });
    }
    let file = studio.join("concierto.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

/// The role names the example's role files define (their `name:`).
pub fn example_roles() -> BTreeSet<String> {
    let dir = concierto_e2e::example_studio()
        .parent()
        .unwrap()
        .join("agents");
    let mut roles = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let name = text
            .lines()
            .skip(1)
            .take_while(|l| l.trim() != "---")
            .find_map(|l| l.strip_prefix("name:"))
            .expect("a role file has a name");
        roles.insert(name.trim().to_string());
    }
    roles
}

// ---------------------------------------------------------------------------
// The local `siteinspire` feed
// ---------------------------------------------------------------------------

/// What the feed serves: `(id, title, description)` per entry.
pub type Entries = Arc<Mutex<Vec<(String, String, String)>>>;

pub fn entries(range: std::ops::Range<usize>) -> Vec<(String, String, String)> {
    const STYLES: &[&str] = &[
        "a calm serif portfolio on warm paper tones",
        "a studio site with hand drawn type and clay accents",
        "a product story told in large photographs and short captions",
        "a bold grid of material samples with precise labels",
        "a quiet editorial layout with generous margins",
    ];
    range
        .map(|n| {
            (
                format!("site-{n:04}"),
                format!("Site of the day {n}: {}", STYLES[n % STYLES.len()]),
                format!(
                    "Entry {n}. Design trend: {}. Typography pairs a serif headline with a simple sans body; the colour palette is navy, paper and clay.",
                    STYLES[(n * 7 + 3) % STYLES.len()]
                ),
            )
        })
        .collect()
}

fn rss(base: &str, entries: &[(String, String, String)]) -> String {
    let mut items = String::new();
    for (id, title, text) in entries {
        items.push_str(&format!(
            "<item><title>{title}</title><link>{base}/sites/{id}</link><guid>{base}/sites/{id}</guid><description>{text}</description></item>\n"
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\"><channel><title>siteinspire (local)</title><link>{base}/</link><description>Sites of the day</description>\n{items}</channel></rss>\n"
    )
}

/// Serves `/robots.txt` (everything allowed) and `/feed` (RSS of `entries`);
/// returns the feed's URL.
pub async fn feed_server(entries: Entries) -> String {
    use axum::http::header::CONTENT_TYPE;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let feed_base = base.clone();
    let app = axum::Router::new()
        .route(
            "/robots.txt",
            axum::routing::get(|| async { "User-agent: *\nAllow: /\n" }),
        )
        .route(
            "/feed",
            axum::routing::get(move || {
                let body = rss(&feed_base, &entries.lock().unwrap());
                async move { ([(CONTENT_TYPE, "application/rss+xml")], body) }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("{base}/feed")
}

/// Panics unless the studio `copy` is the example studio but for the content
/// sources' locations, the feed's `allow_private_networks`, the people's
/// tokens and the demo trigger: every seed key and value, every workflow,
/// role, loop, gate and metric as the example has them.
pub fn assert_seed_kept(copy: &Path) {
    use concierto_core::config::load_with_env;
    let example =
        load_with_env(&concierto_e2e::example_studio(), Vec::new()).expect("the example loads");
    let copy = load_with_env(copy, Vec::new()).expect("the copy loads");
    let dbg = |v: &dyn std::fmt::Debug| format!("{v:?}");
    let seed_triggers: Vec<_> = example
        .triggers
        .iter()
        .filter(|t| t.name != "studio_demo")
        .collect();
    assert_eq!(
        seed_triggers.len() + 1,
        example.triggers.len(),
        "the example's one demo trigger"
    );
    assert_eq!(
        dbg(&seed_triggers),
        dbg(&copy.triggers.iter().collect::<Vec<_>>())
    );
    assert_eq!(dbg(&example.feedback_loops), dbg(&copy.feedback_loops));
    assert_eq!(dbg(&example.progress_metrics), dbg(&copy.progress_metrics));
    assert_eq!(dbg(&example.workflows), dbg(&copy.workflows));
    assert_eq!(dbg(&example.studio), dbg(&copy.studio));
    assert_eq!(
        example.roles.keys().collect::<Vec<_>>(),
        copy.roles.keys().collect::<Vec<_>>()
    );
    let source = |s: &concierto_core::config::ContentSource| {
        let mut s = s.clone();
        s.location.clear();
        s.allow_private_networks = false;
        // The copy reads siteinspire (from a local server), which the example leaves off.
        s.enabled = s.enabled || s.name == "siteinspire";
        format!("{s:?}")
    };
    assert_eq!(
        example
            .content_sources
            .iter()
            .map(source)
            .collect::<Vec<_>>(),
        copy.content_sources.iter().map(source).collect::<Vec<_>>()
    );
    let person = |r: &concierto_core::config::Reviewer| {
        let mut r = r.clone();
        r.token_sha256 = None;
        format!("{r:?}")
    };
    assert_eq!(
        example.reviewers.values().map(person).collect::<Vec<_>>(),
        copy.reviewers.values().map(person).collect::<Vec<_>>()
    );
}
