//! Visual concepts and techniques from a fixed vocabulary, found in captions,
//! alt texts and file names.
//!
//! Text is lowercased and split into words at anything that is not a letter or
//! digit (file names also at camelCase humps), then matched greedily, longest
//! phrase first, so "sans-serif" is found as sans-serif and not also as serif.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

/// The vocabulary: each concept with the words and phrases that name it.
pub const VOCABULARY: &[(&str, &[&str])] = &[
    (
        "minimalism",
        &[
            "minimalism",
            "minimalist",
            "minimal",
            "minimalistic",
            "less is more",
        ],
    ),
    ("maximalism", &["maximalism", "maximalist"]),
    (
        "brutalism",
        &[
            "brutalism",
            "brutalist",
            "neo brutalism",
            "neobrutalism",
            "neubrutalism",
            "neo brutalist",
        ],
    ),
    (
        "glassmorphism",
        &[
            "glassmorphism",
            "glass morphism",
            "frosted glass",
            "glass effect",
            "backdrop blur",
        ],
    ),
    (
        "neumorphism",
        &["neumorphism", "neumorphic", "neomorphism", "soft ui"],
    ),
    ("claymorphism", &["claymorphism", "clay render", "clay 3d"]),
    ("skeuomorphism", &["skeuomorphism", "skeuomorphic"]),
    (
        "flat design",
        &["flat design", "flat ui", "flat illustration"],
    ),
    ("material design", &["material design", "material you"]),
    (
        "gradient",
        &[
            "gradient",
            "mesh gradient",
            "color gradient",
            "colour gradient",
            "gradient mesh",
        ],
    ),
    (
        "aurora",
        &["aurora", "aurora gradient", "aurora background"],
    ),
    ("duotone", &["duotone", "duo tone", "two tone"]),
    (
        "monochrome",
        &[
            "monochrome",
            "monochromatic",
            "black and white",
            "grayscale",
            "greyscale",
        ],
    ),
    ("pastel", &["pastel", "pastel colors", "pastel colours"]),
    ("neon", &["neon", "fluorescent", "dayglo"]),
    (
        "vibrant colour",
        &[
            "vibrant",
            "vibrant colors",
            "vibrant colours",
            "bold colors",
            "bold colours",
            "saturated",
        ],
    ),
    (
        "muted colour",
        &["muted", "muted colors", "muted colours", "desaturated"],
    ),
    ("earth tones", &["earth tones", "earthy", "terracotta"]),
    ("high contrast", &["high contrast"]),
    (
        "grain",
        &["grain", "grainy", "film grain", "noise texture", "noise"],
    ),
    ("texture", &["texture", "textured", "paper texture"]),
    ("halftone", &["halftone", "half tone"]),
    ("glitch", &["glitch", "glitchy", "datamosh"]),
    ("blur", &["blur", "blurred", "blurry", "gaussian blur"]),
    (
        "serif",
        &[
            "serif",
            "serif typeface",
            "serif font",
            "didone",
            "old style serif",
        ],
    ),
    (
        "sans-serif",
        &[
            "sans serif",
            "sans",
            "grotesk",
            "grotesque",
            "neo grotesque",
            "geometric sans",
        ],
    ),
    ("slab serif", &["slab serif", "slab"]),
    (
        "monospace",
        &[
            "monospace",
            "monospaced",
            "mono",
            "fixed width",
            "typewriter font",
        ],
    ),
    ("variable font", &["variable font", "variable type"]),
    (
        "kinetic typography",
        &[
            "kinetic typography",
            "kinetic type",
            "motion type",
            "animated type",
            "animated typography",
        ],
    ),
    (
        "oversized type",
        &[
            "oversized type",
            "oversized typography",
            "big type",
            "large type",
            "giant type",
            "huge type",
            "massive type",
        ],
    ),
    (
        "outline text",
        &["outline text", "outlined type", "stroke text"],
    ),
    (
        "hand lettering",
        &[
            "hand lettering",
            "lettering",
            "handwritten",
            "handwriting",
            "calligraphy",
            "script font",
        ],
    ),
    (
        "hand-drawn",
        &[
            "hand drawn",
            "handdrawn",
            "sketchy",
            "sketched",
            "pencil sketch",
            "doodle",
        ],
    ),
    (
        "line art",
        &["line art", "line drawing", "line illustration"],
    ),
    ("illustration", &["illustration", "illustrated"]),
    (
        "photography",
        &["photography", "photo", "photograph", "photographic"],
    ),
    ("collage", &["collage", "cut out", "cutout", "mixed media"]),
    (
        "papercut",
        &["papercut", "paper cut", "paper craft", "papercraft"],
    ),
    ("risograph", &["risograph", "riso", "riso print"]),
    ("isometric", &["isometric", "isometry", "axonometric"]),
    (
        "3d",
        &[
            "3d",
            "3 d",
            "three dimensional",
            "3d render",
            "cgi",
            "blender",
        ],
    ),
    (
        "pixel art",
        &["pixel art", "pixelart", "8 bit", "pixelated"],
    ),
    ("geometric", &["geometric", "geometric shapes", "geometry"]),
    (
        "organic shapes",
        &["organic shapes", "organic forms", "fluid shapes", "blob"],
    ),
    ("abstract", &["abstract", "abstraction"]),
    (
        "generative art",
        &[
            "generative art",
            "generative design",
            "creative coding",
            "procedural",
        ],
    ),
    (
        "ai-generated",
        &[
            "ai generated",
            "generative ai",
            "midjourney",
            "stable diffusion",
            "dall e",
        ],
    ),
    ("bento grid", &["bento grid", "bento", "bento layout"]),
    (
        "grid layout",
        &["grid", "grid layout", "modular grid", "grid system"],
    ),
    (
        "broken grid",
        &["broken grid", "asymmetric", "asymmetry", "asymmetrical"],
    ),
    (
        "swiss style",
        &[
            "swiss style",
            "swiss design",
            "international typographic style",
            "swiss",
        ],
    ),
    ("bauhaus", &["bauhaus"]),
    ("art deco", &["art deco", "deco"]),
    ("memphis", &["memphis", "memphis design", "memphis style"]),
    ("y2k", &["y2k"]),
    (
        "retro",
        &["retro", "vintage", "nostalgic", "nostalgia", "throwback"],
    ),
    (
        "vaporwave",
        &["vaporwave", "synthwave", "retrowave", "outrun"],
    ),
    ("cyberpunk", &["cyberpunk"]),
    (
        "dark mode",
        &["dark mode", "dark theme", "darkmode", "dark ui"],
    ),
    (
        "whitespace",
        &["whitespace", "white space", "negative space"],
    ),
    (
        "split screen",
        &["split screen", "split layout", "splitscreen"],
    ),
    (
        "full-bleed",
        &["full bleed", "fullbleed", "full screen image", "hero image"],
    ),
    (
        "overlap",
        &["overlap", "overlapping", "layered", "layering"],
    ),
    ("parallax", &["parallax", "parallax scrolling"]),
    (
        "scrollytelling",
        &[
            "scrollytelling",
            "scroll animation",
            "scroll triggered",
            "scroll driven",
        ],
    ),
    (
        "micro-interactions",
        &[
            "micro interaction",
            "micro interactions",
            "microinteraction",
            "microinteractions",
            "hover effect",
        ],
    ),
    (
        "motion design",
        &["motion design", "motion graphics", "animation", "animated"],
    ),
    ("custom cursor", &["custom cursor", "cursor effect"]),
    (
        "data visualisation",
        &[
            "data visualization",
            "data visualisation",
            "dataviz",
            "infographic",
            "chart",
        ],
    ),
    ("iconography", &["iconography", "icon set", "icons", "icon"]),
    ("character design", &["character design", "mascot"]),
    (
        "branding",
        &[
            "branding",
            "brand identity",
            "visual identity",
            "logo",
            "logotype",
        ],
    ),
    ("editorial", &["editorial", "magazine", "magazine layout"]),
    ("poster", &["poster"]),
    ("packaging", &["packaging", "package design"]),
    ("wireframe", &["wireframe", "lo fi", "low fidelity"]),
];

