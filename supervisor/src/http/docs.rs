//! `GET /docs`: the OpenAPI document as a page, rendered on the server from [`super::openapi`]'s
//! spec: every operation with its parameters, body and answers, then the schemas. One inline
//! style block (allowed by its hash, see [`Page`]); no script, nothing from another origin.

use std::fmt::Write as _;
use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::page::{escape, Page};

/// The page, with the rendered spec put in place of `__DOCS__`.
static DOCS_PAGE: LazyLock<Page> = LazyLock::new(|| Page::new(include_str!("docs.html")));

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// The page for `spec`.
pub fn page(spec: &Value) -> Response {
    let html = DOCS_PAGE.template().replace("__DOCS__", &render(spec));
    DOCS_PAGE.respond(StatusCode::OK, html)
}

/// The body of the page.
pub fn render(spec: &Value) -> String {
    let mut out = String::new();
    let info = &spec["info"];
    let _ = write!(
        out,
        "<h1>{} <small>{} · OpenAPI {} · <a href=\"/openapi.json\">openapi.json</a></small></h1>",
        text(&info["title"]),
        text(&info["version"]),
        text(&spec["openapi"]),
    );
    let _ = write!(out, "<p class=\"desc\">{}</p>", text(&info["description"]));
    let ops = operations(spec);
    let tags: Vec<(String, String)> = spec["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| (text(&t["name"]), text(&t["description"])))
                .collect()
        })
        .unwrap_or_default();
    out.push_str("<nav><ul>");
    for (tag, _) in &tags {
        for (method, path, _) in ops.iter().filter(|(_, _, op)| first_tag(op) == *tag) {
            let _ = write!(
                out,
                "<li><a href=\"#{}\"><span class=\"m {method}\">{}</span> {}</a></li>",
                anchor(method, path),
                method.to_ascii_uppercase(),
                escape(path),
            );
        }
    }
    out.push_str("</ul></nav>");
    for (tag, about) in &tags {
        let _ = write!(out, "<h2>{tag}</h2><p>{about}</p>");
        for (method, path, op) in ops.iter().filter(|(_, _, op)| first_tag(op) == *tag) {
            operation(&mut out, method, path, op);
        }
    }
    out.push_str("<h2 id=\"schemas\">Schemas</h2>");
    if let Some(schemas) = spec["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let _ = write!(
                out,
                "<section id=\"s-{}\"><h3>{}</h3>{}</section>",
                escape(name),
                escape(name),
                schema_html(schema)
            );
        }
    }
    if let Some(responses) = spec["components"]["responses"].as_object() {
        for (name, response) in responses {
            let _ = write!(
                out,
                "<section id=\"r-{}\"><h3>{} (response)</h3><p>{}</p>{}</section>",
                escape(name),
                escape(name),
                text(&response["description"]),
                content_html(&response["content"])
            );
        }
    }
    out
}

/// Every operation in path order: method, path, operation.
fn operations(spec: &Value) -> Vec<(&'static str, String, &Value)> {
    let mut ops = Vec::new();
    if let Some(paths) = spec["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    ops.push((method, path.clone(), op));
                }
            }
        }
    }
    ops
}

fn first_tag(op: &Value) -> String {
    text(&op["tags"][0])
}

fn anchor(method: &str, path: &str) -> String {
    let mut id = format!("op-{method}");
    for c in path.chars() {
        id.push(if c.is_ascii_alphanumeric() { c } else { '-' });
    }
    id
}

