//! The extractors never panic, whatever they are given.

use std::time::Duration;

use concierto_content::extract::{
    concepts, decode_html, page, palette, sniff_image_type, trends, typography,
};
use proptest::prelude::*;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn css_like() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("{".to_string()),
            Just("}".to_string()),
            Just(";".to_string()),
            Just(":".to_string()),
            Just("\"".to_string()),
            Just("'".to_string()),
            Just("(".to_string()),
            Just(")".to_string()),
            Just("/*".to_string()),
            Just("*/".to_string()),
            Just("@font-face".to_string()),
            Just("@media x".to_string()),
            Just("@import url(".to_string()),
            Just("font-family".to_string()),
            Just("font".to_string()),
            Just("font-size".to_string()),
            Just("var(--x".to_string()),
            Just("--x".to_string()),
            Just(",".to_string()),
            Just("/".to_string()),
            Just("12px".to_string()),
            Just("<style>".to_string()),
            Just("<link href='https://fonts.googleapis.com/css2?family=".to_string()),
            Just("é".to_string()),
            "[a-zA-Z0-9 ]{0,6}",
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn typography_never_panics(s in css_like()) {
        typography(&s);
        typography(&format!("<html><head><style>{s}</style></head><body style=\"{s}\"></body></html>"));
    }

    #[test]
    fn typography_on_arbitrary_text(s in any::<String>()) {
        typography(&s);
    }

    #[test]
    fn page_and_concepts_never_panic(s in any::<String>(), base in any::<String>()) {
        let p = page(&s, Some(&base));
        concepts(&s, &[&base], &base);
        prop_assert!(p.text.len() <= 200_000);
    }

    #[test]
    fn decode_html_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), ct in any::<String>()) {
        decode_html(&bytes, Some(&ct));
        let mut with_meta = b"<meta charset=".to_vec();
        with_meta.extend_from_slice(&bytes);
        decode_html(&with_meta, None);
    }

    #[test]
    fn palette_refuses_garbage_without_panicking(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = PNG_SIGNATURE.to_vec();
        bytes.extend_from_slice(&tail);
        prop_assert!(palette(&bytes, 4).is_err());
        let _ = sniff_image_type(&tail);
        let _ = palette(&tail, 4);
    }

    #[test]
    fn trends_never_panic(texts in proptest::collection::vec((any::<i64>(), any::<String>()), 0..20), window in any::<u64>(), now in any::<i64>()) {
        let items: Vec<(i64, &str)> = texts.iter().map(|(t, s)| (*t, s.as_str())).collect();
        trends(&items, Duration::from_millis(window), now);
    }
}
