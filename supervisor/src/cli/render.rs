//! What the CLI prints: the accounts table and the QR in the terminal.

use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;
use serde_json::Value;

/// Black on white, whatever the terminal's own colours.
const BLACK_ON_WHITE: &str = "\x1b[30;47m";
const RESET: &str = "\x1b[0m";
/// The widest name shown in the table.
const NAME_WIDTH: usize = 24;
/// The widest error text shown in the table.
const ERROR_WIDTH: usize = 60;

/// How the QR is coloured.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum QrStyle {
    /// ANSI black on white: scans on a dark or a light terminal.
    Ansi,
    /// Plain characters, dark modules as blocks (for a light background, or a file).
    Plain,
    /// Plain characters, light modules as blocks (for a dark background without colours).
    Inverted,
}

/// `text` as a QR code of half-block characters (two modules a line), with the 4-module
/// quiet zone.
///
/// # Errors
/// When `text` is too long for a QR code.
pub fn qr(text: &str, style: QrStyle) -> Result<String, String> {
    let code = QrCode::new(text.as_bytes()).map_err(|e| format!("cannot encode the QR: {e}"))?;
    let mut renderer = code.render::<Dense1x2>();
    renderer.quiet_zone(true).module_dimensions(1, 1);
    if style == QrStyle::Inverted {
        renderer
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark);
    }
    let image = renderer.build();
    Ok(match style {
        QrStyle::Ansi => image
            .lines()
            .map(|line| format!("{BLACK_ON_WHITE}{line}{RESET}\n"))
            .collect(),
        QrStyle::Plain | QrStyle::Inverted => image.lines().map(|l| format!("{l}\n")).collect(),
    })
}

/// The dashboard's accounts as a table: id, name, masked phone, status, reason (and the
/// readable error when there is one).
pub fn table(dashboard: &Value) -> String {
    let empty = Vec::new();
    let accounts = dashboard["accounts"].as_array().unwrap_or(&empty);
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let mut rows: Vec<[String; 6]> = vec![[
        "ID".into(),
        "NAME".into(),
        "PHONE".into(),
        "STATUS".into(),
        "REASON".into(),
        "ERROR".into(),
    ]];
    for a in accounts {
        rows.push([
            text(&a["accountId"]),
            clip(&printable(&text(&a["name"])), NAME_WIDTH),
            text(&a["phone"]),
            text(&a["status"]),
            text(&a["reason"]),
            match &a["lastError"] {
                Value::String(s) => clip(&printable(s), ERROR_WIDTH),
                _ => String::new(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let summary = &dashboard["summary"];
    if let Some(total) = summary["total"].as_u64() {
        let mut counts: Vec<String> = summary
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, n)| *k != "total" && n.as_u64().is_some_and(|n| n > 0))
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect()
            })
            .unwrap_or_default();
        counts.sort();
        out.push_str(&format!("{total} accounts"));
        if !counts.is_empty() {
            out.push_str(&format!(": {}", counts.join(", ")));
        }
        out.push('\n');
    }
    out
}

/// `text` with control characters (a terminal's escapes among them) shown as `?`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `text` cut to `max` characters, with `…` when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use qrcode::Color;
    use serde_json::json;

    /// The module grid a plain rendering shows (quiet zone included), true for dark.
    fn modules(text: &str) -> Vec<Vec<bool>> {
        let mut grid = Vec::new();
        for line in text.lines() {
            let (mut top, mut bottom) = (Vec::new(), Vec::new());
            for c in line.chars() {
                let (t, b) = match c {
                    ' ' => (false, false),
                    '\u{2580}' => (true, false),
                    '\u{2584}' => (false, true),
                    '\u{2588}' => (true, true),
                    other => panic!("unexpected {other:?}"),
                };
                top.push(t);
                bottom.push(b);
            }
            grid.push(top);
            grid.push(bottom);
        }
        grid
    }

    #[test]
    fn the_terminal_qr_has_the_codes_modules_and_its_quiet_zone() {
        let text = "2@abc,def,ghi,jkl";
        let code = QrCode::new(text).expect("encode");
        let n = code.width();
        let colors = code.to_colors();
        let grid = modules(&qr(text, QrStyle::Plain).expect("render"));
        assert_eq!(grid[0].len(), n + 8);
        for (y, row) in grid.iter().enumerate().take(n + 8) {
            for (x, dark) in row.iter().enumerate() {
                let inside = (4..n + 4).contains(&x) && (4..n + 4).contains(&y);
                let want = inside && colors[(y - 4) * n + (x - 4)] == Color::Dark;
                assert_eq!(*dark, want, "module ({x}, {y})");
            }
        }
        let ansi = qr(text, QrStyle::Ansi).expect("ansi");
        assert!(ansi
            .lines()
            .all(|l| l.starts_with(BLACK_ON_WHITE) && l.ends_with(RESET)));
        let inverted = modules(&qr(text, QrStyle::Inverted).expect("inverted"));
        assert!(inverted[0].iter().all(|d| *d), "the quiet zone is blocks");
    }

    #[test]
    fn the_table_lists_every_account_with_its_reason() {
        let d = json!({
            "accounts": [
                {"accountId": "shop-1", "name": "Shop\u{1b}[31m", "phone": "+407****97",
                 "status": "connected", "reason": null, "lastError": null},
                {"accountId": "shop-2", "name": "Two", "phone": null,
                 "status": "failed", "reason": "crash_loop", "lastError": "worker crashed 6 times"},
            ],
            "summary": {"connected": 1, "failed": 1, "needs_qr": 0, "total": 2},
        });
        let t = table(&d);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID"), "{t}");
        assert!(
            lines[1].contains("shop-1") && lines[1].contains("+407****97"),
            "{t}"
        );
        assert!(!t.contains('\u{1b}'), "escapes are neutralised: {t}");
        assert!(lines[2].contains("crash_loop") && lines[2].contains("worker crashed"));
        assert_eq!(lines[3], "2 accounts: 1 connected, 1 failed");
    }
}
