//! What the library stores and what it is asked: items, collections, queries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ContentError;

/// What kind of content an item is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A picture (PNG, JPEG, WebP, GIF, SVG).
    Image,
    /// A web page.
    Page,
    /// A post from a feed or a social account.
    Post,
    /// A design-system component (from a component library folder).
    Component,
    /// A campaign analytics record.
    Analytics,
    /// Processed human feedback.
    Feedback,
    /// What a succeeded run made (published by the publisher service).
    Deliverable,
    /// Anything else.
    Other,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 8] = [
        Kind::Image,
        Kind::Page,
        Kind::Post,
        Kind::Component,
        Kind::Analytics,
        Kind::Feedback,
        Kind::Deliverable,
        Kind::Other,
    ];

    /// The lowercase name (`image`, `page`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Page => "page",
            Kind::Post => "post",
            Kind::Component => "component",
            Kind::Analytics => "analytics",
            Kind::Feedback => "feedback",
            Kind::Deliverable => "deliverable",
            Kind::Other => "other",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = ContentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                ContentError::Invalid(format!(
                    "unknown kind {s:?}: use one of image, page, post, component, analytics, feedback, deliverable, other"
                ))
            })
    }
}

/// One colour of a palette: `#rrggbb` and the share of the picture it covers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Swatch {
    /// `#rrggbb`, lowercase.
    pub hex: String,
    /// Fraction of the (opaque) pixels, 0..=1.
    pub share: f32,
}

/// One typeface a page or stylesheet uses.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FontUse {
    /// The family name as written (first non-generic family of its stack).
    pub family: String,
    /// The rest of the stack it was declared with, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// Sizes it is set in, as written (`16px`, `1.25rem`, `clamp(...)`), in order of appearance.
    #[serde(default)]
    pub sizes: Vec<String>,
    /// Numeric weights it is used or loaded with (400 regular, 700 bold), ascending.
    #[serde(default)]
    pub weights: Vec<u16>,
    /// How many rules, inline styles, `@font-face` blocks and font links name it.
    pub uses: u32,
}

/// A stored piece of content: what it is, where it came from, what was
/// extracted from it, and what people added to it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Content hash (SHA-256, lowercase hex): the same content always has the same id.
    pub id: String,
    /// What kind of content it is.
    pub kind: Kind,
    /// The configured source it came from (`image_database`, `siteinspire`, `upload`, ...).
    pub source: String,
    /// What identifies it within its source: a path, a URL or a post id.
    pub source_key: String,
    /// Where it can be seen, when it has an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Title (given, or extracted, or the file name).
    pub title: String,
    /// Body text (given, or extracted from a page).
    #[serde(default)]
    pub text: String,
    /// MIME type (`image/png`, `text/html`, ...), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Size of the content in bytes.
    pub size: u64,
    /// Tags, lowercase, in the order they were added.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form notes.
    #[serde(default)]
    pub notes: String,
    /// Names of the collections it belongs to.
    #[serde(default)]
    pub collections: Vec<String>,
    /// Dominant colours, largest share first (images).
    #[serde(default)]
    pub palette: Vec<Swatch>,
    /// Typefaces used (pages, stylesheets, components).
    #[serde(default)]
    pub typography: Vec<FontUse>,
    /// Visual concepts and techniques recognised in it (`brutalism`, `duotone`, ...).
    #[serde(default)]
    pub concepts: Vec<String>,
    /// When it was published at its source (ms since the Unix epoch), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_ms: Option<i64>,
    /// When the library first stored it (ms since the Unix epoch).
    pub ingested_ms: i64,
    /// When it was last changed in the library (ms since the Unix epoch).
    pub updated_ms: i64,
    /// The id of the version this one replaced at the same source key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// The id of the newer version that replaced this one (it is then out of
    /// the search index but can still be fetched by id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// When it left its source (its file was deleted, its record dropped) and
    /// no other source still has it (ms since the Unix epoch). It is then out
    /// of the search index, but kept: collections that hold it and fetches by
    /// id still work, and it comes back if its content is ingested again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_ms: Option<i64>,
}

impl Item {
    /// In the library proper: neither replaced by a newer version nor gone
    /// from its source. Only such items are indexed (browse and search).
    pub fn is_live(&self) -> bool {
        self.superseded_by.is_none() && self.removed_ms.is_none()
    }

