//! The dashboard: a page served by the node itself, its files built into
//! the binary (`node/assets/dashboard/`), nothing fetched from elsewhere.
//!
//! These are the only routes served without the API token: they hold no
//! data. The page asks for the token once, keeps it in the browser's
//! `localStorage` and sends it as `Authorization: Bearer …` on every call
//! (never in a URL); it follows the node over `GET /v1/events`. What each
//! panel shows: `docs/dashboard.md`.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Scripts, styles, images and connections from the node only; no inline
/// script or style, no frames, no plugins, forms post only to the node.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One built-in file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Where it is served.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

const INDEX: &str = include_str!("../assets/dashboard/index.html");

/// Every file of the dashboard, `/` (the page) first.
pub const ASSETS: [Asset; 5] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: INDEX,
    },
    Asset {
        path: "/dashboard/",
        content_type: "text/html; charset=utf-8",
        body: INDEX,
    },
    Asset {
        path: "/dashboard/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/dashboard/app.js"),
    },
    Asset {
        path: "/dashboard/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/dashboard/style.css"),
    },
    Asset {
        path: "/dashboard/icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../assets/dashboard/icon.svg"),
    },
];

/// The dashboard's routes, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        let asset = *asset;
        router.route(asset.path, get(move || async move { serve(asset) }))
    })
}

fn serve(asset: Asset) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            // The files change with the binary: ask each time.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        for asset in &ASSETS {
            for forbidden in ["http://", "https://", "//cdn", "@import", "fonts.g"] {
                // The SVG's XML namespace is a name, not a fetch.
                let body = asset.body.replace("http://www.w3.org/2000/svg", "");
                assert!(
                    !body.contains(forbidden),
                    "{} mentions {forbidden}",
                    asset.path
                );
            }
        }
        // No inline script: the CSP would refuse it.
        assert!(!INDEX.contains("<script>") && !INDEX.contains("onclick="));
        assert!(INDEX.contains(r#"<script src="/dashboard/app.js""#));
    }
}
