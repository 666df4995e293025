//! Dominant colours of an image: k-means in CIELAB.
//!
//! decode → sample ≤ 64k opaque pixels on a regular grid → histogram of 15-bit
//! colour cells (each cell keeps the mean CIELAB of its pixels) → weighted
//! k-means with a deterministic weighted farthest-point start → merge clusters
//! closer than ΔE 3 → swatches by share.

use std::io::Cursor;

use image::{GenericImageView, ImageReader, Limits};

use crate::colour::{Lab, LinearTable, delta_e76};
use crate::error::ContentError;
use crate::gate::Gate;
use crate::model::Swatch;

/// At most this many pixels are clustered.
pub const MAX_SAMPLES: u64 = 65_536;
/// Clusters whose centres are closer than this (CIE76) are merged.
const MERGE_DELTA_E: f64 = 3.0;
const MAX_ITERATIONS: usize = 40;
/// Largest k accepted.
pub const MAX_K: usize = 32;
/// Largest width or height decoded (pixels); a larger image is refused
/// before anything is allocated for it.
pub const MAX_DIMENSION: u32 = 16_384;
/// Most memory one decode may take (96 MiB: a 24-megapixel photo decodes to
/// 72 MB as RGB). The decoder checks it against the size the image header
/// declares, before allocating, so a small file declaring a huge picture (a
/// decompression bomb) costs nothing.
pub const MAX_DECODE_BYTES: u64 = 96 * 1024 * 1024;
/// Most images decoded at once in this process (uploads, ingestion, every
/// library): with [`MAX_DECODE_BYTES`] at most 192 MiB go to pictures
/// however many arrive together; the others wait their turn.
pub const MAX_CONCURRENT_DECODES: usize = 2;

static DECODES: Gate = Gate::new(MAX_CONCURRENT_DECODES);

/// The image types we can decode, identified by their first bytes.
pub fn sniff_image_type(bytes: &[u8]) -> Option<&'static str> {
    match image::guess_format(bytes).ok()? {
        image::ImageFormat::Png => Some("image/png"),
        image::ImageFormat::Jpeg => Some("image/jpeg"),
        image::ImageFormat::WebP => Some("image/webp"),
        image::ImageFormat::Gif => Some("image/gif"),
        _ => None,
    }
}

/// The limits every decode runs under.
fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// Decodes an image under [`MAX_DIMENSION`] and [`MAX_DECODE_BYTES`]. An
/// image over a limit is [`ContentError::TooLarge`], refused from its header
/// before its pixels are allocated. The caller holds a turn of `DECODES`
/// while the picture lives.
fn decode(bytes: &[u8]) -> Result<image::DynamicImage, ContentError> {
    if sniff_image_type(bytes).is_none() {
        return Err(ContentError::Image(
            "not a PNG, JPEG, WebP or GIF image (checked by content)".into(),
        ));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ContentError::Image(e.to_string()))?;
    reader.limits(limits());
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => ContentError::TooLarge(format!(
            "the image is over a decoding limit ({l}): at most {MAX_DIMENSION} pixels wide \
             and high and {} MiB decoded; scale it down",
            MAX_DECODE_BYTES >> 20
        )),
        e => ContentError::Image(format!("cannot decode: {e}")),
    })
}

/// The `k` (at most) dominant colours of an encoded image, largest share first.
///
/// Deterministic: the same bytes and `k` give the same swatches on every run.
/// Fully transparent images give an empty palette. Undecodable bytes give
/// [`ContentError::Image`]; an image over [`MAX_DIMENSION`] or
/// [`MAX_DECODE_BYTES`] gives [`ContentError::TooLarge`].
pub fn palette(image_bytes: &[u8], k: usize) -> Result<Vec<Swatch>, ContentError> {
    if k == 0 || k > MAX_K {
        return Err(ContentError::Invalid(format!(
            "palette size {k}: ask for 1 to {MAX_K} colours"
        )));
    }
    // At most MAX_CONCURRENT_DECODES pictures in memory at once: the turn is
    // held until the decoded picture is dropped.
    let _turn = DECODES.enter();
    let img = decode(image_bytes)?;
    Ok(palette_of(&img, k))
}

