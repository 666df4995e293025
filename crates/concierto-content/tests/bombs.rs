//! Decompression bombs against the content API over a real socket: small
//! PNG files whose headers declare huge pictures are refused with 413 before
//! their pixels are allocated, and uploads arriving together decode at most
//! two at a time. Memory is measured by a counting allocator (the process's
//! own allocations; nextest runs each test in its own process, and a lock
//! keeps the measured tests of this file apart under `cargo test` too).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use concierto_content::extract::{MAX_CONCURRENT_DECODES, MAX_DECODE_BYTES, palette};
use concierto_content::{ApiOptions, ContentError, ContentLibrary, TokenAuth, router};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

/// Counts the bytes allocated now and the most at once since the last reset.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::SeqCst) + size;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The measured tests run one at a time.
static MEASURED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The most bytes allocated at once while `f` ran, above what was allocated
/// when it started.
async fn peak_during<T>(f: impl std::future::Future<Output = T>) -> (T, usize) {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f.await;
    (out, PEAK.load(Ordering::SeqCst).saturating_sub(base))
}

const MIB: usize = 1024 * 1024;
const TOKEN: &str = "bomb-token";

// ---------------------------------------------------------------------------
// A PNG of zeros, written by hand: the header declares any size, the pixels
// are one deflate block of fixed Huffman codes (a zero, then back-references
// of 258 bytes at distance 1: 13 bits per 258 bytes).

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for part in parts {
        for &b in *part {
            crc ^= u32::from(b);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0xedb8_8320 & mask);
            }
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).expect("chunk length");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// Bits written least significant first, as deflate wants.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push((self.acc & 0xff) as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code: its bits go most significant first.
    fn code(&mut self, code: u32, len: u32) {
        let reversed = code.reverse_bits() >> (32 - len);
        self.put(reversed, len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push((self.acc & 0xff) as u8);
        }
        self.out
    }
}

/// A zlib stream of `n` zero bytes (n ≥ 1).
fn zlib_zeros(n: u64) -> Vec<u8> {
    let mut bits = Bits::default();
    bits.put(1, 1); // the final block
    bits.put(1, 2); // fixed Huffman codes
    bits.code(0x30, 8); // literal 0
    let rest = n - 1;
    for _ in 0..rest / 258 {
        bits.code(0xc5, 8); // length 258 (symbol 285)
        bits.code(0, 5); // distance 1
    }
    for _ in 0..rest % 258 {
        bits.code(0x30, 8);
    }
    bits.code(0, 7); // end of block
    let mut out = vec![0x78, 0x01];
    out.extend(bits.finish());
    // Adler-32 of zeros: a stays 1, b adds 1 per byte.
    let adler = (((n % 65_521) as u32) << 16) | 1;
    out.extend_from_slice(&adler.to_be_bytes());
    out
}

/// A PNG declaring `width`×`height` pixels (8-bit grey, or RGB when `rgb`),
/// with pixel data for its first `rows` rows (all of them for a valid file).
fn png_of_zeros(width: u32, height: u32, rgb: bool, rows: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, if rgb { 2 } else { 0 }, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let row = 1 + u64::from(width) * if rgb { 3 } else { 1 };
    chunk(&mut out, b"IDAT", &zlib_zeros(row * u64::from(rows)));
    chunk(&mut out, b"IEND", &[]);
    out
}

// ---------------------------------------------------------------------------

async fn serve(library: Arc<ContentLibrary>) -> String {
    let auth: TokenAuth = Arc::new(|t: &str| (t == TOKEN).then(|| "ana".to_string()));
    let app = router(library, auth, ApiOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}")
}

async fn upload(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let part = Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str("image/png")
        .expect("mime");
    let res = http
        .post(format!("{base}/api/upload"))
        .bearer_auth(TOKEN)
        .multipart(Form::new().part("file", part))
        .send()
        .await
        .expect("send");
    let status = res.status();
    (status, res.json().await.expect("json"))
}

