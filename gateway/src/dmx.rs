//! The DMX-over-IP sender: every Art-Net and sACN universe of the gateway's controllers,
//! gathered from the frame's layout channels through the output map and written into
//! reused buffers by the core's codecs.
//!
//! A universe whose slots changed is sent in the frame that changed it; an unchanged one is
//! sent again every [`KEEP_ALIVE`] so receivers never see a loss. A frame's packets leave
//! together, up to 1,024 per system call (`sendmmsg`), followed by its synchronization: one
//! sACN sync packet per destination (every data packet names the gateway's lowest sACN
//! universe as its sync address when it sends more than one) and one ArtSync per Art-Net
//! node that got data. sACN carries the gateway's
//! source CID (kept across restarts), its priority and a sequence per universe; at shutdown
//! each universe is terminated (three packets, E1.31), after zeros when the safe state is
//! dark. Only the destinations the guard allowed are used.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use nightscape_core::ControllerId;
use nightscape_core::codec::artnet;
use nightscape_core::codec::sacn::{self, DataFields, DataTemplate, OPTION_TERMINATED, SyncPacket};
use nightscape_core::model::{Output, Site, Universe};
use nightscape_core::output::{OutputMap, SinkAddress};
use std::io::IoSlice;
use std::os::fd::AsRawFd;

use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::guard::Destination;

/// An unchanged universe is sent again this often.
pub const KEEP_ALIVE: Duration = Duration::from_millis(900);

/// One universe the gateway sends.
#[derive(Debug)]
struct Outgoing {
    controller: usize,
    sink: usize,
    universe: Universe,
    to: SocketAddr,
    /// Where this universe's sync packets go (its destination; the sync group for multicast).
    sync_to: SocketAddr,
    priority: u8,
    sequence: u8,
    last: Option<([u8; 512], Instant)>,
}

/// What one frame sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub packets: usize,
    pub unchanged_skipped: usize,
    /// sACN sync packets and ArtSyncs.
    pub sync_packets: usize,
}

/// The sender of one gateway.
#[derive(Debug)]
pub struct Sender {
    socket: UdpSocket,
    out: Vec<Outgoing>,
    templates: BTreeMap<u8, DataTemplate>,
    slots: [u8; 512],
    packet: Vec<u8>,
    batch: Batch,
    cid: sacn::Cid,
    /// The universe every sACN data packet names for synchronization (the lowest one
    /// sent), when the gateway sends more than one.
    sync_universe: Option<u16>,
    sync_sequence: u8,
    /// Where this frame's sync packets go.
    sync_to: Vec<SocketAddr>,
    art_sync_to: Vec<SocketAddr>,
}

