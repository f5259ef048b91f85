//! The UI's pages: one HTML shell per kind of page, filled in the browser by `app.js` from the
//! JSON API, and the embedded assets (no CDN: the UI works offline).

use axum::response::Html;

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The shell of a page of kind `kind` (`jobs`, `job`, `batch`, `dashboard`) titled `title`,
/// for a UI whose addresses start with `base` (empty at the root).
pub fn page(kind: &str, title: &str, base: &str) -> Html<String> {
    let base = escape_html(base);
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} - Spate</title><link rel=\"stylesheet\" href=\"{base}/assets/app.css\">\
         </head><body data-page=\"{}\" data-base=\"{base}\"><header>\
         <a href=\"{base}/\" class=\"brand\">Spate</a>\
         <span id=\"live\" title=\"updates while the job runs\"></span></header>\
         <main id=\"main\"></main><script src=\"{base}/assets/app.js\"></script></body></html>\n",
        escape_html(title),
        escape_html(kind)
    ))
}

/// An embedded asset's content type and text.
pub fn asset(file: &str) -> Option<(&'static str, &'static str)> {
    match file {
        "app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "app.css" => Some(("text/css; charset=utf-8", APP_CSS)),
        _ => None,
    }
}

/// Text safe inside HTML text and attribute values (names come from the address and from
/// tenants' pipeline files).
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_from_the_address_cannot_inject_markup() {
        let Html(page) = page("job", "<script>alert('x')</script>", "");
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)"));
    }
}
