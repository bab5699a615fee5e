//! QUIC transport pieces: the quinn endpoint over a wrapped UDP socket, the rustls verifiers
//! that pin peer ids on both sides, and length-delimited frame IO.
//!
//! Authentication: every node presents a self-signed certificate for its identity key. The
//! dialer pins the expected peer id (when it knows it) in its server-certificate verifier; the
//! listener requires a client certificate and learns the dialer's id from it. Both verifiers
//! check the TLS 1.3 handshake signature against the certificate's key, so possession of the
//! key behind a peer id is proven; the certificates' own self-signatures carry no trust.

use std::fmt;
use std::hash::BuildHasher;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, ConnectionId, ConnectionIdGenerator, Runtime, UdpPoller};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::config::Tuning;
use crate::identity::{Identity, peer_id_of_cert};
use crate::impair::Impairments;
use crate::proto::PeerId;
use crate::proto::wire::LEN_PREFIX;

/// ALPN of the node protocol.
pub const ALPN: &[u8] = b"soak/1";
/// Server name used when dialing (certificates are pinned by key, not by name).
pub const SERVER_NAME: &str = "soak-node";

/// Transport setup errors.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Socket error.
    #[error("failed to bind QUIC socket {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// TLS configuration error.
    #[error("failed to configure TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// quinn rejected the TLS configuration.
    #[error("failed to configure QUIC crypto: {0}")]
    Crypto(String),
    /// A transport setting out of range.
    #[error("invalid transport setting: {0}")]
    Setting(String),
    /// Idle timeout out of range.
    #[error("invalid idle timeout: {0}")]
    Idle(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// Client side: accept the server's certificate iff its key hashes to the expected peer id
/// (any well-formed certificate when dialing a bootstrap address without an id).
#[derive(Debug)]
struct PinnedServer {
    expected: Option<PeerId>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = peer_id_of_cert(end_entity).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        match self.expected {
            Some(expected) if expected != id => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Server side: require a well-formed client certificate; its key is the dialer's peer id.
#[derive(Debug)]
struct AnyPeerClient {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyPeerClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        peer_id_of_cert(end_entity)
            .map(|_| ClientCertVerified::assertion())
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn transport_config(t: &Tuning) -> Result<quinn::TransportConfig, TransportError> {
    let mut cfg = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(Duration::from_millis(t.idle_timeout_ms))
        .map_err(|e| TransportError::Idle(e.to_string()))?;
    cfg.max_idle_timeout(Some(idle));
    cfg.keep_alive_interval(Some(Duration::from_millis(t.keep_alive_ms)));
    cfg.max_concurrent_bidi_streams(0u8.into());
    cfg.max_concurrent_uni_streams(16u8.into());
    cfg.stream_receive_window(
        quinn::VarInt::from_u64(t.stream_window_bytes)
            .map_err(|e| TransportError::Setting(format!("stream window: {e}")))?,
    );
    Ok(cfg)
}

/// quinn server config: our certificate, mandatory client certificates.
pub fn server_config(id: &Identity, t: &Tuning) -> Result<quinn::ServerConfig, TransportError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AnyPeerClient { algs: algorithms() }))
        .with_single_cert(vec![id.cert.clone()], id.private_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        QuicServerConfig::try_from(tls).map_err(|e| TransportError::Crypto(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport_config(t)?));
    cfg.migration(false);
    Ok(cfg)
}

/// quinn client config pinned to `expected` (unpinned for a bare bootstrap address).
pub fn client_config(
    id: &Identity,
    expected: Option<PeerId>,
    t: &Tuning,
) -> Result<quinn::ClientConfig, TransportError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer {
            expected,
            algs: algorithms(),
        }))
        .with_client_auth_cert(vec![id.cert.clone()], id.private_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        QuicClientConfig::try_from(tls).map_err(|e| TransportError::Crypto(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport_config(t)?));
    Ok(cfg)
}

/// The authenticated peer id of an established connection.
pub fn peer_id_of_connection(conn: &quinn::Connection) -> Option<PeerId> {
    let any = conn.peer_identity()?;
    let certs = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    peer_id_of_cert(certs.first()?)
}

