//! Web sources (`web_scraper`): the configured URL is a feed (RSS, Atom, JSON
//! Feed, read with feed-rs; each entry a `post` item) or an HTML listing page
//! (each linked page on an allowed host fetched under the same rules and
//! stored as a `page` item, decoded with its Content-Type charset).

use concierto_content::{Kind, NewItem, extract};
use concierto_core::config::ContentSource;
use url::Url;

use crate::error::IngestError;
use crate::http::{Fetched, Response, host_allowed};
use crate::ingester::{CycleReport, Ingester};
use crate::netguard::Reach;

/// What a response holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Feed,
    Html,
}

fn classify(resp: &Response) -> Body {
    let ct = resp.content_type().unwrap_or("").to_ascii_lowercase();
    if ct.contains("html") && !ct.contains("xhtml+xml") {
        return Body::Html;
    }
    if ct.contains("xml") || ct.contains("rss") || ct.contains("atom") || ct.contains("json") {
        return Body::Feed;
    }
    let head = &resp.body[..resp.body.len().min(1024)];
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    if head.contains("<html") || head.contains("<!doctype html") {
        Body::Html
    } else {
        Body::Feed
    }
}

/// The hosts `source` may fetch: its own URL's host, the source's
/// `allow_hosts` and the ingester's.
fn allow_list(ing: &Ingester, source: &ContentSource, url: &Url) -> Vec<String> {
    let mut allow: Vec<String> = url.host_str().map(str::to_string).into_iter().collect();
    allow.extend(source.allow_hosts.iter().cloned());
    allow.extend(ing.opts().allow_hosts.iter().cloned());
    allow
}

/// Which addresses `source` may reach: public ones, unless it (or the
/// ingester) allows private networks.
fn reach(ing: &Ingester, source: &ContentSource) -> Reach {
    Reach::allowing_private(source.allow_private_networks || ing.opts().allow_private_networks)
}

/// Reads a web source once.
pub(crate) async fn run(
    ing: &Ingester,
    source: &ContentSource,
    report: &mut CycleReport,
) -> Result<(), IngestError> {
    let url = Url::parse(&source.location).map_err(|e| {
        IngestError::Config(format!(
            "source {}: url {:?}: {e}",
            source.name, source.location
        ))
    })?;
    let allow = allow_list(ing, source, &url);
    let resp = match ing
        .fetcher()
        .get(&url, &allow, true, reach(ing, source))
        .await?
    {
        Fetched::NotModified => {
            tracing::debug!(source = %source.name, %url, "not modified");
            return Ok(());
        }
        Fetched::Body(resp) => resp,
    };
    match classify(&resp) {
        Body::Feed => {
            let items = feed_items(&source.name, &resp)?;
            let results = ing.store_items_of(source, items, report).await?;
            if results.iter().all(Result::is_ok) {
                ing.fetcher().remember(&url, &resp)?;
            }
        }
        Body::Html => {
            if listing(ing, source, &url, &allow, &resp, report).await? {
                ing.fetcher().remember(&url, &resp)?;
            }
        }
    }
    Ok(())
}

/// The entries of a feed as `post` items.
pub(crate) fn feed_items(source: &str, resp: &Response) -> Result<Vec<NewItem>, IngestError> {
    let feed = feed_rs::parser::Builder::new()
        .base_uri(Some(resp.url.as_str()))
        .build()
        .parse(resp.body.as_slice())
        .map_err(|e| IngestError::BadContent {
            url: resp.url.to_string(),
            message: format!("not an RSS, Atom or JSON feed: {e}"),
        })?;
    Ok(feed
        .entries
        .into_iter()
        .filter_map(|e| entry_item(source, e))
        .collect())
}

