//! Content library benchmark: palette extraction per megapixel, `put_many`
//! items per second for generated HTML pages, and search latency p50/p99 over a
//! large generated library (plus the time to build its index).
//!
//! `cargo bench -p concierto-content --bench content`. Scale it with
//! CONTENT_BENCH_ITEMS (search corpus, default 100,000), CONTENT_BENCH_PAGES
//! (pages for put_many, default 10,000, at most CONTENT_BENCH_ITEMS),
//! CONTENT_BENCH_RUNS (palette runs, default 7) and CONTENT_BENCH_QUERIES
//! (default 2,000). Everything is generated from a fixed seed.

use std::time::{Duration, Instant};

use concierto_content::extract::palette;
use concierto_content::{ContentLibrary, Kind, NewItem, Query, Swatch};
use image::{ImageEncoder, Rgb, RgbImage};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Roughly Zipf-distributed index in 0..n.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) - 1.0) as usize % n
    }
}

const DESIGN: &[&str] = &[
    "brutalist",
    "minimal",
    "gradient",
    "duotone",
    "grain",
    "serif",
    "monospace",
    "isometric",
    "3d",
    "collage",
    "risograph",
    "bento",
    "grid",
    "glassmorphism",
    "poster",
    "typography",
    "editorial",
    "branding",
    "illustration",
    "photography",
    "dark",
    "mode",
    "pastel",
    "neon",
    "retro",
    "swiss",
    "layout",
    "portfolio",
    "studio",
    "agency",
];

fn vocabulary() -> Vec<String> {
    let syllables = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "fi", "gu", "ha", "je",
    ];
    let mut words: Vec<String> = DESIGN.iter().map(|s| s.to_string()).collect();
    let mut rng = Rng(0x5eed);
    while words.len() < 3_000 {
        let n = 2 + rng.below(3);
        let w: String = (0..n)
            .map(|_| syllables[rng.below(syllables.len())])
            .collect();
        words.push(w);
    }
    words
}

fn sentence(rng: &mut Rng, vocab: &[String], words: usize) -> String {
    (0..words)
        .map(|_| vocab[rng.zipf(vocab.len())].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn bench_palette(runs: usize) {
    // 1632 x 1224 = 2.0 MP: a photo-like mix of gradients, blocks and noise.
    let (w, h) = (1632u32, 1224u32);
    let mut rng = Rng(42);
    let img = RgbImage::from_fn(w, h, |x, y| {
        let noise = (rng.next() % 24) as u8;
        let base = if x < w / 3 {
            [0x1f, 0x3a, 0x5f]
        } else if y < h / 2 {
            [(x * 255 / w) as u8, (y * 255 / h) as u8, 0x80]
        } else {
            [0xd9, 0x7b, 0x4a]
        };
        Rgb([
            base[0].saturating_add(noise),
            base[1].saturating_add(noise / 2),
            base[2].saturating_sub(noise / 3),
        ])
    });
    let megapixels = f64::from(w * h) / 1e6;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .expect("png");
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .expect("jpeg");
    for (name, bytes) in [("PNG", &png), ("JPEG", &jpeg)] {
        let mut times = Vec::new();
        let mut decode = Vec::new();
        let mut result = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let _ = image::load_from_memory(bytes).expect("decode");
            decode.push(t.elapsed());
            let t = Instant::now();
            result = palette(bytes, 6).expect("palette");
            times.push(t.elapsed());
        }
        let total = median(times);
        let dec = median(decode);
        println!(
            "palette  {name:<4} {megapixels:.2} MP ({} KB), median of {runs}: {:.1} ms = {:.1} ms/MP (decode {:.1} ms/MP, clustering {:.1} ms)",
            bytes.len() / 1024,
            ms(total),
            ms(total) / megapixels,
            ms(dec) / megapixels,
            (ms(total) - ms(dec)).max(0.0),
        );
        let swatches: Vec<String> = result
            .iter()
            .map(|s: &Swatch| format!("{} {:.2}", s.hex, s.share))
            .collect();
        println!("         swatches: {}", swatches.join(", "));
    }
}

fn page_html(rng: &mut Rng, vocab: &[String], i: usize) -> String {
    let title = sentence(rng, vocab, 4);
    let desc = sentence(rng, vocab, 14);
    let paras: Vec<String> = (0..6)
        .map(|_| format!("<p>{}</p>", sentence(rng, vocab, 40)))
        .collect();
    let fonts = [
        "Inter",
        "Playfair Display",
        "Space Grotesk",
        "IBM Plex Mono",
    ];
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{title} {i}</title>\
         <meta name=description content=\"{desc}\">\
         <link href=\"https://fonts.googleapis.com/css2?family={}:wght@400;700\" rel=stylesheet>\
         <style>body{{font-family:'{}',sans-serif;font-size:16px}} h1{{font-size:3rem;font-weight:800}}</style>\
         </head><body><nav><a href=\"/\">Home</a> <a href=\"/work\">Work</a></nav><h1>{title}</h1>{}\
         <img src=\"/img/{i}.jpg\" alt=\"{}\"></body></html>",
        fonts[i % 4].replace(' ', "+"),
        fonts[i % 4],
        paras.join(""),
        sentence(rng, vocab, 5),
    )
}

