//! `/openapi.json` and `/docs` on the real supervisor: served to the admin only, and the real
//! answers of the routes match the schemas the spec gives them. The spec is written to
//! `target/<profile>/openapi.json` for `.ci/run`'s independent validator.

use serde_json::{json, Value};
use wa_sim::harness::process::binary;
use wa_sim::harness::{Sim, Volume};

use super::whatsapp::{pair, start};
use super::STATE_DEADLINE;

/// The schema `$ref` points at.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => spec
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {r}")),
        None => schema,
    }
}

/// Where `value` breaks `schema` (the subset of JSON Schema the spec uses).
fn violations(spec: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(spec, schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let fits = options.iter().any(|o| {
                let mut errs = Vec::new();
                violations(spec, o, value, at, &mut errs);
                errs.is_empty()
            });
            if !fits {
                out.push(format!("{at}: {value} fits none of {key}"));
            }
            return;
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types.is_empty()
        && !types
            .iter()
            .any(|t| *t == kind || (*t == "number" && kind == "integer"))
    {
        out.push(format!("{at}: {kind} where the spec says {types:?}"));
        return;
    }
    if let Some(values) = schema["enum"].as_array() {
        if !values.contains(value) {
            out.push(format!("{at}: {value} is not one of {values:?}"));
        }
    }
    if let (Some(props), Value::Object(fields)) = (schema["properties"].as_object(), value) {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !fields.contains_key(name) {
                out.push(format!("{at}: lacks required {name}"));
            }
        }
        for (name, v) in fields {
            match props.get(name) {
                Some(p) => violations(spec, p, v, &format!("{at}.{name}"), out),
                None => out.push(format!("{at}: {name} is not in the spec")),
            }
        }
    }
    if let (Some(items), Value::Array(values)) = (schema.get("items"), value) {
        for (i, v) in values.iter().enumerate() {
            violations(spec, items, v, &format!("{at}[{i}]"), out);
        }
    }
}

/// Asserts that `body`, answered with `status` by `method template`, matches the spec.
fn conforms(spec: &Value, method: &str, template: &str, status: u16, body: &Value) {
    let op = &spec["paths"][template][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {template} is not in the spec");
    let response = resolve(spec, &op["responses"][status.to_string()]);
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {template} answered {status}, which the spec does not give as JSON"
    );
    let mut errs = Vec::new();
    violations(spec, schema, body, "$", &mut errs);
    assert!(
        errs.is_empty(),
        "{method} {template} {status}: {errs:#?}\n{body}"
    );
}