const MAX_PHRASE: usize = 4;

static PHRASES: LazyLock<HashMap<String, &'static str>> = LazyLock::new(|| {
    let mut m = HashMap::new();
    for (concept, names) in VOCABULARY {
        for name in names.iter().chain(std::iter::once(concept)) {
            m.entry(words(name).join(" ")).or_insert(*concept);
        }
    }
    m
});

/// Lowercase words, split at anything that is not a letter or digit.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Splits camelCase humps (`darkModeUI` → `dark Mode UI`).
fn split_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 && c.is_uppercase() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || (prev.is_uppercase() && next_lower) {
                out.push(' ');
            }
        }
        out.push(c);
    }
    out
}

fn lookup(phrase: &str) -> Option<&'static str> {
    if let Some(c) = PHRASES.get(phrase) {
        return Some(c);
    }
    // Plurals: "gradients", "grids", "collages".
    let singular = phrase.strip_suffix('s')?;
    if singular.ends_with('s') || singular.len() < 3 {
        return None;
    }
    PHRASES.get(singular).copied()
}

fn scan(ws: &[String], found: &mut BTreeSet<&'static str>) {
    let mut i = 0;
    while i < ws.len() {
        let mut matched = 0;
        for n in (1..=MAX_PHRASE.min(ws.len() - i)).rev() {
            if let Some(c) = lookup(&ws[i..i + n].join(" ")) {
                found.insert(c);
                matched = n;
                break;
            }
        }
        i += matched.max(1);
    }
}

