//! The status page a person opens at the `--metrics` address's `/`. One
//! self-contained document (inline CSS and script, no framework, nothing
//! fetched but `status.json` next to it), so that it works on a machine
//! with no way out and needs no build step: the master serves these bytes
//! as they are. It polls `status.json` every 2 s and draws the workers,
//! their threads and the history's charts from it; every value it shows
//! goes into the document as text, never as markup, because paths and
//! request ids come from clients.

/// The page, served as `text/html; charset=utf-8`.
pub const HTML: &str = include_str!("page/status.html");

#[cfg(test)]
mod tests {
    use super::HTML;

    #[test]
    fn the_page_is_whole_and_fetches_nothing_but_its_status() {
        assert!(HTML.starts_with("<!doctype html>"));
        assert!(HTML.trim_end().ends_with("</html>"));
        assert!(HTML.contains("status.json"));
        for outside in ["http://", "https://", "//cdn", "@import", "<link", "src="] {
            assert!(!HTML.contains(outside), "the page names {outside}");
        }
    }

    #[test]
    fn the_page_reads_the_history_under_the_names_it_is_written_with() {
        let mut history = crate::history::History::new();
        history.push(0, &crate::Totals::default());
        history.push(5_000, &crate::Totals::default());
        let json = history.to_json();
        for key in [
            "points",
            "from_unix_ms",
            "to_unix_ms",
            "rps",
            "by_class",
            "p50_ms",
            "p90_ms",
            "p99_ms",
        ] {
            assert!(json.contains(&format!("\"{key}\":")), "history lacks {key}");
            assert!(HTML.contains(key), "the page does not read {key}");
        }
    }

    #[test]
    fn data_never_goes_in_as_markup() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!HTML.contains(sink), "the page uses {sink}");
        }
    }
}
