//! The tracing subscriber, shared by the worker and the supervisor binaries.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber to stderr, pretty or JSON as `format` says. The filter is
/// `filter`, else `RUST_LOG`, else `info`. A second call does nothing.
pub fn init_tracing(format: &str, filter: Option<&str>) {
    let filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format.eq_ignore_ascii_case("json") {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}
