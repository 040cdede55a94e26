//! The stats page served at `GET /`, with its style at `/stats.css` and script at
//! `/stats.js` (files beside this one, compiled into the binary; no CDN, nothing inline, so
//! the CSP allows only `'self'`). It reads `/stats.json` and posts state changes; all
//! logic on the server side lives in `api`.

/// The page.
pub(crate) const HTML: &str = include_str!("stats.html");
/// Its style sheet.
pub(crate) const CSS: &str = include_str!("stats.css");
/// Its script.
pub(crate) const JS: &str = include_str!("stats.js");

#[cfg(test)]
mod tests {
    #[test]
    fn page_is_self_contained() {
        assert!(super::JS.contains("/api/backends"));
        assert!(super::JS.contains("/stats.json"));
        for text in [super::HTML, super::CSS, super::JS] {
            assert!(!text.contains("http://"), "no external resources");
            assert!(!text.contains("https://"), "no external resources");
        }
        // Nothing inline: the CSP allows scripts and styles from the endpoint only.
        for inline in ["<script>", "<style>", "style=", " on"] {
            assert!(
                !super::HTML.contains(inline),
                "inline {inline:?} in the page"
            );
        }
    }
}