impl Sender {
    /// Binds a socket (on 127.0.0.1 when `loopback_only`, where multicast also leaves) and
    /// lists every Art-Net and sACN universe of `map`'s controllers that `destinations`
    /// has a place for.
    pub async fn new(
        site: &Site,
        map: &OutputMap,
        destinations: &BTreeMap<ControllerId, Destination>,
        cid: sacn::Cid,
        source_name: &str,
        loopback_only: bool,
    ) -> io::Result<Sender> {
        let bind = if loopback_only {
            Ipv4Addr::LOCALHOST
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        if loopback_only {
            // Multicast leaves by the loopback interface only (binding 127.0.0.1 alone does
            // not choose the interface a group's packets go out of).
            socket.set_multicast_if_v4(&Ipv4Addr::LOCALHOST)?;
            socket.set_multicast_loop_v4(true)?;
        } else if let Some(interface) = destinations.values().find_map(|d| match d {
            Destination::Multicast { interface } if !interface.is_unspecified() => Some(*interface),
            _ => None,
        }) {
            // The lighting network's interface, on a box with several.
            socket.set_multicast_if_v4(&interface)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::from((bind, 0)).into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        let mut out = Vec::new();
        let mut templates = BTreeMap::new();
        for (ci, cm) in map.controllers().iter().enumerate() {
            let Some(destination) = destinations.get(&cm.controller) else {
                continue;
            };
            let priority = match &site.controllers[cm.index].output {
                Output::Sacn { priority, .. } => *priority,
                _ => 0,
            };
            for (si, sink) in cm.sinks.iter().enumerate() {
                let SinkAddress::Universe(universe) = sink.address else {
                    continue;
                };
                let to = match (destination, universe) {
                    (Destination::Udp(addr), _) => *addr,
                    (Destination::Multicast { .. }, Universe::Sacn(u)) => {
                        SocketAddr::from((sacn::multicast_group(u), sacn::PORT))
                    }
                    _ => continue,
                };
                if let Universe::Sacn(_) = universe {
                    templates
                        .entry(priority)
                        .or_insert_with(|| DataTemplate::new(cid, source_name, priority));
                }
                out.push(Outgoing {
                    controller: ci,
                    sink: si,
                    universe,
                    to,
                    sync_to: to,
                    priority,
                    sequence: 0,
                    last: None,
                });
            }
        }
        let sacn: Vec<u16> = out
            .iter()
            .filter_map(|o| match o.universe {
                Universe::Sacn(u) => Some(u.get()),
                _ => None,
            })
            .collect();
        let sync_universe = (sacn.len() > 1)
            .then(|| sacn.iter().copied().min())
            .flatten();
        if let Some(sync) =
            sync_universe.and_then(|u| nightscape_core::addr::SacnUniverse::new(i64::from(u)).ok())
        {
            // Multicast sync packets go to the sync universe's group.
            for o in &mut out {
                if o.to.ip().is_multicast() {
                    o.sync_to = SocketAddr::from((sacn::multicast_group(sync), sacn::PORT));
                }
            }
        }
        Ok(Sender {
            socket,
            out,
            templates,
            slots: [0; 512],
            packet: Vec::with_capacity(126 + 512),
            batch: Batch::default(),
            cid,
            sync_universe,
            sync_sequence: 0,
            sync_to: Vec::new(),
            art_sync_to: Vec::new(),
        })
    }

    /// Goes on from `before`'s sequence numbers (and last frames) for the universes both
    /// send to the same place, so receivers that still hold the gateway as a source do not
    /// drop the new plan's first packets as out of order.
    pub fn carry_sequences(&mut self, before: &Sender) {
        for o in &mut self.out {
            if let Some(b) = before
                .out
                .iter()
                .find(|b| b.universe == o.universe && b.to == o.to)
            {
                o.sequence = b.sequence;
                o.last = b.last;
            }
        }
        self.sync_sequence = before.sync_sequence;
    }

    /// How many universes it sends.
    pub fn universes(&self) -> usize {
        self.out.len()
    }

    /// Sends the universes `channels` (the layout's) changed, and the others whose
    /// keep-alive is due, in batches (`sendmmsg`); then the frame's synchronization: an
    /// sACN sync packet to each sACN destination and an ArtSync to each Art-Net node that
    /// got data, so every universe of the frame shows at once.
    pub async fn send(&mut self, map: &OutputMap, channels: &[u8]) -> io::Result<Sent> {
        let sent = self.prepare(map, channels);
        self.flush().await?;
        Ok(sent)
    }

    /// Writes the packets [`send`](Self::send) would send into the batch, without sending
    /// them: the frame loop prepares the next frame after sending one, so each frame leaves
    /// on its tick whatever rendering it cost. A batch not flushed is replaced by the next.
    pub fn prepare(&mut self, map: &OutputMap, channels: &[u8]) -> Sent {
        let now = Instant::now();
        let mut sent = Sent::default();
        self.batch.clear();
        for i in 0..self.out.len() {
            let o = &self.out[i];
            let sink = &map.controllers()[o.controller].sinks[o.sink];
            sink.gather(channels, &mut self.slots);
            let due = match &o.last {
                None => true,
                Some((last, at)) => *last != self.slots || now.duration_since(*at) >= KEEP_ALIVE,
            };
            if !due {
                sent.unchanged_skipped += 1;
                continue;
            }
            self.packet_for(i, 0, self.sync_universe);
            let o = &mut self.out[i];
            self.batch.push(&self.packet, o.to);
            o.last = Some((self.slots, now));
            sent.packets += 1;
            match o.universe {
                Universe::Sacn(_)
                    if self.sync_universe.is_some() && !self.sync_to.contains(&o.sync_to) =>
                {
                    self.sync_to.push(o.sync_to);
                }
                Universe::ArtNet(_) if !self.art_sync_to.contains(&o.to) => {
                    self.art_sync_to.push(o.to);
                }
                _ => {}
            }
        }
        if let Some(sync_address) = self.sync_universe
            && !self.sync_to.is_empty()
        {
            // One sync packet a frame, with one sequence, to every destination: each
            // receiver sees the sequence go up by one.
            self.sync_sequence = self.sync_sequence.wrapping_add(1);
            let packet = SyncPacket {
                cid: self.cid,
                sequence: self.sync_sequence,
                sync_address,
            }
            .encode();
            for to in self.sync_to.drain(..) {
                self.batch.push(&packet, to);
                sent.sync_packets += 1;
            }
        }
        let art_sync = artnet::encode_sync();
        for to in self.art_sync_to.drain(..) {
            self.batch.push(&art_sync, to);
            sent.sync_packets += 1;
        }
        sent
    }

    /// Sends the prepared packets (nothing when none are waiting).
    pub async fn flush(&mut self) -> io::Result<()> {
        let result = self.batch.flush(&self.socket).await;
        self.batch.clear();
        result
    }

    /// Writes universe `i`'s packet of the current slots into the packet buffer.
    fn packet_for(&mut self, i: usize, options: u8, sync: Option<u16>) {
        let o = &mut self.out[i];
        o.sequence = o.sequence.wrapping_add(1);
        match o.universe {
            Universe::Sacn(u) => {
                if let Some(t) = self.templates.get(&o.priority) {
                    t.encode_into(
                        &DataFields {
                            sync_address: sync.unwrap_or(0),
                            sequence: o.sequence,
                            options,
                            universe: u.get(),
                            start_code: 0,
                        },
                        &self.slots,
                        &mut self.packet,
                    );
                }
            }
            Universe::ArtNet(a) => {
                // Art-Net counts 1–255; 0 means the receiver ignores sequencing.
                if o.sequence == 0 {
                    o.sequence = 1;
                }
                artnet::encode_dmx_into(o.sequence, 0, a, &self.slots, &mut self.packet);
            }
            Universe::DmxMqtt(_) => self.packet.clear(),
        }
    }

    /// At shutdown: zeros first when `dark`, then each sACN universe's stream terminated
    /// (three packets), so receivers hold or darken as they are set to.
    pub async fn stop(&mut self, dark: bool) -> io::Result<()> {
        self.batch.clear();
        for i in 0..self.out.len() {
            if dark {
                self.slots = [0; 512];
            } else if let Some((last, _)) = &self.out[i].last {
                self.slots = *last;
            }
            if dark {
                // sACN zeros unsynchronized, so receivers take them without waiting for a
                // sync; Art-Net nodes in synchronous mode get their ArtSync below.
                self.packet_for(i, 0, None);
                self.batch.push(&self.packet, self.out[i].to);
                if let Universe::ArtNet(_) = self.out[i].universe
                    && !self.art_sync_to.contains(&self.out[i].to)
                {
                    self.art_sync_to.push(self.out[i].to);
                }
            }
            if let Universe::Sacn(_) = self.out[i].universe {
                for _ in 0..3 {
                    self.packet_for(i, OPTION_TERMINATED, None);
                    self.batch.push(&self.packet, self.out[i].to);
                }
            }
        }
        let art_sync = artnet::encode_sync();
        for to in self.art_sync_to.drain(..) {
            self.batch.push(&art_sync, to);
        }
        self.batch.flush(&self.socket).await
    }
}

/// Most packets one `sendmmsg` call takes (the kernel's UIO_MAXIOV).
const MAX_BATCH: usize = 1024;

/// The packets of one frame, back to back in one buffer, each with its destination.
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    packets: Vec<(std::ops::Range<usize>, SocketAddr)>,
}

impl Batch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.packets.clear();
    }

    fn push(&mut self, packet: &[u8], to: SocketAddr) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(packet);
        self.packets.push((start..self.bytes.len(), to));
    }

    /// Sends every packet, as many per system call as the kernel takes. A packet the kernel
    /// refuses outright is skipped (and its error returned after the rest went out), so
    /// one bad destination never holds up the others.
    async fn flush(&self, socket: &UdpSocket) -> io::Result<()> {
        let mut done = 0;
        let mut first_error = None;
        while done < self.packets.len() {
            let sent = socket.try_io(Interest::WRITABLE, || {
                send_many(socket.as_raw_fd(), &self.bytes, &self.packets[done..])
            });
            match sent {
                Ok(n) => done += n.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
                Err(e) => {
                    first_error.get_or_insert(e);
                    done += 1;
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// One `sendmmsg` of up to [`MAX_BATCH`] packets; how many the kernel took.
fn send_many(
    fd: std::os::fd::RawFd,
    bytes: &[u8],
    packets: &[(std::ops::Range<usize>, SocketAddr)],
) -> io::Result<usize> {
    let packets = &packets[..packets.len().min(MAX_BATCH)];
    let slices: Vec<[IoSlice<'_>; 1]> = packets
        .iter()
        .map(|(range, _)| [IoSlice::new(&bytes[range.clone()])])
        .collect();
    let addrs: Vec<Option<SockaddrStorage>> = packets
        .iter()
        .map(|(_, to)| Some(SockaddrStorage::from(*to)))
        .collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(packets.len(), None);
    let results = sendmmsg(
        fd,
        &mut headers,
        &slices,
        &addrs,
        [] as [ControlMessage<'_>; 0],
        MsgFlags::empty(),
    )?;
    Ok(results.count())
}