#[test]
fn the_handmade_png_decodes_as_what_it_declares() {
    // A small valid one gives its (black) palette, so the bombs below are
    // refused for their size, not for being malformed.
    let small = png_of_zeros(64, 48, true, 48);
    let swatches = palette(&small, 6).expect("decodes");
    assert_eq!(swatches.len(), 1);
    assert_eq!(swatches[0].hex, "#000000");
    let img = image::load_from_memory(&small).expect("image reads it too");
    assert_eq!((img.width(), img.height()), (64, 48));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_png_declaring_a_huge_picture_is_413_without_allocating_it() {
    let _one = MEASURED.lock().await;
    let library = Arc::new(ContentLibrary::temporary().expect("library"));
    let base = serve(library.clone()).await;
    let http = reqwest::Client::new();

    // 16000×16000 grey: 256 MB of pixels (over the 96 MiB a decode may
    // take) in a 1.6 MB file, complete and valid.
    let bomb = png_of_zeros(16_000, 16_000, false, 16_000);
    assert!(bomb.len() < 2 * MIB, "{} bytes", bomb.len());
    let declared = 16_000usize * 16_000;
    assert!(declared as u64 > MAX_DECODE_BYTES);
    let ((status, body), peak) = peak_during(upload(&http, &base, "bomb.png", bomb)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let reason = body["refused"][0]["reason"].as_str().expect("a reason");
    assert!(reason.contains("decoding limit"), "{reason}");
    assert!(reason.contains("96 MiB"), "{reason}");
    assert!(body["error"].is_string(), "{body}");
    assert!(
        peak < 32 * MIB,
        "the upload took {} MiB at its peak; its pixels would be {} MiB",
        peak / MIB,
        declared / MIB
    );

    // 30000×30000 declared, a few rows of data: over the width and height limit.
    let wide = png_of_zeros(30_000, 30_000, true, 4);
    let ((status, body), peak) = peak_during(upload(&http, &base, "wide.png", wide)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let reason = body["refused"][0]["reason"].as_str().expect("a reason");
    assert!(reason.contains("16384 pixels"), "{reason}");
    assert!(peak < 32 * MIB, "{} MiB", peak / MIB);
    assert_eq!(library.count(), 0, "nothing stored");

    // A bomb beside a good picture: the picture is stored (201), the bomb refused.
    let form = Form::new()
        .part(
            "file",
            Part::bytes(png_of_zeros(16_000, 16_000, false, 16_000)).file_name("bomb.png"),
        )
        .part(
            "file",
            Part::bytes(png_of_zeros(40, 30, true, 30)).file_name("black.png"),
        );
    let res = http
        .post(format!("{base}/api/upload"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["refused"][0]["name"], "bomb.png", "{body}");
    let id = body["items"][0]["id"].as_str().expect("id");
    let item = library.get(id).expect("get").expect("stored");
    assert_eq!(
        item.palette[0].hex, "#000000",
        "a normal image gets its palette"
    );

    // The library itself says why.
    let err = library
        .put(
            concierto_content::NewItem::new(concierto_content::Kind::Image, "s", "k")
                .bytes(png_of_zeros(16_000, 16_000, false, 16_000), None),
        )
        .expect_err("refused");
    assert!(matches!(err, ContentError::TooLarge(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pictures_arriving_together_decode_two_at_a_time() {
    let _one = MEASURED.lock().await;
    assert_eq!(MAX_CONCURRENT_DECODES, 2);
    // Four different 3000×3000 RGB pictures (25.7 MiB of pixels each), their
    // palettes asked for at the same moment from four threads, as four
    // uploads or ingested files would.
    let (w, h) = (3_000u32, 3_000u32);
    let pixels = (w * h * 3) as usize;
    let files: Vec<Vec<u8>> = (0..4).map(|i| png_of_zeros(w - i, h, true, h)).collect();
    let start = Arc::new(std::sync::Barrier::new(files.len()));
    let (results, peak) = peak_during(async {
        let threads: Vec<_> = files
            .into_iter()
            .map(|f| {
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    palette(&f, 6)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect::<Vec<_>>()
    })
    .await;
    for r in results {
        assert_eq!(r.expect("decodes")[0].hex, "#000000");
    }
    // Two pictures in memory at once (and a little more); four would not fit.
    assert!(
        peak < 2 * pixels + pixels / 2,
        "{} MiB at the peak for pictures of {} MiB each",
        peak / MIB,
        pixels / MIB
    );
}