    /// The time the library sorts and filters by: published if known, else ingested.
    pub fn time_ms(&self) -> i64 {
        self.published_ms.unwrap_or(self.ingested_ms)
    }
}

/// Content to store: what the ingest sources and uploads hand to
/// [`ContentLibrary::put`](crate::ContentLibrary::put).
///
/// Pass the raw `bytes` of an image, page or stylesheet and the library runs the
/// extractors; pass only `text` for posts, records and feedback.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    /// What kind of content it is.
    pub kind: Kind,
    /// The configured source it came from.
    pub source: String,
    /// What identifies it within its source (path, URL, post id).
    pub source_key: String,
    /// Where it can be seen.
    pub url: Option<String>,
    /// Title; when empty, a page's `<title>` or the file name is used.
    pub title: String,
    /// Body text; when empty, a page's visible text is used.
    pub text: String,
    /// MIME type, or a `Content-Type` header (its charset is honoured for pages).
    /// Images are identified by their content whatever this says.
    pub media_type: Option<String>,
    /// The raw content: image bytes (kept, and a palette extracted), HTML (page
    /// features, typography and concepts extracted) or CSS (typography).
    pub bytes: Option<Vec<u8>>,
    /// Tags to start with.
    pub tags: Vec<String>,
    /// Notes to start with.
    pub notes: String,
    /// Concepts found elsewhere (e.g. by a vision-capable executor), added to the extracted ones.
    pub concepts: Vec<String>,
    /// A palette computed elsewhere, used when no image bytes are given.
    pub palette: Vec<Swatch>,
    /// Publication time at the source (ms since the Unix epoch).
    pub published_ms: Option<i64>,
    /// Which extractors run (the source's `extractor`/`extract`; every
    /// default one unless set).
    pub extractors: crate::extract::Extractors,
}

impl NewItem {
    /// An item of `kind` from `source`, identified there by `source_key`.
    pub fn new(kind: Kind, source: impl Into<String>, source_key: impl Into<String>) -> Self {
        NewItem {
            kind,
            source: source.into(),
            source_key: source_key.into(),
            url: None,
            title: String::new(),
            text: String::new(),
            media_type: None,
            bytes: None,
            tags: Vec::new(),
            notes: String::new(),
            concepts: Vec::new(),
            palette: Vec::new(),
            published_ms: None,
            extractors: crate::extract::Extractors::default(),
        }
    }

    /// Sets which extractors run.
    pub fn extractors(mut self, extractors: crate::extract::Extractors) -> Self {
        self.extractors = extractors;
        self
    }

    /// Sets the title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Sets the body text.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = text.into();
        self
    }

    /// Sets the address.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Sets the raw content and its MIME type or `Content-Type` header.
    pub fn bytes(mut self, bytes: impl Into<Vec<u8>>, media_type: Option<&str>) -> Self {
        self.bytes = Some(bytes.into());
        self.media_type = media_type.map(str::to_string);
        self
    }

    /// Sets the initial tags.
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the initial notes.
    pub fn notes(mut self, notes: impl Into<String>) -> Self {
        self.notes = notes.into();
        self
    }

    /// Adds concepts found elsewhere.
    pub fn concepts<S: Into<String>>(mut self, concepts: impl IntoIterator<Item = S>) -> Self {
        self.concepts = concepts.into_iter().map(Into::into).collect();
        self
    }

    /// Sets a palette computed elsewhere.
    pub fn palette(mut self, palette: Vec<Swatch>) -> Self {
        self.palette = palette;
        self
    }

    /// Sets the publication time (ms since the Unix epoch).
    pub fn published_ms(mut self, ms: i64) -> Self {
        self.published_ms = Some(ms);
        self
    }
}

/// What [`ContentLibrary::put`](crate::ContentLibrary::put) did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Content the library had not seen: stored and indexed (announce it).
    New,
    /// Content the library already had: nothing new stored.
    Unchanged,
    /// New content at a source key the library knew: the new version replaces
    /// the old one in the index (announce it).
    Changed,
}

/// The stored item and what storing it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Put {
    /// The item as stored.
    pub item: Item,
    /// Whether it was new, unchanged or a changed version.
    pub outcome: Outcome,
}