fn bench_put_many(pages: usize) {
    let vocab = vocabulary();
    let mut rng = Rng(7);
    let items: Vec<NewItem> = (0..pages)
        .map(|i| {
            NewItem::new(
                Kind::Page,
                "siteinspire",
                format!("https://site{i}.example/"),
            )
            .bytes(
                page_html(&mut rng, &vocab, i).into_bytes(),
                Some("text/html; charset=utf-8"),
            )
        })
        .collect();
    let bytes: usize = items
        .iter()
        .map(|n| n.bytes.as_ref().map_or(0, Vec::len))
        .sum();
    let dir = tempfile::tempdir().expect("tempdir");
    let lib = ContentLibrary::open(dir.path()).expect("open");
    let batch = 1_000;
    let start = Instant::now();
    let mut it = items.into_iter();
    let mut stored = 0;
    loop {
        let chunk: Vec<NewItem> = it.by_ref().take(batch).collect();
        if chunk.is_empty() {
            break;
        }
        stored += lib
            .put_many(chunk)
            .expect("put_many")
            .into_iter()
            .filter(|r| r.is_ok())
            .count();
    }
    let took = start.elapsed();
    println!(
        "put_many {stored} HTML pages (avg {:.1} KB, batches of {batch}, extraction + store + index, durable): {:.2} s = {:.0} items/s",
        bytes as f64 / pages.max(1) as f64 / 1024.0,
        took.as_secs_f64(),
        stored as f64 / took.as_secs_f64()
    );
    // One at a time: each put flushes and commits.
    let n = 200.min(pages);
    let mut rng = Rng(99);
    let start = Instant::now();
    for i in 0..n {
        lib.put(
            NewItem::new(Kind::Post, "twitter", format!("single-{i}"))
                .text(sentence(&mut rng, &vocab, 30)),
        )
        .expect("put");
    }
    let took = start.elapsed();
    println!(
        "put      {n} posts one at a time (flush + commit each): {:.2} ms/put",
        ms(took) / n.max(1) as f64
    );
}

fn corpus_item(rng: &mut Rng, vocab: &[String], i: usize, base_ms: i64) -> NewItem {
    let kinds = [Kind::Page, Kind::Post, Kind::Image, Kind::Component];
    let sources = [
        "siteinspire",
        "twitter",
        "image_database",
        "component_library",
    ];
    let k = rng.below(4);
    let palette = if kinds[k] == Kind::Image {
        let hexes = [
            "#1f3a5f", "#d97b4a", "#2e8b57", "#f4f2ee", "#111111", "#c0392b",
        ];
        let a = rng.below(hexes.len());
        let b = (a + 1 + rng.below(hexes.len() - 1)) % hexes.len();
        vec![
            Swatch {
                hex: hexes[a].into(),
                share: 0.6,
            },
            Swatch {
                hex: hexes[b].into(),
                share: 0.4,
            },
        ]
    } else {
        Vec::new()
    };
    let tags: Vec<&str> = (0..rng.below(3))
        .map(|_| DESIGN[rng.below(DESIGN.len())])
        .collect();
    NewItem::new(kinds[k], sources[k], format!("item-{i}"))
        .title(sentence(rng, vocab, 5))
        .text(sentence(rng, vocab, 60))
        .tags(tags)
        .palette(palette)
        .published_ms(base_ms + i as i64 * 60_000)
}