// ---- connection ids and the garbage filter ------------------------------------------------

const CID_NONCE: usize = 8;
const CID_TAG: usize = 4;
const CID_LEN: usize = CID_NONCE + CID_TAG;

/// Connection ids carrying a keyed tag, so the socket wrapper can tell our short-header
/// packets from garbage without quinn's internals.
#[derive(Clone)]
pub struct CidKey(std::collections::hash_map::RandomState);

impl fmt::Debug for CidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CidKey(..)")
    }
}

impl CidKey {
    fn new() -> CidKey {
        CidKey(std::collections::hash_map::RandomState::new())
    }

    fn tag(&self, nonce: &[u8]) -> [u8; CID_TAG] {
        let h = self.0.hash_one(nonce).to_le_bytes();
        [h[0], h[1], h[2], h[3]]
    }

    fn valid(&self, cid: &[u8]) -> bool {
        cid.len() == CID_LEN && self.tag(&cid[..CID_NONCE]) == cid[CID_NONCE..]
    }
}

struct CidGen(CidKey);

impl ConnectionIdGenerator for CidGen {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut bytes = [0u8; CID_LEN];
        let nonce: [u8; CID_NONCE] = rand::random();
        bytes[..CID_NONCE].copy_from_slice(&nonce);
        bytes[CID_NONCE..].copy_from_slice(&self.0.tag(&nonce));
        ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Minimum size of a client Initial datagram (RFC 9000 §14.1).
const MIN_INITIAL: usize = 1200;

/// Whether a datagram could be a QUIC v1 packet for this endpoint.
fn plausible_quic(d: &[u8], key: &CidKey) -> bool {
    let Some(&first) = d.first() else {
        return false;
    };
    if first & 0x40 == 0 {
        return false; // fixed bit must be set (we disable greasing it)
    }
    if first & 0x80 == 0 {
        // Short header: our connection id follows.
        return d.len() > 1 + CID_LEN + 16 && key.valid(&d[1..1 + CID_LEN]);
    }
    if d.len() < 7 {
        return false;
    }
    let version = u32::from_be_bytes([d[1], d[2], d[3], d[4]]);
    if version != 1 && !(0xff00_001d..=0xff00_0020).contains(&version) {
        return false;
    }
    let dcid_len = d[5] as usize;
    if dcid_len > 20 || d.len() < 6 + dcid_len {
        return false;
    }
    let dcid = &d[6..6 + dcid_len];
    match (first >> 4) & 0x3 {
        0 => key.valid(dcid) || (d.len() >= MIN_INITIAL && dcid_len >= 8), // Initial
        1 => dcid_len >= 8,                                                // 0-RTT
        _ => key.valid(dcid),                                              // Handshake, Retry
    }
}

/// The endpoint's UDP socket: counts datagrams that are not QUIC for us
/// (`invalid_datagrams_total`) and applies node-level impairments on the way out and in.
pub struct FilterSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    key: CidKey,
    invalid: Arc<AtomicU64>,
    impair: Arc<Impairments>,
}

impl fmt::Debug for FilterSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterSocket").finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for FilterSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        match self.impair.on_send(transmit) {
            crate::impair::SendVerdict::Pass => self.inner.try_send(transmit),
            // A dropped datagram looks sent to quinn, exactly like loss on the wire.
            crate::impair::SendVerdict::Drop => Ok(()),
            crate::impair::SendVerdict::Delayed => Ok(()),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            let mut kept = 0;
            for i in 0..n {
                let m = meta[i];
                let stride = m.stride.max(1);
                let mut garbage = 0;
                for seg in bufs[i][..m.len.min(bufs[i].len())].chunks(stride) {
                    if !plausible_quic(seg, &self.key) {
                        garbage += 1;
                    }
                }
                // An empty datagram has no segment to judge: it is garbage too.
                if m.len == 0 {
                    garbage = 1;
                }
                if garbage > 0 {
                    self.invalid.fetch_add(garbage, Ordering::Relaxed);
                }
                let drop = self.impair.drop_incoming(m.addr) || (garbage > 0 && m.len <= stride); // a lone garbage datagram
                if drop {
                    continue;
                }
                if kept != i {
                    meta[kept] = m;
                    let len = m.len.min(bufs[i].len());
                    let (head, tail) = bufs.split_at_mut(i);
                    head[kept][..len].copy_from_slice(&tail[0][..len]);
                }
                kept += 1;
            }
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
            // Everything was filtered: poll again (re-registers the waker when empty).
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        // One datagram per transmit keeps per-datagram impairments exact.
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// A bound endpoint with its counters.
pub struct Bound {
    /// The quinn endpoint (server and client).
    pub endpoint: quinn::Endpoint,
    /// Local address.
    pub local: SocketAddr,
    /// Garbage datagram counter.
    pub invalid_datagrams: Arc<AtomicU64>,
}