/// A change to the editable fields of an item; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    /// New title (must not be blank).
    #[serde(default)]
    pub title: Option<String>,
    /// New tags (replacing the old ones).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// New notes.
    #[serde(default)]
    pub notes: Option<String>,
}

/// A named, ordered set of items (a mood board).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collection {
    /// Unique name.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Item ids, in the order they were added.
    #[serde(default)]
    pub items: Vec<String>,
    /// When it was created (ms since the Unix epoch).
    pub created_ms: i64,
    /// When it last changed (ms since the Unix epoch).
    pub updated_ms: i64,
}

/// An image (or other kept content) with its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// MIME type (`image/png`, ...).
    pub media_type: String,
    /// The bytes as they were put.
    pub bytes: Vec<u8>,
}

/// Items with a palette colour close to `hex`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColourFilter {
    /// The colour, `#rrggbb`.
    pub hex: String,
    /// Largest CIEDE2000 difference that counts as close (default 10; 2.3 is
    /// about the smallest difference people notice).
    #[serde(default = "default_delta_e")]
    pub max_delta_e: f32,
    /// Smallest share of the picture the close swatch must cover (default 0).
    #[serde(default)]
    pub min_share: f32,
}

fn default_delta_e() -> f32 {
    10.0
}

fn default_limit() -> usize {
    20
}

/// A search or browse request. Empty `text` browses, newest first; otherwise
/// items are ranked by relevance (BM25 over title, tags, text, concepts and notes).
/// Filters combine with AND.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// Words to search for (tantivy query syntax: `"exact phrase"`, `-excluded`, `title:word`).
    #[serde(default)]
    pub text: String,
    /// Only this kind.
    #[serde(default)]
    pub kind: Option<Kind>,
    /// Only this source.
    #[serde(default)]
    pub source: Option<String>,
    /// Only items in this collection.
    #[serde(default)]
    pub collection: Option<String>,
    /// Only items with every one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only items with a palette colour close to this one.
    #[serde(default)]
    pub colour: Option<ColourFilter>,
    /// Only items whose time ([`Item::time_ms`]) is at or after this.
    #[serde(default)]
    pub since_ms: Option<i64>,
    /// Only items whose time is before this.
    #[serde(default)]
    pub until_ms: Option<i64>,
    /// At most this many hits (default 20, at most 1,000).
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// Skip this many hits first (at most 100,000).
    #[serde(default)]
    pub offset: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            text: String::new(),
            kind: None,
            source: None,
            collection: None,
            tags: Vec::new(),
            colour: None,
            since_ms: None,
            until_ms: None,
            limit: default_limit(),
            offset: 0,
        }
    }
}

impl Query {
    /// Browse everything, newest first.
    pub fn browse() -> Self {
        Query::default()
    }

    /// Search for `text`.
    pub fn text(text: impl Into<String>) -> Self {
        Query {
            text: text.into(),
            ..Query::default()
        }
    }

    /// Only this kind.
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Only this source.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Only this collection.
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collection = Some(name.into());
        self
    }

    /// Only items with this tag (in addition to any others asked for).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Only items with a palette colour within `max_delta_e` (CIEDE2000) of `hex`.
    pub fn colour(mut self, hex: impl Into<String>, max_delta_e: f32) -> Self {
        self.colour = Some(ColourFilter {
            hex: hex.into(),
            max_delta_e,
            min_share: 0.0,
        });
        self
    }

    /// Only items whose time is in `since_ms..until_ms`.
    pub fn between(mut self, since_ms: Option<i64>, until_ms: Option<i64>) -> Self {
        self.since_ms = since_ms;
        self.until_ms = until_ms;
        self
    }

    /// At most `limit` hits after skipping `offset`.
    pub fn page(mut self, limit: usize, offset: usize) -> Self {
        self.limit = limit;
        self.offset = offset;
        self
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The item.
    pub item: Item,
    /// Its relevance (BM25), or `None` when browsing.
    pub score: Option<f32>,
}

/// One page of search results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// How many items match in all.
    pub total: usize,
    /// The hits of this page, best (or newest) first.
    pub hits: Vec<Hit>,
}