fn plain(text: &str) -> String {
    if text.contains('<') {
        extract::page(text, None).text
    } else {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

fn entry_item(source: &str, e: feed_rs::model::Entry) -> Option<NewItem> {
    let link = e
        .links
        .iter()
        .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .or(e.links.first())
        .map(|l| l.href.clone());
    let key = if e.id.trim().is_empty() {
        link.clone()?
    } else {
        e.id.clone()
    };
    let title = e.title.map(|t| plain(&t.content)).unwrap_or_default();
    let body = e
        .content
        .and_then(|c| c.body)
        .or(e.summary.map(|s| s.content))
        .unwrap_or_default();
    let mut text = plain(&body);
    let mut alts = Vec::new();
    for m in &e.media {
        if let Some(d) = &m.description {
            alts.push(plain(&d.content));
        }
        if let Some(t) = &m.title {
            alts.push(plain(&t.content));
        }
    }
    if !alts.is_empty() {
        text = format!("{text}\n{}", alts.join("\n"));
    }
    let alt_refs: Vec<&str> = alts.iter().map(String::as_str).collect();
    let concepts = extract::concepts("", &alt_refs, "");
    let tags: Vec<String> = e
        .categories
        .iter()
        .map(|c| c.label.clone().unwrap_or_else(|| c.term.clone()))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && t.chars().count() <= 100 && !t.chars().any(char::is_control))
        .take(32)
        .collect();
    let mut item = NewItem::new(Kind::Post, source, key)
        .title(if title.is_empty() {
            "(untitled)".into()
        } else {
            title
        })
        .text(text)
        .tags(tags)
        .concepts(concepts);
    if let Some(link) = link {
        item = item.url(link);
    }
    if let Some(t) = e.published.or(e.updated) {
        item = item.published_ms(t.timestamp_millis());
    }
    Some(item)
}

const ASSET_EXTENSIONS: &[&str] = &[
    ".css", ".js", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".ico", ".pdf", ".zip",
    ".xml", ".json", ".woff", ".woff2", ".mp4",
];

/// The item pages a listing links to: allowed hosts, not the listing itself,
/// not assets, in order, at most `max`.
pub(crate) fn item_links(
    listing: &Url,
    links: &[String],
    allow: &[String],
    max: usize,
) -> Vec<Url> {
    let mut out: Vec<Url> = Vec::new();
    for l in links {
        let Ok(mut u) = Url::parse(l) else { continue };
        u.set_fragment(None);
        let path = u.path().to_ascii_lowercase();
        if !host_allowed(&u, allow)
            || u.host_str() != listing.host_str()
            || u == *listing
            || u.path() == "/"
            || ASSET_EXTENSIONS.iter().any(|e| path.ends_with(e))
            || out.contains(&u)
        {
            continue;
        }
        out.push(u);
        if out.len() >= max {
            break;
        }
    }
    out
}

/// Fetches and stores the pages a listing links to. True when every page was
/// read (so the listing's validators may be remembered).
async fn listing(
    ing: &Ingester,
    source: &ContentSource,
    url: &Url,
    allow: &[String],
    resp: &Response,
    report: &mut CycleReport,
) -> Result<bool, IngestError> {
    let html = extract::decode_html(&resp.body, resp.content_type());
    let features = extract::page(&html, Some(resp.url.as_str()));
    let links = item_links(url, &features.links, allow, ing.opts().max_listing_links);
    let mut complete = true;
    let mut items = Vec::new();
    let mut fetched = Vec::new();
    for link in links {
        match ing
            .fetcher()
            .get(&link, allow, true, reach(ing, source))
            .await
        {
            Ok(Fetched::NotModified) => {}
            Ok(Fetched::Body(page)) => {
                let ct = page
                    .content_type()
                    .map(str::to_string)
                    .unwrap_or_else(|| "text/html".into());
                if !ct.to_ascii_lowercase().contains("html") {
                    tracing::debug!(source = %source.name, url = %link, content_type = %ct, "linked page is not HTML; skipped");
                    continue;
                }
                items.push(
                    NewItem::new(Kind::Page, &source.name, link.as_str())
                        .url(link.as_str())
                        .bytes(page.body.clone(), Some(&ct)),
                );
                fetched.push((link, page));
            }
            Err(e) => {
                complete = false;
                report.skipped += 1;
                tracing::warn!(source = %source.name, url = %link, error = %e, "page skipped");
            }
        }
    }
    let results = ing.store_items_of(source, items, report).await?;
    for (r, (link, page)) in results.iter().zip(&fetched) {
        if r.is_ok() {
            ing.fetcher().remember(link, page)?;
        } else {
            complete = false;
        }
    }
    Ok(complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_links_keep_to_the_listing_host_and_skip_assets() {
        let listing = Url::parse("http://a.test/sites").unwrap();
        let links: Vec<String> = [
            "http://a.test/sites",
            "http://a.test/site/1",
            "http://a.test/site/1#x",
            "http://a.test/style.css",
            "http://b.test/site/2",
            "http://a.test/",
            "http://a.test/site/3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let allow = vec!["a.test".to_string(), "b.test".to_string()];
        let got: Vec<String> = item_links(&listing, &links, &allow, 10)
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(got, vec!["http://a.test/site/1", "http://a.test/site/3"]);
        assert_eq!(item_links(&listing, &links, &allow, 1).len(), 1);
    }
}