fn bench_search(items: usize, queries: usize) {
    let vocab = vocabulary();
    let dir = tempfile::tempdir().expect("tempdir");
    let lib = ContentLibrary::open(dir.path()).expect("open");
    let base_ms = 1_767_225_600_000; // 2026-01-01
    let mut rng = Rng(2026);
    let batch = 5_000;
    let start = Instant::now();
    let mut made = 0;
    while made < items {
        let n = batch.min(items - made);
        let chunk: Vec<NewItem> = (made..made + n)
            .map(|i| corpus_item(&mut rng, &vocab, i, base_ms))
            .collect();
        lib.put_many(chunk).expect("put_many");
        made += n;
    }
    let build = start.elapsed();
    println!(
        "index    {items} items (title, 60-word text, tags, palettes) built in {:.1} s = {:.0} items/s",
        build.as_secs_f64(),
        items as f64 / build.as_secs_f64()
    );

    let mut qrng = Rng(11);
    let span = items as i64 * 60_000;
    let mut kinds: Vec<(&str, Vec<Duration>, usize)> = vec![
        ("one word", Vec::new(), 0),
        ("two words", Vec::new(), 0),
        ("phrase", Vec::new(), 0),
        ("word + kind + tag", Vec::new(), 0),
        ("browse newest", Vec::new(), 0),
        ("browse + source + range", Vec::new(), 0),
        ("colour ΔE<10", Vec::new(), 0),
        ("word + colour", Vec::new(), 0),
    ];
    let mut all = Vec::with_capacity(queries);
    for q in 0..queries {
        let slot = q % kinds.len();
        let w = |r: &mut Rng| vocab[r.zipf(vocab.len())].clone();
        let query = match slot {
            0 => Query::text(w(&mut qrng)),
            1 => Query::text(format!("{} {}", w(&mut qrng), w(&mut qrng))),
            2 => Query::text(format!("\"{} {}\"", w(&mut qrng), w(&mut qrng))),
            3 => Query::text(w(&mut qrng))
                .kind(Kind::Image)
                .tag(DESIGN[qrng.below(DESIGN.len())]),
            4 => Query::browse().page(20, qrng.below(5) * 20),
            5 => {
                let from = base_ms + (qrng.next() % span.max(1) as u64) as i64;
                Query::browse()
                    .source("twitter")
                    .between(Some(from), Some(from + span / 10))
            }
            6 => Query::browse().colour("#1f3a5f", 10.0),
            _ => Query::text(w(&mut qrng)).colour("#d97b4a", 10.0),
        };
        let t = Instant::now();
        let page = lib.search(&query).expect("search");
        let took = t.elapsed();
        kinds[slot].1.push(took);
        kinds[slot].2 += page.total;
        all.push(took);
    }
    all.sort();
    println!(
        "search   {queries} queries over {items} items: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (20 hits, items loaded from the store)",
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
        ms(*all.last().unwrap_or(&Duration::ZERO)),
    );
    for (name, mut times, totals) in kinds {
        times.sort();
        let n = times.len().max(1);
        println!(
            "         {name:<24} p50 {:>6.2} ms  p99 {:>6.2} ms  (avg matches {})",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            totals / n
        );
    }
}

fn main() {
    let items = env("CONTENT_BENCH_ITEMS", 100_000).max(1);
    let pages = env("CONTENT_BENCH_PAGES", 10_000).min(items).max(1);
    let runs = env("CONTENT_BENCH_RUNS", 7).max(1);
    let queries = env("CONTENT_BENCH_QUERIES", 2_000).max(8);
    let start = Instant::now();
    bench_palette(runs);
    bench_put_many(pages);
    bench_search(items, queries);
    println!("total    {:.1} s", start.elapsed().as_secs_f64());
}
