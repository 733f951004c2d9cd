//! The only file that touches tokio-tungstenite: dialling WhatsApp's WebSocket.

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) use tokio_tungstenite::tungstenite::Error as WsError;
pub(crate) use tokio_tungstenite::tungstenite::Message;

/// An open WebSocket to WhatsApp (or the simulator).
pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// WhatsApp frames carry a 3-byte length, so no message exceeds 2^24 bytes (wa-protocol.md §1.1).
const MAX_MESSAGE_LEN: usize = 1 << 24;
/// Small buffers: hundreds of workers run side by side, and idle sockets move few bytes.
const READ_BUFFER_LEN: usize = 8 * 1024;

/// Opens the WebSocket at `url` with the Origin header WhatsApp Web sends.
///
/// TLS uses rustls with the webpki roots compiled in; `ws://` URLs (the simulator) go plain.
///
/// # Errors
/// Any error from the URL, the TCP connect, TLS or the WebSocket upgrade.
pub(crate) async fn dial(url: &str) -> Result<WsStream, WsError> {
    let mut request = url.into_client_request()?;
    let headers = request.headers_mut();
    headers.insert(
        "Origin",
        HeaderValue::from_static("https://web.whatsapp.com"),
    );
    headers.insert("Cache-Control", HeaderValue::from_static("no-cache"));
    headers.insert("Pragma", HeaderValue::from_static("no-cache"));
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_LEN)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE_LEN))
        .max_frame_size(Some(MAX_MESSAGE_LEN));
    let (stream, _response) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    Ok(stream)
}
