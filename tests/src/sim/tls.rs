//! `wss://` for the simulator: a certificate chain made at start and rustls over the same
//! non-blocking socket the plain WebSocket uses.
//!
//! 1. [`TlsIdentity::generate`] makes a self-signed CA (named afresh at every start) and a leaf
//!    it signs for `localhost`, `127.0.0.1` and `::1` (rcgen, ECDSA P-256); only the CA
//!    certificate leaves the process (as PEM, for clients to trust), the keys never do.
//! 2. [`TlsStream::accept`] runs the server handshake on an accepted socket; the caller bounds it
//!    with a deadline. [`TlsStream::connect`] is the client's side, for the simulator's tests.
//! 3. Afterwards the stream is `std::io::Read + Write` for tungstenite, like the plain socket:
//!    every socket call is a `try_` call, and a `WouldBlock` reaches tungstenite, which keeps
//!    its own buffers; [`TlsStream::ready`] then waits for the readiness that unblocks it.
//!
//! The records rustls queues (handshake flights, session tickets, alerts, key updates) are
//! handed to the socket before anything new is written and whenever a read finds no
//! plaintext, and [`TlsStream::ready`] also waits for writability while some are queued: a
//! peer that waits for them before it sends anything cannot stall the connection.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::ws::NonBlocking;

/// The DNS name the leaf certificate is for (besides the loopback addresses).
pub const SERVER_NAME: &str = "localhost";

/// Why the certificate chain or the TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// rcgen refused the parameters or could not sign.
    #[error("cannot generate the test certificate chain: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the chain or the key.
    #[error("cannot configure TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// The simulator's certificate chain and the rustls server configuration serving it.
#[derive(Clone)]
pub struct TlsIdentity {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Step 1: a fresh CA and a leaf for `localhost`, `127.0.0.1` and `::1` signed by it.
    ///
    /// # Errors
    /// [`TlsSetupError`] when rcgen or rustls refuses (neither happens with these fixed
    /// parameters).
    pub fn generate() -> Result<Self, TlsSetupError> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        // A name of its own: a client holding an older run's CA sees an unknown issuer, not a
        // bad signature under a namesake.
        let name = format!("wa-sim test CA {:016x}", rand::random::<u64>());
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let leaf_key = KeyPair::generate()?;
        let mut leaf = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        leaf.subject_alt_names.extend([
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]);
        leaf.distinguished_name
            .push(DnType::CommonName, "wa-sim server");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.use_authority_key_identifier_extension = true;
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf_cert.der().clone(), ca_cert.der().clone()], key)?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            server: Arc::new(server),
        })
    }

    /// The CA certificate, PEM: what a client must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A client configuration trusting this CA only (for the simulator's own tests).
    ///
    /// # Errors
    /// [`TlsSetupError::Config`] when rustls refuses the CA (it does not).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        Ok(Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ))
    }

    /// The server configuration.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }
}

/// rustls' ring provider, named rather than taken from the process default.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS over a non-blocking socket, either side.
#[derive(Debug)]
pub struct TlsStream {
    conn: Connection,
    sock: NonBlocking,
}