/// One operation.
fn operation(out: &mut String, method: &str, path: &str, op: &Value) {
    let _ = write!(
        out,
        "<section class=\"op\" id=\"{}\"><h3><span class=\"m {method}\">{}</span> <code>{}</code></h3>",
        anchor(method, path),
        method.to_ascii_uppercase(),
        escape(path)
    );
    let summary = text(&op["summary"]);
    let description = text(&op["description"]);
    if !summary.is_empty() {
        let _ = write!(out, "<p><b>{summary}</b></p>");
    }
    if !description.is_empty() {
        let _ = write!(out, "<p class=\"desc\">{description}</p>");
    }
    let auth = if op.get("security").is_some() {
        "admin: <code>Authorization: Bearer</code> token, Basic with the token as password, or a browser session"
    } else {
        "public"
    };
    let _ = write!(out, "<p>Access: {auth}</p>");
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str(
            "<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th><th></th></tr>",
        );
        for p in params {
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(&p["name"]),
                if p["required"] == true { " *" } else { "" },
                text(&p["in"]),
                schema_html(&p["schema"]),
                text(&p["description"]),
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = op.get("requestBody") {
        let _ = write!(
            out,
            "<h4>Request body{}</h4><p>{}</p>{}",
            if body["required"] == true {
                " (required)"
            } else {
                ""
            },
            text(&body["description"]),
            content_html(&body["content"])
        );
    }
    out.push_str("<h4>Answers</h4><table><tr><th>status</th><th>what</th></tr>");
    if let Some(responses) = op["responses"].as_object() {
        for (status, response) in responses {
            let what = match response["$ref"].as_str() {
                Some(r) => {
                    let name = r.rsplit('/').next().unwrap_or_default();
                    format!(
                        "<a href=\"#r-{}\">{}</a>: <code>{{\"success\": false, \"error\": {{\"code\", \"message\"}}}}</code>",
                        escape(name),
                        escape(name)
                    )
                }
                None => format!(
                    "{}{}",
                    text(&response["description"]),
                    content_html(&response["content"])
                ),
            };
            let _ = write!(out, "<tr><td>{}</td><td>{what}</td></tr>", escape(status));
        }
    }
    out.push_str("</table></section>");
}

/// A content map: each media type and its schema.
fn content_html(content: &Value) -> String {
    let Some(content) = content.as_object() else {
        return String::new();
    };
    let mut out = String::from("<ul class=\"content\">");
    for (media, body) in content {
        let _ = write!(
            out,
            "<li><code>{}</code>{}</li>",
            escape(media),
            match body.get("schema") {
                Some(s) => format!(": {}", schema_html(s)),
                None => String::new(),
            }
        );
    }
    out.push_str("</ul>");
    out
}

/// A schema: a link for a reference, the fields of an object, the type otherwise.
fn schema_html(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or_default();
        return format!("<a href=\"#s-{}\">{}</a>", escape(name), escape(name));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema[key].as_array() {
            let parts: Vec<String> = parts.iter().map(schema_html).collect();
            let join = if key == "allOf" { " & " } else { " | " };
            return parts.join(join);
        }
    }
    let mut out = match &schema["type"] {
        Value::String(t) => escape(t),
        Value::Array(ts) => ts.iter().map(text).collect::<Vec<_>>().join(" | "),
        _ => "any".to_owned(),
    };
    if let Some(items) = schema.get("items") {
        out = format!("{out} of {}", schema_html(items));
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", escape(&v.to_string())))
            .collect();
        let _ = write!(out, ": {}", values.join(", "));
    }
    if let Some(props) = schema["properties"].as_object() {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str("<ul>");
        for (name, prop) in props {
            let _ = write!(
                out,
                "<li><code>{}</code>{}: {}{}</li>",
                escape(name),
                if required.contains(&name.as_str()) {
                    ""
                } else {
                    "?"
                },
                schema_html(prop),
                match prop["description"].as_str() {
                    Some(d) => format!(" — {}", escape(d)),
                    None => String::new(),
                }
            );
        }
        out.push_str("</ul>");
        if schema["additionalProperties"] == false {
            out.push_str("<p class=\"note\">no other fields</p>");
        }
    }
    out
}

/// A string value escaped, anything else as JSON, null as nothing.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s),
        Value::Null => String::new(),
        other => escape(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_shows_every_operation_and_escapes_what_it_shows() {
        let spec = super::super::openapi::spec();
        let html = render(&spec);
        for (method, path, _) in operations(&spec) {
            let heading = format!(
                "<span class=\"m {method}\">{}</span> <code>{}</code>",
                method.to_ascii_uppercase(),
                escape(&path)
            );
            assert!(html.contains(&heading), "{method} {path}");
        }
        assert!(
            html.contains("id=\"s-AddAccount\""),
            "the request bodies' schemas"
        );
        assert!(html.contains("id=\"r-Error\""), "the shared error");
        assert!(!html.contains("<script"));
        let hostile = serde_json::json!({"info": {"title": "<script>x</script>"}});
        assert!(!render(&hostile).contains("<script>"));
    }
}
