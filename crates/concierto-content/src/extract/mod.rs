//! Extractors: pure, deterministic functions from content to features.
//!
//! | function | input | output |
//! |---|---|---|
//! | [`palette`] | encoded image bytes | dominant colours with shares (k-means in CIELAB) |
//! | [`typography`] | HTML or CSS | font families, sizes and weights |
//! | [`page`] | decoded HTML (see [`decode_html`]) | title, description, text, images, links, concepts |
//! | [`concepts`] | caption, alt texts, file name | visual concepts from a fixed vocabulary |
//! | [`trends`] | dated texts | terms and phrases rising in the latest window |
//!
//! None of them panics on any input; only [`palette`] can fail (an undecodable
//! image, or one over the decoding limits: [`MAX_DIMENSION`], [`MAX_DECODE_BYTES`]).

mod concepts;
mod css;
mod page;
mod palette;
mod select;
pub(crate) mod trends;
mod typography;

pub use concepts::{VOCABULARY, concepts};
pub use page::{PageFeatures, PageImage, decode_html, page};
pub use palette::{
    MAX_CONCURRENT_DECODES, MAX_DECODE_BYTES, MAX_DIMENSION, MAX_K, MAX_SAMPLES, palette,
    sniff_image_type,
};
pub use select::{Extractors, MAX_INSIGHTS, TECHNIQUES, insights};
pub use trends::{Trend, TrendOptions, trends, trends_with};
pub use typography::typography;
