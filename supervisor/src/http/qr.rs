//! `GET /api/whatsapp/qr/:accountId`: an HTML page with the live QR, or the QR as JSON, PNG or
//! SVG (`?format=json|png|svg`).

use std::sync::LazyLock;

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

/// The route, as the router and the auth middleware name it.
pub const ROUTE: &str = "/api/whatsapp/qr/{account_id}";
/// The page, with the account id filled in outside its script.
static QR_PAGE: LazyLock<Page> = LazyLock::new(|| Page::new(include_str!("qr.html")));

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
    let view = state
        .cache
        .get(&id)
        .ok_or_else(|| ApiError::account_not_found(id.as_str()))?;
    let format = format(query.as_deref());
    let qr = view.state.qr.clone();
    match format {
        None | Some("html") => Ok(page(id.as_str())),
        Some("json") => {
            let data_url = match &qr {
                Some(q) => Some(format!(
                    "data:image/png;base64,{}",
                    STANDARD.encode(png(q)?)
                )),
                None => None,
            };
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
        Some(other) => Err(ApiError::bad_request(
            "invalid_format",
            format!("format {other:?} is not one of html, json, png, svg"),
        )),
    }
}

/// Whether a query asks for the HTML page (no `format`, or `format=html`).
pub fn is_page_query(query: Option<&str>) -> bool {
    matches!(format(query), None | Some("html"))
}

fn format(query: Option<&str>) -> Option<&str> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "format")
        .map(|(_, v)| v)
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