/// Bind the QUIC endpoint on `listen`.
pub fn bind(
    listen: SocketAddr,
    server: quinn::ServerConfig,
    impair: Arc<Impairments>,
) -> Result<Bound, TransportError> {
    let bind_err = |source| TransportError::Bind {
        addr: listen,
        source,
    };
    let socket = std::net::UdpSocket::bind(listen).map_err(bind_err)?;
    let local = socket.local_addr().map_err(bind_err)?;
    let runtime: Arc<dyn Runtime> = Arc::new(quinn::TokioRuntime);
    let inner = runtime.wrap_udp_socket(socket).map_err(bind_err)?;
    let key = CidKey::new();
    let invalid = Arc::new(AtomicU64::new(0));
    impair.attach_socket(inner.clone());
    let wrapped = Arc::new(FilterSocket {
        inner,
        key: key.clone(),
        invalid: invalid.clone(),
        impair,
    });
    let mut ep = quinn::EndpointConfig::default();
    ep.cid_generator(move || Box::new(CidGen(key.clone())));
    ep.grease_quic_bit(false);
    let endpoint = quinn::Endpoint::new_with_abstract_socket(ep, Some(server), wrapped, runtime)
        .map_err(bind_err)?;
    Ok(Bound {
        endpoint,
        local,
        invalid_datagrams: invalid,
    })
}

/// Errors reading a frame from a stream.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    /// The stream failed.
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadExactError),
    /// The announced length exceeds the limit.
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
}

/// Read one length-delimited frame body; `Ok(None)` at a clean end of stream.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameReadError> {
    let mut len = [0u8; LEN_PREFIX];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > max {
        return Err(FrameReadError::TooLarge(n));
    }
    let mut buf = vec![0u8; n];
    recv.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_accepts_our_cids_and_rejects_garbage() {
        let key = CidKey::new();
        let mut generator = CidGen(key.clone());
        let cid = generator.generate_cid();
        let mut short = vec![0x40];
        short.extend_from_slice(&cid);
        short.extend_from_slice(&[0u8; 40]);
        assert!(plausible_quic(&short, &key));
        let mut other = short.clone();
        other[3] ^= 0xff;
        assert!(!plausible_quic(&other, &key));
        assert!(!plausible_quic(&[], &key));
        assert!(!plausible_quic(&[0x00; 50], &key));
        // A client Initial: long header, v1, random dcid, padded to 1200.
        let mut initial = vec![0xc0, 0, 0, 0, 1, 8];
        initial.extend_from_slice(&[7u8; 8]);
        initial.resize(1200, 0);
        assert!(plausible_quic(&initial, &key));
        initial.truncate(100);
        assert!(!plausible_quic(&initial, &key));
        // Unknown version.
        let mut v = vec![0xc0, 0xde, 0xad, 0xbe, 0xef, 8];
        v.resize(1200, 0);
        assert!(!plausible_quic(&v, &key));
    }

    #[test]
    fn random_datagrams_are_almost_always_rejected() {
        let key = CidKey::new();
        let mut rejected = 0;
        for _ in 0..1000 {
            let len = rand::random_range(1..1500);
            let d: Vec<u8> = (0..len).map(|_| rand::random()).collect();
            if !plausible_quic(&d, &key) {
                rejected += 1;
            }
        }
        assert!(rejected > 990, "rejected {rejected}/1000");
    }
}
