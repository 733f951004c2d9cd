//! A blocking Server-Sent Events reader for `/api/events`: one connection, chunked body
//! decoded as it arrives, events parsed per the SSE rules (`id:`, `event:`, `data:`, comments).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One event off the stream.
#[derive(Clone, Debug, Default)]
pub struct SseEvent {
    /// `id:`.
    pub id: Option<String>,
    /// `event:`.
    pub event: Option<String>,
    /// `data:` lines joined by newlines.
    pub data: String,
}

impl SseEvent {
    /// The data as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// An open event stream.
#[derive(Debug)]
pub struct EventStream {
    /// The response status.
    pub status: u16,
    lines: BufReader<Chunked>,
    /// Comment lines seen (heartbeats).
    pub comments: usize,
}

impl EventStream {
    /// Sends `GET path` with `headers` and reads the response head.
    ///
    /// # Errors
    /// Any I/O error, or a malformed response head.
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> io::Result<Self> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        let mut head =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        read_line_patiently(
            &mut reader,
            &mut status_line,
            Instant::now() + Duration::from_secs(10),
        )?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, status_line.clone()))?;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            read_line_patiently(
                &mut reader,
                &mut line,
                Instant::now() + Duration::from_secs(10),
            )?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("transfer-encoding")
                    && v.trim().eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                }
            }
        }
        Ok(EventStream {
            status,
            lines: BufReader::new(Chunked {
                inner: reader,
                chunked,
                left: 0,
                head: String::new(),
            }),
            comments: 0,
        })
    }

    /// The next event within `deadline`; `None` when the stream ended.
    ///
    /// # Errors
    /// Any I/O error, or the deadline passing.
    pub fn next(&mut self, deadline: Duration) -> io::Result<Option<SseEvent>> {
        let until = Instant::now() + deadline;
        let mut event = SseEvent::default();
        let mut any = false;
        loop {
            let mut line = String::new();
            let n = read_line_patiently(&mut self.lines, &mut line, until)?;
            if n == 0 {
                return Ok(None);
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if any {
                    return Ok(Some(event));
                }
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            any = true;
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => event.id = Some(value.to_owned()),
                "event" => event.event = Some(value.to_owned()),
                "data" => {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                }
                _ => {}
            }
        }
    }

    /// Reads events until one satisfies `want`, within `deadline` in all.
    ///
    /// # Panics
    /// When the stream ends, fails or the deadline passes first.
    pub fn wait_for(
        &mut self,
        what: &str,
        deadline: Duration,
        want: impl Fn(&SseEvent) -> bool,
    ) -> SseEvent {
        let until = Instant::now() + deadline;
        let mut seen = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.next(left) {
                Ok(Some(e)) if want(&e) => return e,
                Ok(Some(e)) => seen.push(format!("{:?} {}", e.event, e.data)),
                Ok(None) => panic!("stream ended before {what}; saw {seen:#?}"),
                Err(err) => panic!("no {what} ({err}); saw {seen:#?}"),
            }
        }
    }
}

/// `read_line` across read timeouts, until `until`.
fn read_line_patiently(
    r: &mut impl BufRead,
    line: &mut String,
    until: Instant,
) -> io::Result<usize> {
    let mut total = 0;
    loop {
        match r.read_line(line) {
            Ok(n) => {
                total += n;
                if n == 0 || line.ends_with('\n') {
                    return Ok(total);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() >= until {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The body of a chunked (or plain) response, as a byte stream.
#[derive(Debug)]
struct Chunked {
    inner: BufReader<TcpStream>,
    chunked: bool,
    left: usize,
    /// A chunk-size line read so far (kept across read timeouts).
    head: String,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.chunked {
            return self.inner.read(buf);
        }
        if self.left == 0 {
            // A read timeout mid-line keeps what was read in `head` for the next call.
            let n = self.inner.read_line(&mut self.head)?;
            if n == 0 && self.head.is_empty() {
                return Ok(0);
            }
            if !self.head.ends_with('\n') {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "partial chunk head",
                ));
            }
            let line = std::mem::take(&mut self.head);
            let size = line.trim();
            if size.is_empty() {
                // The CRLF that ends the previous chunk.
                return self.read(buf);
            }
            self.left = usize::from_str_radix(size.split(';').next().unwrap_or("0"), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if self.left == 0 {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..n])?;
        self.left -= n;
        Ok(n)
    }
}
