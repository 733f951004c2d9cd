//! `GET /api/whatsapp/qr/:accountId`: an HTML page with the live QR, or the QR as JSON, PNG or
//! SVG (`?format=json|png|svg`). `&wait=N` (seconds, at most [`MAX_WAIT`]) waits for a QR the
//! worker has not shown yet, so a script can read it right after adding the account.

use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use qrcode::render::svg;
use qrcode::{Color, QrCode};
use serde_json::json;

use super::error::ApiError;
use super::page::Page;
use super::{iso, parse_id, AppState};
use crate::cache::AccountView;
use ipc_protocol::WorkerStatus;

/// The route, as the router and the auth middleware name it.
pub const ROUTE: &str = "/api/whatsapp/qr/{account_id}";
/// The page, with the account id filled in outside its script.
static QR_PAGE: LazyLock<Page> = LazyLock::new(|| Page::new(include_str!("qr.html")));

/// The longest `wait` a QR request may ask for (half the default 30 s request timeout; a lower
/// `HTTP_REQUEST_TIMEOUT_MS` lowers it to half of that).
pub const MAX_WAIT: Duration = Duration::from_secs(15);
/// Pixels per QR module in the PNG.
const PNG_SCALE: usize = 8;
/// Light modules around the code, as the QR spec asks.
const QUIET_ZONE: usize = 4;

/// `GET /api/whatsapp/qr/:accountId`.
///
/// # Errors
/// 400 for an invalid id or format, 404 for an unknown account (or no QR, for png and svg).
#[utoipa::path(get, path = "/api/whatsapp/qr/{account_id}", tag = "accounts", summary = "The account's live QR",
    params(("account_id" = String, Path, description = "The account id: [a-z0-9][a-z0-9_-]*, at most 64"),
        ("format" = Option<String>, Query, description = "html (the default), json, png or svg")),
    responses((status = 200, description = "The QR page, or the QR as JSON, PNG or SVG",
            content((String = "text/html"), (super::openapi::QrAnswer = "application/json"), (String = "image/png"), (String = "image/svg+xml"))),
        (status = 303, description = "A browser without a session goes to /login")))]
pub async fn show(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    if !state.cache.contains(&id) {
        return Err(ApiError::account_not_found(id.as_str()));
    }
    let format = format(query.as_deref());
    let wait = param(query.as_deref(), "wait")
        .map(|raw| {
            raw.parse::<u64>()
                .ok()
                .map(Duration::from_secs)
                .filter(|w| *w <= MAX_WAIT)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_wait",
                        format!("wait is whole seconds, 0 to {}", MAX_WAIT.as_secs()),
                    )
                })
        })
        .transpose()?
        .unwrap_or_default();
    match format {
        None | Some("html") => return Ok(page(id.as_str())),
        Some("json" | "png" | "svg") => {}
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_format",
                format!("format {other:?} is not one of html, json, png, svg"),
            ))
        }
    }
    let view = wait_for_qr(&state, &id, wait.min(state.hold_limit))
        .await
        .ok_or_else(|| ApiError::account_not_found(id.as_str()))?;
    let qr = view.state.qr.clone();
    match format {
        Some("json") => {
            let data_url = qr.as_deref().map(data_url).transpose()?;
            Ok(Json(json!({
                "accountId": id,
                "status": view.state.status,
                "reason": view.state.reason,
                "qr": qr,
                "qrCode": data_url,
                "expiresAt": view.state.qr_expires_at.map(iso),
            }))
            .into_response())
        }
        Some("png") => {
            let q = qr.ok_or_else(|| no_qr(id.as_str()))?;
            Ok((
                [
                    (header::CONTENT_TYPE, "image/png"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                png(&q)?,
            )
                .into_response())
        }
        Some("svg") => {
            let q = qr.ok_or_else(|| no_qr(id.as_str()))?;
            Ok((
                [
                    (header::CONTENT_TYPE, "image/svg+xml"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                svg_image(&q)?,
            )
                .into_response())
        }
        _ => Ok(page(id.as_str())),
    }
}

/// Whether a query asks for the HTML page (no `format`, or `format=html`).
pub fn is_page_query(query: Option<&str>) -> bool {
    matches!(format(query), None | Some("html"))
}

fn format(query: Option<&str>) -> Option<&str> {
    param(query, "format")
}

fn param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The account's view once it has a QR; or as it is when `within` has passed first, or when
/// it is in a status that brings no QR soon (connected, or its dial failed: reconnecting,
/// disconnected, ...). `None` once the account is gone. Woken by the cache's events, not by
/// polling.
pub async fn wait_for_qr(
    state: &AppState,
    id: &ipc_protocol::AccountId,
    within: Duration,
) -> Option<AccountView> {
    // Subscribed before the first look, so no change falls between the two.
    let mut live = state.cache.events.subscribe(None).live;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let view = state.cache.get(id)?;
        // On its way to a QR: not spawned yet (`needs_qr` without one, `stopped`), dialling.
        let on_its_way = matches!(
            view.state.status,
            WorkerStatus::NeedsQr | WorkerStatus::Connecting | WorkerStatus::Stopped
        );
        if view.state.qr.is_some() || !on_its_way || tokio::time::Instant::now() >= deadline {
            return Some(view);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            event = live.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = event {
                    return Some(view);
                }
            }
        }
    }
}

/// The QR as a PNG data URL (`data:image/png;base64,…`), as the seed's add-account gave it.
pub fn data_url(qr: &str) -> Result<String, ApiError> {
    Ok(format!(
        "data:image/png;base64,{}",
        STANDARD.encode(png(qr)?)
    ))
}

fn no_qr(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_qr",
        format!("account {id} has no QR code right now; POST /api/whatsapp/accounts/{id}/qr asks for one"),
    )
}

fn encode(qr: &str) -> Result<QrCode, ApiError> {
    QrCode::new(qr.as_bytes()).map_err(|e| ApiError::internal(format!("cannot encode the QR: {e}")))
}

/// The QR as a grayscale PNG.
fn png(qr: &str) -> Result<Vec<u8>, ApiError> {
    let code = encode(qr)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * PNG_SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
        for y in my * PNG_SCALE..(my + 1) * PNG_SCALE {
            pixels[y * side + mx * PNG_SCALE..y * side + (mx + 1) * PNG_SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    let side32 = u32::try_from(side).map_err(|_| ApiError::internal("QR too large"))?;
    let mut encoder = png::Encoder::new(&mut out, side32, side32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let fail = |e: png::EncodingError| ApiError::internal(format!("cannot write the QR png: {e}"));
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(&pixels).map_err(fail)?;
    writer.finish().map_err(fail)?;
    Ok(out)
}

fn svg_image(qr: &str) -> Result<String, ApiError> {
    Ok(encode(qr)?
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

/// The page for `id` (an [`AccountId`](ipc_protocol::AccountId): `[a-z0-9_-]` only, safe in
/// HTML as it is).
fn page(id: &str) -> Response {
    let html = QR_PAGE.template().replace("__ACCOUNT_ID__", id);
    QR_PAGE.respond(StatusCode::OK, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_html_or_no_format_is_the_page() {
        assert!(is_page_query(None));
        assert!(is_page_query(Some("")));
        assert!(is_page_query(Some("format=html")));
        assert!(is_page_query(Some("x=1&format=html")));
        assert!(!is_page_query(Some("format=json")));
        assert!(!is_page_query(Some("a=b&format=png")));
    }

    #[test]
    fn png_has_the_png_signature_and_svg_is_svg() {
        let bytes = png("2@abc,def,ghi,jkl").expect("png");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(svg_image("x").expect("svg").contains("<svg"));
    }
}