/// The dominant colours of a decoded image.
pub(crate) fn palette_of(img: &image::DynamicImage, k: usize) -> Vec<Swatch> {
    let points = histogram(img);
    cluster(&points, k)
}

/// A colour cell: mean CIELAB and how many sampled pixels fell in it.
#[derive(Debug, Clone, Copy)]
struct Point {
    lab: [f64; 3],
    weight: f64,
}

fn histogram(img: &image::DynamicImage) -> Vec<Point> {
    let (w, h) = img.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels == 0 {
        return Vec::new();
    }
    // Sample every `step`-th pixel in both directions.
    let mut step = 1u32;
    while (pixels / (u64::from(step) * u64::from(step))) > MAX_SAMPLES {
        step += 1;
    }
    let table = LinearTable::new();
    let mut sums = vec![[0.0f64; 4]; 1 << 15];
    let mut add = |r: u8, g: u8, b: u8, a: u8| {
        if a < 128 {
            return;
        }
        let cell = (usize::from(r >> 3) << 10) | (usize::from(g >> 3) << 5) | usize::from(b >> 3);
        let lab = table.lab(r, g, b);
        let s = &mut sums[cell];
        s[0] += lab.l;
        s[1] += lab.a;
        s[2] += lab.b;
        s[3] += 1.0;
    };
    match img {
        image::DynamicImage::ImageRgb8(buf) => {
            for y in (0..h).step_by(step as usize) {
                for x in (0..w).step_by(step as usize) {
                    let p = buf.get_pixel(x, y).0;
                    add(p[0], p[1], p[2], 255);
                }
            }
        }
        image::DynamicImage::ImageRgba8(buf) => {
            for y in (0..h).step_by(step as usize) {
                for x in (0..w).step_by(step as usize) {
                    let p = buf.get_pixel(x, y).0;
                    add(p[0], p[1], p[2], p[3]);
                }
            }
        }
        other => {
            for y in (0..h).step_by(step as usize) {
                for x in (0..w).step_by(step as usize) {
                    let p = other.get_pixel(x, y).0;
                    add(p[0], p[1], p[2], p[3]);
                }
            }
        }
    }
    sums.into_iter()
        .filter(|s| s[3] > 0.0)
        .map(|s| Point {
            lab: [s[0] / s[3], s[1] / s[3], s[2] / s[3]],
            weight: s[3],
        })
        .collect()
}

fn dist2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)
}

/// Weighted farthest-point start: the heaviest cell, then repeatedly the cell
/// with the largest `weight × distance²` to its nearest centre (ties: first cell).
fn initial_centres(points: &[Point], k: usize) -> Vec<[f64; 3]> {
    let mut centres = Vec::with_capacity(k);
    let Some(first) = points
        .iter()
        .enumerate()
        .max_by(|(i, a), (j, b)| a.weight.total_cmp(&b.weight).then(j.cmp(i)))
        .map(|(_, p)| p.lab)
    else {
        return centres;
    };
    centres.push(first);
    let mut nearest: Vec<f64> = points.iter().map(|p| dist2(&p.lab, &first)).collect();
    while centres.len() < k {
        let mut best: Option<(usize, f64)> = None;
        for (i, p) in points.iter().enumerate() {
            let score = p.weight * nearest[i];
            if score > best.map_or(0.0, |(_, s)| s) {
                best = Some((i, score));
            }
        }
        // Only points that sit on a centre are left.
        let Some((i, _)) = best else { break };
        let c = points[i].lab;
        centres.push(c);
        for (n, p) in nearest.iter_mut().zip(points) {
            *n = n.min(dist2(&p.lab, &c));
        }
    }
    centres
}