#[test]
fn the_spec_and_docs_are_for_the_admin_and_the_real_answers_match_the_spec() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);

    assert_eq!(sup.call_with("GET", "/openapi.json", &[], None).status, 401);
    let r = sup.call("GET", "/openapi.json", None);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    let spec = r.json();
    assert_eq!(spec["openapi"], "3.1.0");
    // The checker itself: a field the spec lacks, a missing one and a wrong type are caught.
    let mut errs = Vec::new();
    violations(
        &spec,
        &json!({"$ref": "#/components/schemas/Accepted"}),
        &json!({"success": "yes", "action": "x", "surprise": 1}),
        "$",
        &mut errs,
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
    let out = binary("supervisor").with_file_name("openapi.json");
    std::fs::write(&out, r.body.as_slice()).expect("write target/<profile>/openapi.json");

    let docs = sup.call("GET", "/docs", None);
    assert_eq!(docs.status, 200);
    let csp = docs
        .header("content-security-policy")
        .expect("csp")
        .to_owned();
    assert!(csp.contains("script-src 'none'"), "{csp}");
    let html = docs.text();
    assert!(
        html.contains("/api/whatsapp/accounts/{account_id}/messages"),
        "{html}"
    );
    let browser = sup.call_with("GET", "/docs", &[("Accept", "text/html")], None);
    assert_eq!(
        browser.status, 303,
        "a browser without a session logs in first"
    );

    // The answers, as the routes give them.
    let check = |method: &str, path: &str, template: &str, body: Option<Value>| {
        let text = body.map(|b| b.to_string());
        let r = if text.is_some() {
            sup.call_with(
                method,
                path,
                &[
                    (
                        "Authorization",
                        &format!("Bearer {}", wa_sim::harness::process::TOKEN),
                    ),
                    ("Content-Type", "application/json"),
                ],
                text.as_deref(),
            )
        } else {
            sup.call(method, path, None)
        };
        conforms(&spec, method, template, r.status, &r.json());
        r.json()
    };
    const ACCOUNT: &str = "/api/whatsapp/accounts/{account_id}";
    pair(&sup, &sim, "desk", "15550009001");
    check("GET", "/health", "/health", None);
    check(
        "POST",
        "/api/whatsapp/add-account",
        "/api/whatsapp/add-account",
        Some(json!({"name": "Other", "accountId": "other", "phone": "+40712345678"})),
    );
    check(
        "POST",
        "/api/whatsapp/add-account",
        "/api/whatsapp/add-account",
        Some(json!({"name": "Other", "accountId": "other"})),
    );
    let _ = sup.wait_dashboard("other's worker to report", STATE_DEADLINE, |d| {
        d["accounts"]
            .as_array()
            .is_some_and(|a| a.iter().all(|x| x["pid"].is_u64()))
    });
    check(
        "GET",
        "/api/status/dashboard",
        "/api/status/dashboard",
        None,
    );
    check(
        "GET",
        "/api/status/dashboard?status=nope",
        "/api/status/dashboard",
        None,
    );
    check(
        "GET",
        "/api/whatsapp/accounts",
        "/api/whatsapp/accounts",
        None,
    );
    check(
        "GET",
        "/api/whatsapp/qr/desk?format=json",
        "/api/whatsapp/qr/{account_id}",
        None,
    );
    check(
        "GET",
        "/api/whatsapp/qr/nobody?format=json",
        "/api/whatsapp/qr/{account_id}",
        None,
    );
    check("GET", "/api/settings", "/api/settings", None);
    check("PUT", "/api/settings", "/api/settings", Some(json!({})));
    check(
        "GET",
        "/api/whatsapp/accounts/desk/webhook",
        &format!("{ACCOUNT}/webhook"),
        None,
    );
    check(
        "PUT",
        "/api/whatsapp/accounts/desk/webhook",
        &format!("{ACCOUNT}/webhook"),
        Some(json!({"url": "http://127.0.0.1:9/hook"})),
    );
    let sent = check(
        "POST",
        "/api/whatsapp/accounts/desk/messages",
        &format!("{ACCOUNT}/messages"),
        Some(json!({"to": "+15550009002", "text": "hello"})),
    );
    let id = sent["message"]["id"].as_str().expect("id").to_owned();
    check(
        "GET",
        &format!("/api/whatsapp/accounts/desk/messages/{id}"),
        &format!("{ACCOUNT}/messages/{{message_id}}"),
        None,
    );
    check(
        "GET",
        "/api/whatsapp/accounts/desk/messages?direction=out",
        &format!("{ACCOUNT}/messages"),
        None,
    );
    check(
        "POST",
        "/api/whatsapp/accounts/desk/messages",
        &format!("{ACCOUNT}/messages"),
        Some(json!({"to": "x", "text": "hello"})),
    );
    check(
        "POST",
        "/api/whatsapp/accounts/other/qr",
        &format!("{ACCOUNT}/qr"),
        None,
    );
    check(
        "POST",
        "/api/whatsapp/accounts/desk/restart",
        &format!("{ACCOUNT}/restart"),
        None,
    );
    check(
        "POST",
        "/api/whatsapp/accounts/desk/logout",
        &format!("{ACCOUNT}/logout"),
        None,
    );
    check("DELETE", "/api/whatsapp/accounts/other", ACCOUNT, None);
    check("DELETE", "/api/whatsapp/accounts/Bad!", ACCOUNT, None);
}
