//! The sieve between the broker's socket and rumqttc: oversized messages are dropped,
//! acknowledged and reported instead of closing the connection.
//!
//! rumqttc ends the connection on an incoming packet over its size limit. With a
//! persistent session the broker sends the same QoS 1 message again at every reconnect,
//! and a retained one comes back at every subscribe, so a single oversized message on a
//! gateway's plan topic kept it off the broker for as long as the broker kept the message
//! (a reconnect every ~250 ms; plans, commands and acks lost meanwhile). The sieve reads
//! the MQTT byte stream from the broker, lets every packet within the limit through
//! untouched, skips an oversized PUBLISH without buffering it (only its topic and packet
//! id are read), and answers it at the protocol level — PUBACK for QoS 1, PUBREC then
//! PUBCOMP for QoS 2 — so the broker considers it delivered and never sends it again.
//!
//! rumqttc reads from a socket it dials itself, so the sieve stands in front of it: rumqttc
//! connects to a Unix socket in the gateway's data directory ([`listen`]), and for each
//! connection the sieve dials the broker (TCP, or TLS with the pinned CA) and moves the
//! bytes between the two. rumqttc keeps making the MQTT connection, the session, the
//! keep-alive and the retransmissions; the sieve only takes out what rumqttc would choke
//! on and puts in the answers, between rumqttc's own packets.
//!
//! [`Sieve`] and [`Boundaries`] are pure byte-stream state machines, tested below at the
//! byte level.

use std::time::Duration;

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A message the sieve dropped for its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The topic as the broker sent it (lossy if it was not UTF-8).
    pub topic: String,
    /// The whole packet's size in bytes.
    pub bytes: usize,
    pub qos: u8,
}

/// The stream could not be MQTT (a remaining length of more than four bytes, a PUBLISH
/// with QoS 3 or a topic longer than its packet): the connection is ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the broker sent a malformed packet: {0}")]
pub struct Malformed(&'static str);

/// What the sieve saw, besides the bytes it let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// An oversized message was skipped; `answer` goes to the broker.
    Dropped { dropped: Dropped, answer: Vec<u8> },
    /// The broker released a QoS 2 message the sieve dropped; `answer` completes it.
    Released { answer: Vec<u8> },
}

/// The fixed header at the start of `bytes`: packet byte, header length and remaining
/// length; `None` until all of it is there.
fn fixed_header(bytes: &[u8]) -> Result<Option<(u8, usize, usize)>, Malformed> {
    let Some(&first) = bytes.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = bytes.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((first, 2 + i, remaining)));
        }
    }
    Err(Malformed("a remaining length longer than four bytes"))
}

// MQTT 3.1.1 packet types (the high nibble of a packet's first byte).
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;

/// A packet that is only a packet id: PUBACK, PUBREC and PUBCOMP.
fn id_packet(kind: u8, id: [u8; 2]) -> Vec<u8> {
    vec![kind << 4, 0x02, id[0], id[1]]
}

/// The broker-to-client direction: lets packets within `limit` through and skips the
/// oversized PUBLISH packets.
#[derive(Debug)]
pub struct Sieve {
    limit: usize,
    /// The start of a packet, until it can be decided.
    head: Vec<u8>,
    /// Bytes of the current packet still to let through, or to skip.
    pass: usize,
    skip: usize,
    /// QoS 2 messages dropped and answered with PUBREC, waiting for their PUBREL.
    releases_due: Vec<[u8; 2]>,
}

impl Sieve {
    /// Packets whose remaining length is over `limit` are dropped (rumqttc's rule for its
    /// own limit, so nothing it would refuse reaches it).
    pub fn new(limit: usize) -> Sieve {
        Sieve {
            limit,
            head: Vec::new(),
            pass: 0,
            skip: 0,
            releases_due: Vec::new(),
        }
    }