fn cluster(points: &[Point], k: usize) -> Vec<Swatch> {
    let total: f64 = points.iter().map(|p| p.weight).sum();
    if points.is_empty() || total <= 0.0 {
        return Vec::new();
    }
    let mut centres = initial_centres(points, k);
    let mut assignment = vec![0usize; points.len()];
    let mut weights = vec![0.0f64; centres.len()];
    for _ in 0..MAX_ITERATIONS {
        for (a, p) in assignment.iter_mut().zip(points) {
            let mut best = (0usize, f64::INFINITY);
            for (ci, c) in centres.iter().enumerate() {
                let d = dist2(&p.lab, c);
                if d < best.1 {
                    best = (ci, d);
                }
            }
            *a = best.0;
        }
        let mut sums = vec![[0.0f64; 3]; centres.len()];
        weights = vec![0.0; centres.len()];
        for (a, p) in assignment.iter().zip(points) {
            for (s, v) in sums[*a].iter_mut().zip(p.lab) {
                *s += v * p.weight;
            }
            weights[*a] += p.weight;
        }
        let mut moved = 0.0f64;
        for ((c, s), w) in centres.iter_mut().zip(&sums).zip(&weights) {
            if *w > 0.0 {
                let next = [s[0] / w, s[1] / w, s[2] / w];
                moved = moved.max(dist2(c, &next));
                *c = next;
            }
        }
        if moved < 1e-6 {
            break;
        }
    }

    // Merge near-identical clusters (heaviest first absorbs the others).
    let mut clusters: Vec<([f64; 3], f64)> = centres
        .into_iter()
        .zip(weights)
        .filter(|(_, w)| *w > 0.0)
        .collect();
    clusters.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut merged: Vec<([f64; 3], f64)> = Vec::new();
    for (c, w) in clusters {
        let lab = |v: &[f64; 3]| Lab {
            l: v[0],
            a: v[1],
            b: v[2],
        };
        match merged
            .iter_mut()
            .find(|(m, _)| delta_e76(lab(m), lab(&c)) < MERGE_DELTA_E)
        {
            Some((m, mw)) => {
                let sum = *mw + w;
                for (mv, cv) in m.iter_mut().zip(c) {
                    *mv = (*mv * *mw + cv * w) / sum;
                }
                *mw = sum;
            }
            None => merged.push((c, w)),
        }
    }

    let mut swatches: Vec<Swatch> = merged
        .into_iter()
        .map(|(c, w)| Swatch {
            hex: Lab {
                l: c[0],
                a: c[1],
                b: c[2],
            }
            .to_hex(),
            share: ((w / total) * 10_000.0).round() as f32 / 10_000.0,
        })
        .collect();
    swatches.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.hex.cmp(&b.hex)));
    swatches
}

#[cfg(test)]
mod tests {
    use image::{ImageEncoder, Rgba, RgbaImage};

    use super::*;
    use crate::colour::{Lab, delta_e2000};