/// The concepts named in a caption or text, alt texts and a file name, sorted
/// by name. Deterministic.
pub fn concepts(text: &str, alt_texts: &[&str], file_name: &str) -> Vec<String> {
    let mut found = BTreeSet::new();
    scan(&words(text), &mut found);
    for alt in alt_texts {
        scan(&words(alt), &mut found);
    }
    let stem = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let stem = stem.rsplit_once('.').map_or(stem, |(s, _)| s);
    scan(&words(&split_camel(stem)), &mut found);
    found.into_iter().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_is_about_sixty_concepts_or_more() {
        assert!(VOCABULARY.len() >= 60, "{}", VOCABULARY.len());
        let mut names: Vec<_> = VOCABULARY.iter().map(|(c, _)| *c).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), VOCABULARY.len(), "duplicate concept");
    }

    #[test]
    fn finds_concepts_in_text_alts_and_file_names() {
        let got = concepts(
            "A Neo-Brutalist landing page with a Bento Grid and grainy gradients.",
            &[
                "Frosted glass cards in dark mode",
                "isometric 3D illustration",
            ],
            "assets/moodboards/riso-print_duotoneHero.PNG",
        );
        assert_eq!(
            got,
            [
                "3d",
                "bento grid",
                "brutalism",
                "duotone",
                "glassmorphism",
                "grain",
                "gradient",
                "dark mode",
                "illustration",
                "isometric",
                "risograph",
            ]
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
    }

    #[test]
    fn longest_phrase_wins() {
        assert_eq!(concepts("set in a sans-serif", &[], ""), ["sans-serif"]);
        assert_eq!(concepts("a classic serif face", &[], ""), ["serif"]);
        assert_eq!(concepts("slab serif headings", &[], ""), ["slab serif"]);
        assert_eq!(concepts("hand-drawn doodles", &[], ""), ["hand-drawn"]);
    }

    #[test]
    fn nothing_in_plain_text_and_deterministic() {
        assert!(concepts("Quarterly revenue rose by four percent", &[], "report.csv").is_empty());
        assert!(concepts("", &[], "").is_empty());
        let a = concepts("Swiss grid poster, monochrome, helvetica", &[], "x");
        assert_eq!(
            a,
            concepts("Swiss grid poster, monochrome, helvetica", &[], "x")
        );
        assert_eq!(a, ["grid layout", "monochrome", "poster", "swiss style"]);
    }
}