    /// Takes bytes from the broker: what rumqttc is to read goes to `out`, what happened
    /// to `seen`.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        seen: &mut Vec<Seen>,
    ) -> Result<(), Malformed> {
        let mut input = input;
        loop {
            if self.pass > 0 {
                let n = self.pass.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.pass -= n;
                input = &input[n..];
            }
            if self.skip > 0 {
                let n = self.skip.min(input.len());
                self.skip -= n;
                input = &input[n..];
            }
            if input.is_empty() || self.pass > 0 || self.skip > 0 {
                return Ok(());
            }
            // At the start of a packet: gather only what the decision needs, so that a
            // packet let through is copied once and a skipped one not at all.
            loop {
                let want = self.wanted()?;
                if self.head.len() >= want {
                    break;
                }
                if input.is_empty() {
                    return Ok(());
                }
                let take = (want - self.head.len()).min(input.len());
                self.head.extend_from_slice(&input[..take]);
                input = &input[take..];
            }
            self.decide(out, seen)?;
        }
    }

    /// How many bytes of the packet's start decide it.
    fn wanted(&self) -> Result<usize, Malformed> {
        let Some((first, header, remaining)) = fixed_header(&self.head)? else {
            // One byte more until the remaining length is complete.
            return Ok(self.head.len() + 1);
        };
        match first >> 4 {
            PUBLISH if remaining > self.limit => {
                // An oversized PUBLISH: its topic's length, then the topic and the packet id.
                let Some(len) = self.head.get(header..header + 2) else {
                    return Ok(header + 2);
                };
                let topic = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let id = if (first >> 1) & 3 > 0 { 2 } else { 0 };
                Ok(header + 2 + topic + id)
            }
            // A PUBREL may release a message the sieve dropped: its packet id says.
            PUBREL if remaining == 2 && !self.releases_due.is_empty() => Ok(header + 2),
            _ => Ok(header),
        }
    }

    fn decide(&mut self, out: &mut Vec<u8>, seen: &mut Vec<Seen>) -> Result<(), Malformed> {
        let head = std::mem::take(&mut self.head);
        let Some((first, header, remaining)) = fixed_header(&head)? else {
            return Err(Malformed("a packet without its header"));
        };
        let body = head.len() - header;
        if body > remaining {
            return Err(Malformed("a PUBLISH whose topic is longer than the packet"));
        }
        match first >> 4 {
            PUBLISH if remaining > self.limit => {
                let qos = (first >> 1) & 3;
                if qos == 3 {
                    return Err(Malformed("a PUBLISH with QoS 3"));
                }
                let topic_end = header + 2 + (body - 2 - if qos > 0 { 2 } else { 0 });
                let topic = String::from_utf8_lossy(&head[header + 2..topic_end]).into_owned();
                let id = [
                    head.get(topic_end).copied().unwrap_or(0),
                    head.get(topic_end + 1).copied().unwrap_or(0),
                ];
                let answer = match qos {
                    0 => Vec::new(),
                    1 => id_packet(PUBACK, id),
                    _ => {
                        self.releases_due.push(id);
                        id_packet(PUBREC, id)
                    }
                };
                seen.push(Seen::Dropped {
                    dropped: Dropped {
                        topic,
                        bytes: header + remaining,
                        qos,
                    },
                    answer,
                });
                self.skip = remaining - body;
                return Ok(());
            }
            PUBREL if body == 2 => {
                let id = [head[header], head[header + 1]];
                if let Some(i) = self.releases_due.iter().position(|d| *d == id) {
                    self.releases_due.swap_remove(i);
                    seen.push(Seen::Released {
                        answer: id_packet(PUBCOMP, id),
                    });
                    return Ok(());
                }
            }
            _ => {}
        }
        out.extend_from_slice(&head);
        self.pass = remaining - body;
        Ok(())
    }
}

/// The client-to-broker direction: where rumqttc's packets end, so that the sieve's own
/// packets (acks, pings) go between two of them, never inside one.
#[derive(Debug, Default)]
pub struct Boundaries {
    head: Vec<u8>,
    left: usize,
}

impl Boundaries {
    /// Follows bytes rumqttc wrote; whether they end at a packet boundary.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<bool, Malformed> {
        loop {
            let n = self.left.min(input.len());
            self.left -= n;
            input = &input[n..];
            if input.is_empty() {
                return Ok(self.left == 0 && self.head.is_empty());
            }
            self.head.push(input[0]);
            input = &input[1..];
            if let Some((_, _, remaining)) = fixed_header(&self.head)? {
                self.head.clear();
                self.left = remaining;
            }
        }
    }
}

