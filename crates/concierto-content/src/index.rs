//! The tantivy side: schema, documents, queries. The index is derived from the
//! store and can always be rebuilt from it.

use std::ops::Bound;
use std::path::Path;

use tantivy::collector::{Count, FilterCollector, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, Occur, QueryParser, RangeQuery, TermQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::{
    DocAddress, Index, IndexReader, Order, ReloadPolicy, Searcher, TantivyDocument, Term,
};

use crate::colour::{self, Lab, delta_e2000};
use crate::error::ContentError;
use crate::model::{Item, Query};

/// Bumped whenever the schema or what is indexed changes: an index written
/// with another version is rebuilt from the store on open.
pub(crate) const SCHEMA_VERSION: u32 = 1;
/// Largest hits page.
pub(crate) const MAX_LIMIT: usize = 1_000;
/// Deepest page start (the collector keeps offset + limit hits in memory).
pub(crate) const MAX_OFFSET: usize = 100_000;
/// Text beyond this many bytes is stored but not indexed.
const MAX_INDEXED_TEXT: usize = 100_000;
/// Longest search text, in characters.
pub const MAX_QUERY_CHARS: usize = 1_000;
/// Most words in a search text (operators `AND`, `OR`, `NOT` not counted).
pub const MAX_QUERY_TERMS: usize = 64;
/// Deepest nesting in a search text: groups `(…)`, `[…]`, `{…}` inside one
/// another, plus `NOT`s in a row (the query parser recurses on both).
pub const MAX_QUERY_DEPTH: usize = 8;
/// Most tag filters in one search.
pub const MAX_QUERY_TAGS: usize = 64;

/// Refuses search text the query parser should not see: over
/// [`MAX_QUERY_CHARS`], [`MAX_QUERY_TERMS`] or [`MAX_QUERY_DEPTH`] (deep
/// nesting overflows the parser's stack; many terms make a query costly).
/// The error names the limit.
pub(crate) fn check_text(text: &str) -> Result<(), ContentError> {
    let refuse = |what: String| {
        Err(ContentError::Invalid(format!(
            "search text {what}: simplify the search"
        )))
    };
    let chars = text.chars().count();
    if chars > MAX_QUERY_CHARS {
        return refuse(format!(
            "has {chars} characters, more than the limit of {MAX_QUERY_CHARS}"
        ));
    }
    let terms = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !matches!(*w, "AND" | "OR" | "NOT"))
        .count();
    if terms > MAX_QUERY_TERMS {
        return refuse(format!(
            "has {terms} words, more than the limit of {MAX_QUERY_TERMS}"
        ));
    }
    let depth = nesting(text);
    if depth > MAX_QUERY_DEPTH {
        return refuse(format!(
            "nests groups or NOTs {depth} deep, more than the limit of {MAX_QUERY_DEPTH}"
        ));
    }
    Ok(())
}

/// How deep the query parser would recurse: open groups (`(`, `[`, `{`, also
/// inside quotes, to be safe) plus the `NOT`s in a row before each leaf.
fn nesting(text: &str) -> usize {
    // Per open group, the NOTs in a row before it; then those since.
    let mut outer: Vec<usize> = Vec::new();
    let mut nots = 0usize;
    let mut deepest = 0usize;
    let mut word = String::new();
    fn end_word(word: &mut String, nots: &mut usize) {
        if word.is_empty() {
            return;
        }
        if word == "NOT" {
            *nots += 1;
        } else {
            *nots = 0;
        }
        word.clear();
    }
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => {
                end_word(&mut word, &mut nots);
                outer.push(nots);
                nots = 0;
            }
            ')' | ']' | '}' => {
                end_word(&mut word, &mut nots);
                outer.pop();
                nots = 0;
            }
            c if c.is_whitespace() => end_word(&mut word, &mut nots),
            c => word.push(c),
        }
        let level = outer.len() + outer.iter().sum::<usize>() + nots;
        deepest = deepest.max(level);
    }
    end_word(&mut word, &mut nots);
    deepest.max(outer.len() + outer.iter().sum::<usize>() + nots)
}

#[derive(Clone, Copy)]
pub(crate) struct Fields {
    pub id: Field,
    title: Field,
    tags_text: Field,
    text: Field,
    concepts: Field,
    notes: Field,
    kind: Field,
    source: Field,
    collection: Field,
    tag: Field,
    time: Field,
    palette: Field,
}

pub(crate) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let stemmed = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("en_stem")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        title: b.add_text_field("title", stemmed.clone()),
        tags_text: b.add_text_field("tags", stemmed.clone()),
        text: b.add_text_field("text", stemmed.clone()),
        concepts: b.add_text_field("concepts", stemmed.clone()),
        notes: b.add_text_field("notes", stemmed),
        kind: b.add_text_field("kind", STRING),
        source: b.add_text_field("source", STRING),
        collection: b.add_text_field("collection", STRING),
        tag: b.add_text_field("tag", STRING),
        time: b.add_i64_field("time", INDEXED | FAST),
        palette: b.add_u64_field("palette", FAST),
    };
    (b.build(), fields)
}

