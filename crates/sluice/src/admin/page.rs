//! The stats page served at `GET /`: plain HTML and a little JS compiled into the binary
//! (no CDN, no external assets). It reads `/api/backends` and posts state changes; all
//! logic on the server side lives in `api`. The page itself is `stats.html` beside this file.

/// The whole page.
pub(crate) const HTML: &str = include_str!("stats.html");

#[cfg(test)]
mod tests {
    #[test]
    fn page_is_self_contained() {
        assert!(super::HTML.contains("/api/backends"));
        assert!(!super::HTML.contains("http://"), "no external resources");
        assert!(!super::HTML.contains("https://"), "no external resources");
    }
}