/// Where the broker is: its address, and the CA certificates (PEM) its certificate must
/// chain to when it speaks TLS.
#[derive(Debug, Clone)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub ca: Option<Vec<u8>>,
}

/// How long the broker has to take a connection (and its TLS handshake).
const DIAL_DEADLINE: Duration = Duration::from_secs(5);

/// Longest wait for either side to take bytes; then the connection is given up, as rumqttc
/// gives up a flush.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// Where the sieve listens for rumqttc: `broker.sock` in the data directory, or, when that
/// path is too long for a Unix socket, a file of the same gateway in the temporary
/// directory.
pub fn socket_path(data_dir: &Path, gateway: &str) -> PathBuf {
    // sun_path holds 108 bytes with its terminating zero.
    let path = data_dir.join("broker.sock");
    if path.as_os_str().len() < 100 {
        return path;
    }
    std::env::temp_dir().join(format!("nightscape-{}-{gateway}.sock", std::process::id()))
}

/// Binds the socket rumqttc connects to (only the gateway's own user may) and serves each
/// connection on it through a sieve of `limit` bytes until `shutdown`; messages dropped are
/// reported on `dropped`.
pub fn listen(
    path: &Path,
    broker: Broker,
    limit: usize,
    dropped: mpsc::Sender<Dropped>,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    // A socket file left by a gateway that did not stop cleanly.
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let path = path.to_path_buf();
    Ok(tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((client, _)) => {
                    let broker = broker.clone();
                    let dropped = dropped.clone();
                    let stop = shutdown.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            () = stop.cancelled() => {}
                            () = serve(client, &broker, limit, dropped) => {}
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("MQTT sieve: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

/// One connection of rumqttc's: the broker dialled, then the bytes moved until either
/// side ends. A broker that cannot be reached ends rumqttc's connection at once, which it
/// reports and retries like any other.
async fn serve(
    client: tokio::net::UnixStream,
    broker: &Broker,
    limit: usize,
    dropped: mpsc::Sender<Dropped>,
) {
    let pump = Pump {
        sieve: Sieve::new(limit),
        dropped,
    };
    let dialled = tokio::time::timeout(DIAL_DEADLINE, async {
        let tcp = tokio::net::TcpStream::connect((broker.host.as_str(), broker.port)).await?;
        // Packets leave the moment they are written: without it, Nagle's algorithm holds a
        // publish while an earlier small packet waits for the broker's delayed ACK.
        tcp.set_nodelay(true)?;
        match &broker.ca {
            None => Ok::<_, std::io::Error>(Stream::Tcp(tcp)),
            Some(ca) => {
                let tls = tls_connector(ca)?;
                let name = rustls::pki_types::ServerName::try_from(broker.host.clone())
                    .map_err(|e| std::io::Error::other(format!("{}: {e}", broker.host)))?;
                Ok(Stream::Tls(Box::new(tls.connect(name, tcp).await?)))
            }
        }
    })
    .await;
    match dialled {
        Ok(Ok(Stream::Tcp(s))) => pump.run(s, client).await,
        Ok(Ok(Stream::Tls(s))) => pump.run(s, client).await,
        Ok(Err(e)) => tracing::warn!("MQTT {}:{}: {e}", broker.host, broker.port),
        Err(_) => tracing::warn!(
            "MQTT {}:{}: no answer in {DIAL_DEADLINE:?}",
            broker.host,
            broker.port
        ),
    }
}

use rumqttc::tokio_rustls::{self, rustls};

enum Stream {
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

/// A TLS connector trusting only the pinned CA certificates (PEM).
fn tls_connector(ca: &[u8]) -> std::io::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|e| std::io::Error::other(format!("the CA file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| std::io::Error::other(format!("the CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(std::io::Error::other("no CA certificate in the CA file"));
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

async fn write_to<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    match tokio::time::timeout(WRITE_DEADLINE, w.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "nothing taken for 10 s",
        )),
    }
}

/// One connection's sieve and where it reports.
struct Pump {
    sieve: Sieve,
    dropped: mpsc::Sender<Dropped>,
}

impl Pump {
    /// Moves bytes both ways until either side closes or the broker sends something that
    /// is not MQTT. Ending drops both streams: rumqttc reads the end of its stream and
    /// connects again.
    async fn run<B>(mut self, broker: B, client: tokio::net::UnixStream)
    where
        B: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut from_broker, mut to_broker) = tokio::io::split(broker);
        let (mut from_client, mut to_client) = client.into_split();
        let mut outgoing = Boundaries::default();
        let mut at_boundary = true;
        let mut owed: Vec<u8> = Vec::new();
        let mut in_buf = vec![0u8; 16 * 1024];
        let mut out_buf = vec![0u8; 16 * 1024];
        let mut passed = Vec::with_capacity(16 * 1024);
        let mut seen = Vec::new();
        loop {
            tokio::select! {
                read = from_broker.read(&mut in_buf) => {
                    let n = match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    passed.clear();
                    if let Err(e) = self.sieve.feed(&in_buf[..n], &mut passed, &mut seen) {
                        tracing::warn!("MQTT: {e}; connecting again");
                        return;
                    }
                    for s in seen.drain(..) {
                        match s {
                            Seen::Dropped { dropped, answer } => {
                                owed.extend_from_slice(&answer);
                                tracing::warn!(
                                    topic = %dropped.topic,
                                    bytes = dropped.bytes,
                                    "MQTT: a message over the size limit was dropped"
                                );
                                // Counted by the gateway; if it is not taking reports, the
                                // log above still says it.
                                let _ = self.dropped.try_send(dropped);
                            }
                            Seen::Released { answer } => owed.extend_from_slice(&answer),
                        }
                    }
                    if !passed.is_empty() && write_to(&mut to_client, &passed).await.is_err() {
                        return;
                    }
                }
                read = from_client.read(&mut out_buf) => {
                    let n = match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    at_boundary = match outgoing.feed(&out_buf[..n]) {
                        Ok(b) => b,
                        Err(_) => return,
                    };
                    if write_to(&mut to_broker, &out_buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
            // The answers go between rumqttc's packets (it writes whole packets, so this is
            // nearly always at once).
            if at_boundary && !owed.is_empty() {
                if write_to(&mut to_broker, &owed).await.is_err() {
                    return;
                }
                owed.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PUBLISH packet's bytes.
    fn publish(topic: &str, qos: u8, retain: bool, id: u16, payload: usize) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        body.extend_from_slice(topic.as_bytes());
        if qos > 0 {
            body.extend_from_slice(&id.to_be_bytes());
        }
        body.extend(std::iter::repeat_n(b'x', payload));
        let mut p = vec![0x30 | (qos << 1) | u8::from(retain)];
        let mut len = body.len();
        loop {
            let mut b = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                b |= 0x80;
            }
            p.push(b);
            if len == 0 {
                break;
            }
        }
        p.extend(body);
        p
    }

    /// Feeds `bytes` in pieces of `step`; what passed and what was seen.
    fn sift(sieve: &mut Sieve, bytes: &[u8], step: usize) -> (Vec<u8>, Vec<Seen>) {
        let (mut out, mut seen) = (Vec::new(), Vec::new());
        for piece in bytes.chunks(step) {
            sieve.feed(piece, &mut out, &mut seen).unwrap();
        }
        (out, seen)
    }

    #[test]
    fn packets_within_the_limit_pass_untouched_however_they_arrive() {
        let mut stream = publish("gw/plan", 1, true, 7, 300);
        stream.extend_from_slice(&[0x90, 0x03, 0x00, 0x01, 0x01]); // SUBACK
        stream.extend(publish("gw/cmd", 0, false, 0, 200_000)); // a 3-byte remaining length
        stream.extend_from_slice(&[0xd0, 0x00]); // PINGRESP
        stream.extend_from_slice(&[0x62, 0x02, 0x00, 0x05]); // PUBREL
        for step in [1, 2, 3, 7, 1000, stream.len()] {
            let mut sieve = Sieve::new(1 << 20);
            let (out, seen) = sift(&mut sieve, &stream, step);
            assert_eq!(out, stream, "in pieces of {step}");
            assert!(seen.is_empty());
        }
    }

    #[test]
    fn an_oversized_message_is_skipped_acknowledged_and_reported() {
        let before = publish("p/plan", 1, false, 3, 10);
        let big = publish(
            "p/nightscape/v1/gw/cityhall-gw/plan",
            1,
            false,
            0x0102,
            2 << 20,
        );
        let after = publish("p/cmd", 1, false, 4, 10);
        let stream = [before.clone(), big.clone(), after.clone()].concat();
        for step in [1, 5, 4096, stream.len()] {
            let mut sieve = Sieve::new(1 << 20);
            let (out, seen) = sift(&mut sieve, &stream, step);
            assert_eq!(
                out,
                [before.clone(), after.clone()].concat(),
                "in pieces of {step}"
            );
            assert_eq!(
                seen,
                vec![Seen::Dropped {
                    dropped: Dropped {
                        topic: "p/nightscape/v1/gw/cityhall-gw/plan".into(),
                        bytes: big.len(),
                        qos: 1,
                    },
                    // PUBACK of packet 0x0102.
                    answer: vec![0x40, 0x02, 0x01, 0x02],
                }]
            );
        }
    }

    #[test]
    fn a_retained_oversized_message_at_qos_0_is_skipped_without_an_answer() {
        let big = publish("t/plan", 0, true, 0, (1 << 20) + 1);
        let mut sieve = Sieve::new(1 << 20);
        let (out, seen) = sift(&mut sieve, &big, 65536);
        assert!(out.is_empty());
        assert!(matches!(&seen[..], [Seen::Dropped { dropped, answer }]
            if dropped.qos == 0 && answer.is_empty() && dropped.bytes == big.len()));
        // Exactly at the limit is not over it.
        let mut sieve = Sieve::new(1 << 20);
        let at = publish("t/plan", 0, true, 0, (1 << 20) - 8);
        assert_eq!(sift(&mut sieve, &at, 4096).0, at);
    }

    #[test]
    fn a_dropped_qos_2_message_is_received_and_completed_other_releases_pass() {
        let big = publish("t/plan", 2, false, 9, 2 << 20);
        let ours = [0x62, 0x02, 0x00, 0x09];
        let theirs = [0x62, 0x02, 0x00, 0x0a];
        let stream = [big, ours.to_vec(), theirs.to_vec()].concat();
        let mut sieve = Sieve::new(1 << 20);
        let (out, seen) = sift(&mut sieve, &stream, 3);
        assert_eq!(out, theirs);
        assert_eq!(seen.len(), 2);
        assert!(
            matches!(&seen[0], Seen::Dropped { answer, .. } if answer == &[0x50, 0x02, 0x00, 0x09])
        );
        assert_eq!(
            seen[1],
            Seen::Released {
                answer: vec![0x70, 0x02, 0x00, 0x09]
            }
        );
    }

    #[test]
    fn what_is_not_mqtt_ends_the_connection() {
        let mut sieve = Sieve::new(1024);
        let (mut out, mut seen) = (Vec::new(), Vec::new());
        assert!(
            sieve
                .feed(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], &mut out, &mut seen)
                .is_err()
        );
        let mut sieve = Sieve::new(16);
        let mut qos3 = publish("t", 1, false, 1, 100);
        qos3[0] = 0x36;
        assert!(sieve.feed(&qos3, &mut out, &mut seen).is_err());
        // A topic longer than its packet.
        let mut sieve = Sieve::new(4);
        assert!(
            sieve
                .feed(
                    &[
                        0x30, 0x05, 0x00, 0x10, b'a', b'b', b'c', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                        0, 0, 0, 0
                    ],
                    &mut out,
                    &mut seen
                )
                .is_err()
        );
    }

    #[test]
    fn the_client_side_is_followed_packet_by_packet() {
        let mut b = Boundaries::default();
        let p = publish("t/ack", 1, false, 1, 200);
        assert!(!b.feed(&p[..1]).unwrap());
        assert!(!b.feed(&p[1..100]).unwrap());
        assert!(b.feed(&p[100..]).unwrap());
        let two = [p.clone(), vec![0xc0, 0x00]].concat();
        assert!(b.feed(&two).unwrap());
        assert!(!b.feed(&two[..two.len() - 1]).unwrap());
        assert!(b.feed(&two[two.len() - 1..]).unwrap());
    }
}