/// Opens the index in `dir` (creating it), or in memory when `dir` is `None`.
/// An index that cannot be opened with this schema is wiped and recreated
/// (the caller then rebuilds it from the store).
pub(crate) fn open(dir: Option<&Path>, schema: Schema) -> Result<Index, ContentError> {
    let Some(dir) = dir else {
        return Ok(Index::create_in_ram(schema));
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| ContentError::Index(format!("creating {}: {e}", dir.display())))?;
    let attempt = MmapDirectory::open(dir)
        .map_err(ContentError::from)
        .and_then(|d| Index::open_or_create(d, schema.clone()).map_err(ContentError::from));
    match attempt {
        Ok(index) => Ok(index),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "content index unreadable; recreating it from the store");
            std::fs::remove_dir_all(dir)
                .and_then(|_| std::fs::create_dir_all(dir))
                .map_err(|e| ContentError::Index(format!("recreating {}: {e}", dir.display())))?;
            let d = MmapDirectory::open(dir)?;
            Ok(Index::create(d, schema, tantivy::IndexSettings::default())?)
        }
    }
}

pub(crate) fn reader(index: &Index) -> Result<IndexReader, ContentError> {
    Ok(index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?)
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The search document of an item.
pub(crate) fn document(f: &Fields, item: &Item) -> TantivyDocument {
    let mut d = TantivyDocument::default();
    d.add_text(f.id, &item.id);
    d.add_text(f.title, &item.title);
    for t in &item.tags {
        d.add_text(f.tags_text, t);
        d.add_text(f.tag, t);
    }
    d.add_text(f.text, cut(&item.text, MAX_INDEXED_TEXT));
    for c in &item.concepts {
        d.add_text(f.concepts, c);
    }
    // Typefaces are searchable as concepts ("Inter", "Playfair Display").
    for font in &item.typography {
        d.add_text(f.concepts, &font.family);
    }
    d.add_text(f.notes, &item.notes);
    d.add_text(f.kind, item.kind.as_str());
    d.add_text(f.source, &item.source);
    for c in &item.collections {
        d.add_text(f.collection, c);
    }
    d.add_i64(f.time, item.time_ms());
    for s in &item.palette {
        if let Ok(lab) = Lab::from_hex(&s.hex) {
            d.add_u64(f.palette, colour::pack(lab, s.share));
        }
    }
    d
}

pub(crate) fn id_term(f: &Fields, id: &str) -> Term {
    Term::from_field_text(f.id, id)
}

fn filter(q: Box<dyn tantivy::query::Query>) -> (Occur, Box<dyn tantivy::query::Query>) {
    (Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0)))
}

fn term(field: Field, value: &str) -> Box<dyn tantivy::query::Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, value),
        IndexRecordOption::Basic,
    ))
}

/// Ids (with scores when ranked) of one page of hits, and the total.
pub(crate) fn search(
    index: &Index,
    searcher: &Searcher,
    f: &Fields,
    q: &Query,
) -> Result<(ScoredIds, usize), ContentError> {
    let mut clauses: Vec<(Occur, Box<dyn tantivy::query::Query>)> = Vec::new();
    let text = q.text.trim();
    if !text.is_empty() {
        let mut parser = QueryParser::for_index(
            index,
            vec![f.title, f.tags_text, f.text, f.concepts, f.notes],
        );
        parser.set_field_boost(f.title, 3.0);
        parser.set_field_boost(f.tags_text, 2.0);
        parser.set_conjunction_by_default();
        let (parsed, _errors) = parser.parse_query_lenient(text);
        clauses.push((Occur::Must, parsed));
    }
    if let Some(kind) = q.kind {
        clauses.push(filter(term(f.kind, kind.as_str())));
    }
    if let Some(source) = &q.source {
        clauses.push(filter(term(f.source, source)));
    }
    if let Some(c) = &q.collection {
        clauses.push(filter(term(f.collection, c)));
    }
    for t in &q.tags {
        clauses.push(filter(term(f.tag, &crate::library::normalise_tag(t))));
    }
    if q.since_ms.is_some() || q.until_ms.is_some() {
        let lower = q.since_ms.map_or(Bound::Unbounded, |v| {
            Bound::Included(Term::from_field_i64(f.time, v))
        });
        let upper = q.until_ms.map_or(Bound::Unbounded, |v| {
            Bound::Excluded(Term::from_field_i64(f.time, v))
        });
        clauses.push(filter(Box::new(RangeQuery::new(lower, upper))));
    }
    let query: Box<dyn tantivy::query::Query> = if clauses.is_empty() {
        Box::new(AllQuery)
    } else {
        Box::new(BooleanQuery::new(clauses))
    };

    let limit = q.limit.min(MAX_LIMIT);
    let ranked = !text.is_empty();
    match &q.colour {
        None => collect(searcher, &*query, limit, q.offset, ranked),
        Some(cf) => {
            let target = Lab::from_hex(&cf.hex)?;
            let max = f64::from(cf.max_delta_e.max(0.0));
            let min_share = cf.min_share;
            let predicate = move |v: u64| {
                let (lab, share) = colour::unpack(v);
                share + 1e-4 >= min_share && delta_e2000(lab, target) < max
            };
            collect_filtered(searcher, &*query, limit, q.offset, ranked, predicate)
        }
    }
    .map(|(docs, total)| (ids(searcher, f, docs), total))
}

