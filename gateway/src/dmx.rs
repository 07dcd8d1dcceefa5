//! The DMX-over-IP sender: every Art-Net and sACN universe of the gateway's controllers,
//! gathered from the frame's layout channels through the output map and written into
//! reused buffers by the core's codecs.
//!
//! A universe whose slots changed is sent in the frame that changed it; an unchanged one is
//! sent again every [`KEEP_ALIVE`] so receivers never see a loss. sACN carries the gateway's
//! source CID (kept across restarts), its priority and a sequence per universe; at shutdown
//! each universe is terminated (three packets, E1.31), after zeros when the safe state is
//! dark. Only the destinations the guard allowed are used.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use nightscape_core::ControllerId;
use nightscape_core::codec::artnet;
use nightscape_core::codec::sacn::{self, DataFields, DataTemplate, OPTION_TERMINATED};
use nightscape_core::model::{Output, Site, Universe};
use nightscape_core::output::{OutputMap, SinkAddress};
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
    priority: u8,
    sequence: u8,
    last: Option<([u8; 512], Instant)>,
}

/// What one frame sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub packets: usize,
    pub unchanged_skipped: usize,
}

/// The sender of one gateway.
#[derive(Debug)]
pub struct Sender {
    socket: UdpSocket,
    out: Vec<Outgoing>,
    templates: BTreeMap<u8, DataTemplate>,
    slots: [u8; 512],
    packet: Vec<u8>,
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
                    priority,
                    sequence: 0,
                    last: None,
                });
            }
        }
        Ok(Sender {
            socket,
            out,
            templates,
            slots: [0; 512],
            packet: Vec::with_capacity(126 + 512),
        })
    }

    /// How many universes it sends.
    pub fn universes(&self) -> usize {
        self.out.len()
    }

    /// Sends the universes `channels` (the layout's) changed, and the others whose
    /// keep-alive is due.
    pub async fn send(&mut self, map: &OutputMap, channels: &[u8]) -> io::Result<Sent> {
        let now = Instant::now();
        let mut sent = Sent::default();
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
            self.packet_for(i, 0);
            self.socket.send_to(&self.packet, self.out[i].to).await?;
            let o = &mut self.out[i];
            o.last = Some((self.slots, now));
            sent.packets += 1;
        }
        Ok(sent)
    }

    /// Writes universe `i`'s packet of the current slots into the packet buffer.
    fn packet_for(&mut self, i: usize, options: u8) {
        let o = &mut self.out[i];
        o.sequence = o.sequence.wrapping_add(1);
        match o.universe {
            Universe::Sacn(u) => {
                if let Some(t) = self.templates.get(&o.priority) {
                    t.encode_into(
                        &DataFields {
                            sync_address: 0,
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
        for i in 0..self.out.len() {
            if dark {
                self.slots = [0; 512];
            } else if let Some((last, _)) = &self.out[i].last {
                self.slots = *last;
            }
            if dark {
                self.packet_for(i, 0);
                self.socket.send_to(&self.packet, self.out[i].to).await?;
            }
            if let Universe::Sacn(_) = self.out[i].universe {
                for _ in 0..3 {
                    self.packet_for(i, OPTION_TERMINATED);
                    self.socket.send_to(&self.packet, self.out[i].to).await?;
                }
            }
        }
        Ok(())
    }
}
