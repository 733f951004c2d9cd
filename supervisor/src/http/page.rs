//! The HTML pages and their Content-Security-Policy.
//!
//! Each page is one template with inline `<script>` and `<style>` blocks. At first use the
//! SHA-256 of every block is computed and goes into the page's CSP, so the browser runs exactly
//! those blocks and nothing injected; everything else (other origins, framing, plugins, `<base>`)
//! is refused. Templates take their values through placeholders outside those blocks; scripts
//! read them from `data-` attributes, so the hashes never change.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// A page template and the policy that allows its inline blocks.
#[derive(Debug)]
pub struct Page {
    template: &'static str,
    csp: HeaderValue,
}

impl Page {
    /// Computes the policy of `template`.
    ///
    /// # Panics
    /// Never for our templates: the policy is built from base64 and fixed text, which are
    /// valid header characters.
    pub fn new(template: &'static str) -> Page {
        let csp = policy(template);
        Page {
            template,
            csp: HeaderValue::from_str(&csp).expect("a csp is ascii without control characters"),
        }
    }

    /// The template, for filling in placeholders.
    pub fn template(&self) -> &'static str {
        self.template
    }

    /// Answers `status` with `html` (this template, placeholders filled) under this policy.
    pub fn respond(&self, status: StatusCode, html: String) -> Response {
        (
            status,
            [
                (
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (CONTENT_SECURITY_POLICY, self.csp.clone()),
            ],
            html,
        )
            .into_response()
    }
}

/// The policy allowing exactly the inline scripts and styles of `html`.
fn policy(html: &str) -> String {
    let sources = |tag: &str| {
        let hashes: Vec<String> = inline_blocks(html, tag)
            .into_iter()
            .map(|block| format!("'sha256-{}'", STANDARD.encode(Sha256::digest(block))))
            .collect();
        if hashes.is_empty() {
            "'none'".to_owned()
        } else {
            hashes.join(" ")
        }
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        sources("script"),
        sources("style"),
    )
}

/// The text between every `<tag>` and the next `</tag>`.
fn inline_blocks<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut blocks = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        blocks.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    blocks
}

/// Escapes text for an HTML attribute value or element content.
pub fn escape(text: &str) -> String {
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

    const TEMPLATES: [(&str, &str); 5] = [
        ("dashboard", include_str!("dashboard.html")),
        ("qr", include_str!("qr.html")),
        ("login", include_str!("login.html")),
        ("link", include_str!("link.html")),
        ("docs", include_str!("docs.html")),
    ];

    #[test]
    fn every_inline_block_of_every_page_is_allowed_by_its_hash() {
        for (name, template) in TEMPLATES {
            let csp = policy(template);
            for tag in ["script", "style"] {
                for block in inline_blocks(template, tag) {
                    let hash = STANDARD.encode(Sha256::digest(block));
                    assert!(
                        csp.contains(&format!("'sha256-{hash}'")),
                        "{name} {tag}: {csp}"
                    );
                    assert!(
                        !block.contains("__"),
                        "{name}: a placeholder inside a {tag} block would change its hash"
                    );
                }
                // A block with attributes would be neither hashed nor allowed.
                assert!(
                    !template.contains(&format!("<{tag} ")),
                    "{name} has a <{tag}> with attributes"
                );
            }
            assert!(
                !has_event_handler_attribute(template),
                "{name}: inline event handlers are blocked by the CSP"
            );
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
        }
    }

    #[test]
    fn pages_with_scripts_allow_them_and_the_login_page_runs_none() {
        assert!(policy(include_str!("dashboard.html")).contains("script-src 'sha256-"));
        assert!(policy(include_str!("login.html")).contains("script-src 'none'"));
        let changed = include_str!("dashboard.html").replace("refresh();", "refresh(); alert(1);");
        assert_ne!(policy(&changed), policy(include_str!("dashboard.html")));
    }

    #[test]
    fn pages_that_post_a_form_send_their_origin_with_it() {
        // Every answer says `Referrer-Policy: no-referrer`, under which a browser sends
        // `Origin: null` with a form it posts, and origin.rs refuses that. A page with a form
        // keeps its referrer to this server, so its posts carry the real Origin.
        for (name, template) in TEMPLATES {
            if template.contains("method=\"post\"") {
                assert!(
                    template.contains("<meta name=\"referrer\" content=\"same-origin\">"),
                    "{name} posts a form without a same-origin referrer policy"
                );
            }
        }
    }

    /// ` onclick=`, ` onload=` and the like.
    fn has_event_handler_attribute(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let name: String = html[i + 3..]
                .chars()
                .take_while(char::is_ascii_lowercase)
                .collect();
            !name.is_empty() && html[i + 3 + name.len()..].starts_with('=')
        })
    }

    #[test]
    fn finds_each_block_between_its_tags() {
        let html = "<style>a</style><p>x</p><script>one()</script><script>two()</script><script>";
        assert_eq!(inline_blocks(html, "script"), ["one()", "two()"]);
        assert_eq!(inline_blocks(html, "style"), ["a"]);
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