impl TlsStream {
    /// Step 2, server side: the handshake on an accepted socket. Runs until the client's
    /// Finished; never blocks the runtime (the caller bounds it with a deadline).
    ///
    /// # Errors
    /// The socket failed or closed, or the handshake failed (an alert went out when rustls
    /// had one to send: a client that does not trust the certificate sends its own).
    pub(crate) async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut stream = Self {
            conn: conn.into(),
            sock: NonBlocking::new(tcp),
        };
        stream.handshake().await?;
        Ok(stream)
    }

    /// Step 2, client side: the handshake with the server at `tcp`, which must present a
    /// certificate for `server_name` that `config` trusts.
    ///
    /// # Errors
    /// As [`TlsStream::accept`]; a name that cannot be a server name is `InvalidInput`.
    pub(crate) async fn connect(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> io::Result<Self> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut stream = Self {
            conn: conn.into(),
            sock: NonBlocking::new(tcp),
        };
        stream.handshake().await?;
        Ok(stream)
    }

    async fn handshake(&mut self) -> io::Result<()> {
        loop {
            match self.push() {
                Ok(()) => {}
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
            if !self.conn.is_handshaking() {
                // What the last step queued (the client's Finished, the server's tickets)
                // goes out with the next read or write.
                return Ok(());
            }
            match self.pull() {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed the connection during the TLS handshake",
                    ))
                }
                Ok(_) => {}
                Err(e) if would_block(&e) => self.ready().await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the socket can take what is queued, or has something to read.
    pub(crate) async fn ready(&self) -> io::Result<()> {
        let mut interest = self.sock.blocked_on();
        if self.conn.wants_write() {
            interest |= Interest::WRITABLE;
        }
        self.sock.ready_for(interest).await
    }

    /// Queues a `close_notify` alert and hands it to the socket if it can take it now.
    pub(crate) fn close_notify(&mut self) {
        self.conn.send_close_notify();
        let _ = self.push();
    }

    /// Hands rustls' queued records to the socket until none is left; `WouldBlock` when the
    /// socket is full first.
    fn push(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.sock)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Reads what the socket holds into rustls and processes it; `Ok(0)` at end of stream.
    fn pull(&mut self) -> io::Result<usize> {
        let read = self.conn.read_tls(&mut self.sock)?;
        if let Err(e) = self.conn.process_new_packets() {
            // The alert describing the failure, if rustls queued one: a last try.
            let _ = self.push();
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(read)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // Plaintext already decrypted; `Ok(0)` after a close_notify, `UnexpectedEof` after
            // a bare end of stream, `WouldBlock` while there is none yet.
            match self.conn.reader().read(buf) {
                Err(e) if would_block(&e) => {}
                done => return done,
            }
            match self.push() {
                Ok(()) => {}
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
            self.pull()?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // rustls' buffer stays small: nothing new is taken while older records wait.
        self.push()?;
        let taken = self.conn.writer().write(buf)?;
        // What was taken counts even if the socket is full now; a broken socket shows at the
        // next call.
        let _ = self.push();
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push()
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_is_a_ca_and_a_loopback_leaf_it_signed() {
        let identity = TlsIdentity::generate().expect("generates");
        let pem = identity.ca_pem();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert_eq!(pem.matches("BEGIN").count(), 1, "the CA certificate only");
        assert!(!pem.contains("PRIVATE KEY"));
        let other = TlsIdentity::generate().expect("generates");
        assert_ne!(other.ca_pem(), pem, "a fresh CA at every start");
    }

    /// Both sides over a loopback socket pair: the leaf verifies for every name it names and
    /// for no other, and bytes pass both ways, through `Read`/`Write` with `WouldBlock`.
    #[tokio::test]
    async fn a_client_trusting_the_ca_talks_to_the_server_by_name_and_by_address() {
        let identity = TlsIdentity::generate().expect("generates");
        for (bind, name, good) in [
            ("127.0.0.1:0", "localhost", true),
            ("127.0.0.1:0", "127.0.0.1", true),
            ("[::1]:0", "::1", true),
            ("127.0.0.1:0", "example.com", false),
        ] {
            let Ok(listener) = tokio::net::TcpListener::bind(bind).await else {
                continue; // no IPv6 loopback on this machine
            };
            let addr = listener.local_addr().expect("addr");
            let server_config = identity.server_config();
            let server = tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.expect("accept");
                let mut tls = TlsStream::accept(tcp, server_config).await?;
                let mut got = Vec::new();
                read_exact(&mut tls, &mut got, 5).await?;
                write_all(&mut tls, b"pong!").await?;
                Ok::<_, io::Error>(got)
            });
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let client =
                TlsStream::connect(tcp, identity.client_config().expect("client config"), name)
                    .await;
            if !good {
                let e = client.expect_err("a name the leaf does not carry");
                assert!(e.to_string().contains("certificate"), "{e}");
                assert!(server.await.expect("task").is_err());
                continue;
            }
            let mut client = client.unwrap_or_else(|e| panic!("{name}: {e}"));
            write_all(&mut client, b"ping!").await.expect("write");
            let mut answer = Vec::new();
            read_exact(&mut client, &mut answer, 5).await.expect("read");
            assert_eq!(answer, b"pong!");
            assert_eq!(server.await.expect("task").expect("server"), b"ping!");
        }
    }

    /// Megabytes each way at once: writes meet a full socket (`WouldBlock`) and go on once the
    /// peer reads, with nothing lost, reordered or stalled.
    #[tokio::test]
    async fn bulk_both_ways_survives_full_sockets() {
        const LEN: usize = 4 << 20;
        let pattern = |seed: u8| -> Vec<u8> {
            (0..LEN)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect()
        };
        let identity = TlsIdentity::generate().expect("generates");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server_config = identity.server_config();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let tls = TlsStream::accept(tcp, server_config).await?;
            exchange(tls, pattern(1)).await
        });
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let client = TlsStream::connect(
            tcp,
            identity.client_config().expect("client config"),
            SERVER_NAME,
        )
        .await
        .expect("handshake");
        let deadline = std::time::Duration::from_secs(60);
        let got_by_client = tokio::time::timeout(deadline, exchange(client, pattern(2)))
            .await
            .expect("in time")
            .expect("client side");
        let got_by_server = tokio::time::timeout(deadline, server)
            .await
            .expect("in time")
            .expect("task")
            .expect("server side");
        assert!(
            got_by_client == pattern(1),
            "the server's bytes arrive intact"
        );
        assert!(
            got_by_server == pattern(2),
            "the client's bytes arrive intact"
        );
    }

    /// Writes `out` while reading as many bytes from the peer, on one task, as the WebSocket
    /// does: whichever way the stream would block, wait for its readiness and go on.
    async fn exchange(mut tls: TlsStream, out: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut sent = 0;
        let mut got = Vec::with_capacity(out.len());
        let mut buf = vec![0u8; 16 * 1024];
        while sent < out.len() || got.len() < out.len() {
            let mut progress = false;
            if sent < out.len() {
                match tls.write(&out[sent..(sent + 100_000).min(out.len())]) {
                    Ok(n) => {
                        sent += n;
                        progress = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => return Err(e),
                }
            } else {
                match tls.flush() {
                    Ok(()) => {}
                    Err(e) if would_block(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            if got.len() < out.len() {
                match tls.read(&mut buf) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => {
                        got.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            if !progress {
                tls.ready().await?;
            }
        }
        write_all(&mut tls, &[]).await?;
        Ok(got)
    }

    async fn read_exact(tls: &mut TlsStream, into: &mut Vec<u8>, len: usize) -> io::Result<()> {
        let mut buf = [0u8; 64];
        while into.len() < len {
            match tls.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => into.extend_from_slice(&buf[..n]),
                Err(e) if would_block(&e) => tls.ready().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn write_all(tls: &mut TlsStream, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match tls.write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if would_block(&e) => tls.ready().await?,
                Err(e) => return Err(e),
            }
        }
        loop {
            match tls.flush() {
                Ok(()) => return Ok(()),
                Err(e) if would_block(&e) => tls.ready().await?,
                Err(e) => return Err(e),
            }
        }
    }
}