    pub(crate) fn png(img: &RgbaImage) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                image::ExtendedColorType::Rgba8,
            )
            .unwrap();
        out
    }

    fn blocks(w: u32, h: u32, split: u32, a: [u8; 3], b: [u8; 3]) -> RgbaImage {
        RgbaImage::from_fn(w, h, |x, _| {
            let c = if x < split { a } else { b };
            Rgba([c[0], c[1], c[2], 255])
        })
    }

    fn close(hex: &str, want: &str) -> f64 {
        delta_e2000(Lab::from_hex(hex).unwrap(), Lab::from_hex(want).unwrap())
    }

    #[test]
    fn two_blocks_give_their_colours_and_shares() {
        let img = blocks(200, 100, 140, [0x1f, 0x3a, 0x5f], [0xd9, 0x7b, 0x4a]);
        let p = palette(&png(&img), 5).unwrap();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(close(&p[0].hex, "#1f3a5f") < 2.0, "{p:?}");
        assert!(close(&p[1].hex, "#d97b4a") < 2.0, "{p:?}");
        assert!((p[0].share - 0.7).abs() < 0.01, "{p:?}");
        assert!((p[1].share - 0.3).abs() < 0.01, "{p:?}");
    }

    #[test]
    fn large_images_are_downsampled_and_keep_shares() {
        // 1200 x 900 = 1.08 MP, sampled down to at most 64k pixels.
        let img = blocks(1200, 900, 840, [0x1f, 0x3a, 0x5f], [0xd9, 0x7b, 0x4a]);
        let p = palette(&png(&img), 4).unwrap();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!((p[0].share - 0.7).abs() < 0.01, "{p:?}");
        assert!(close(&p[0].hex, "#1f3a5f") < 2.0);
    }

    #[test]
    fn gradient_gives_k_ordered_distinct_greys_and_is_stable() {
        let img = RgbaImage::from_fn(256, 16, |x, _| {
            let v = x as u8;
            Rgba([v, v, v, 255])
        });
        let bytes = png(&img);
        let p = palette(&bytes, 4).unwrap();
        assert_eq!(p.len(), 4, "{p:?}");
        let total: f32 = p.iter().map(|s| s.share).sum();
        assert!((total - 1.0).abs() < 0.001, "{p:?}");
        for s in &p {
            let lab = Lab::from_hex(&s.hex).unwrap();
            assert!(lab.a.abs() < 2.0 && lab.b.abs() < 2.0, "not grey: {p:?}");
            assert!(s.share > 0.1, "{p:?}");
        }
        for _ in 0..3 {
            assert_eq!(palette(&bytes, 4).unwrap(), p);
        }
    }

    #[test]
    fn rainbow_is_deterministic_across_runs() {
        let img = RgbaImage::from_fn(300, 200, |x, y| {
            Rgba([
                (x % 256) as u8,
                (y * 255 / 199) as u8,
                ((x + y) % 256) as u8,
                255,
            ])
        });
        let bytes = png(&img);
        let first = palette(&bytes, 8).unwrap();
        assert!(!first.is_empty() && first.len() <= 8);
        for _ in 0..3 {
            assert_eq!(palette(&bytes, 8).unwrap(), first);
        }
    }

    #[test]
    fn one_pixel_image_is_one_swatch() {
        let img = RgbaImage::from_pixel(1, 1, Rgba([0xd9, 0x7b, 0x4a, 255]));
        let p = palette(&png(&img), 6).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].share, 1.0);
        assert!(close(&p[0].hex, "#d97b4a") < 1.0);
    }

    #[test]
    fn near_identical_colours_merge() {
        // Two blocks 1 level apart in each channel: one swatch, not two.
        let img = blocks(100, 10, 50, [100, 120, 140], [101, 121, 141]);
        let p = palette(&png(&img), 6).unwrap();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].share, 1.0);
    }

    #[test]
    fn transparent_pixels_are_ignored() {
        let img = RgbaImage::from_fn(100, 10, |x, _| {
            if x < 50 {
                Rgba([255, 0, 0, 0])
            } else {
                Rgba([0x1f, 0x3a, 0x5f, 255])
            }
        });
        let p = palette(&png(&img), 4).unwrap();
        assert_eq!(p.len(), 1);
        assert!(close(&p[0].hex, "#1f3a5f") < 1.0);
        let clear = RgbaImage::from_pixel(4, 4, Rgba([0, 0, 0, 0]));
        assert!(palette(&png(&clear), 4).unwrap().is_empty());
    }

    #[test]
    fn truncated_and_foreign_bytes_are_errors_not_panics() {
        let img = blocks(64, 64, 32, [0x1f, 0x3a, 0x5f], [0xd9, 0x7b, 0x4a]);
        let bytes = png(&img);
        for cut in [8, 20, 33, 50, bytes.len() / 2, bytes.len() - 13] {
            let err = palette(&bytes[..cut], 4).unwrap_err();
            assert!(matches!(err, ContentError::Image(_)), "{cut}: {err}");
        }
        assert!(matches!(
            palette(b"<html>not an image</html>", 4),
            Err(ContentError::Image(_))
        ));
        assert!(matches!(palette(&[], 4), Err(ContentError::Image(_))));
        assert!(matches!(palette(&bytes, 0), Err(ContentError::Invalid(_))));
    }

    #[test]
    fn jpeg_and_gif_decode() {
        let img = blocks(64, 64, 32, [0x1f, 0x3a, 0x5f], [0xd9, 0x7b, 0x4a]);
        let rgb = image::DynamicImage::ImageRgba8(img).to_rgb8();
        let mut jpg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 95)
            .write_image(rgb.as_raw(), 64, 64, image::ExtendedColorType::Rgb8)
            .unwrap();
        assert_eq!(sniff_image_type(&jpg), Some("image/jpeg"));
        let p = palette(&jpg, 4).unwrap();
        assert!(p.iter().any(|s| close(&s.hex, "#1f3a5f") < 3.0), "{p:?}");
        assert!(p.iter().any(|s| close(&s.hex, "#d97b4a") < 3.0), "{p:?}");
    }
}
