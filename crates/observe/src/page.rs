//! Stand-in for lane D's status page, so that `GET /` answers on this
//! branch; lane D's `HTML` replaces it when the branches are merged.

/// The status page.
pub const HTML: &str = "<!doctype html><meta charset=utf-8><title>rustgi</title>\
<p>rustgi status: see <a href=\"/status.json\">/status.json</a> and \
<a href=\"/metrics\">/metrics</a>.</p>";