type Hits = Vec<(Option<f32>, DocAddress)>;
/// Item ids with their scores (`None` when browsing).
type ScoredIds = Vec<(String, Option<f32>)>;

fn collect(
    searcher: &Searcher,
    query: &dyn tantivy::query::Query,
    limit: usize,
    offset: usize,
    ranked: bool,
) -> Result<(Hits, usize), ContentError> {
    if limit == 0 {
        return Ok((Vec::new(), searcher.search(query, &Count)?));
    }
    let top = TopDocs::with_limit(limit).and_offset(offset);
    if ranked {
        let (docs, total) = searcher.search(query, &(top.order_by_score(), Count))?;
        Ok((docs.into_iter().map(|(s, d)| (Some(s), d)).collect(), total))
    } else {
        let (docs, total) = searcher.search(
            query,
            &(top.order_by_fast_field::<i64>("time", Order::Desc), Count),
        )?;
        Ok((docs.into_iter().map(|(_, d)| (None, d)).collect(), total))
    }
}

fn collect_filtered<P>(
    searcher: &Searcher,
    query: &dyn tantivy::query::Query,
    limit: usize,
    offset: usize,
    ranked: bool,
    predicate: P,
) -> Result<(Hits, usize), ContentError>
where
    P: Fn(u64) -> bool + Send + Sync + Clone + 'static,
{
    let field = || "palette".to_string();
    if limit == 0 {
        let c = FilterCollector::new(field(), predicate, Count);
        return Ok((Vec::new(), searcher.search(query, &c)?));
    }
    let top = TopDocs::with_limit(limit).and_offset(offset);
    if ranked {
        let c = FilterCollector::new(field(), predicate, (top.order_by_score(), Count));
        let (docs, total) = searcher.search(query, &c)?;
        Ok((docs.into_iter().map(|(s, d)| (Some(s), d)).collect(), total))
    } else {
        let c = FilterCollector::new(
            field(),
            predicate,
            (top.order_by_fast_field::<i64>("time", Order::Desc), Count),
        );
        let (docs, total) = searcher.search(query, &c)?;
        Ok((docs.into_iter().map(|(_, d)| (None, d)).collect(), total))
    }
}

fn ids(searcher: &Searcher, f: &Fields, docs: Hits) -> ScoredIds {
    docs.into_iter()
        .filter_map(|(score, addr)| {
            let doc: TantivyDocument = match searcher.doc(addr) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "content index: cannot read a hit");
                    return None;
                }
            };
            let id = doc.get_first(f.id).and_then(|v| v.as_str())?.to_string();
            Some((id, score))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_groups_and_nots_in_a_row() {
        assert_eq!(nesting("riso print"), 0);
        assert_eq!(nesting("(riso OR print) -zine"), 1);
        assert_eq!(nesting("title:(a (b [c TO d]))"), 3);
        assert_eq!(nesting("NOT NOT NOT a"), 3);
        assert_eq!(nesting("NOT a NOT b NOT c"), 1);
        assert_eq!(nesting("NOT (NOT (a))"), 4);
        assert_eq!(nesting(")))((("), 3);
        assert_eq!(nesting(&"(".repeat(1000)), 1000);
    }

    #[test]
    fn search_text_over_a_limit_is_refused_naming_it() {
        assert!(check_text("riso print -zine \"two colours\" title:(poster OR flyer)").is_ok());
        let cases = [
            ("(".repeat(1000), "1000 deep"),
            ("(".repeat(9) + "a", "limit of 8"),
            ("NOT ".repeat(9) + "a", "limit of 8"),
            ("a ".repeat(65), "limit of 64"),
            ("a,".repeat(65), "limit of 64"),
            ("x".repeat(1001), "limit of 1000"),
        ];
        for (text, needle) in cases {
            let e = check_text(&text).expect_err(&text);
            assert!(matches!(e, ContentError::Invalid(_)), "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        assert!(check_text(&"(".repeat(8)).is_ok(), "at the limit is fine");
        assert!(
            check_text(&"é".repeat(1000)).is_ok(),
            "characters, not bytes"
        );
    }
}
