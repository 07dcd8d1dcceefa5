//! A simulated Art-Net 4 node: takes ArtDmx for the universes it carries, answers ArtPoll
//! with ArtPollReply (its port-addresses, four a reply), and follows ArtSync: after a sync
//! the node holds each frame until the next one, and falls back to showing frames at once
//! when no sync has come for 4 s (Art-Net 4).

use std::net::SocketAddr;
use std::sync::Arc;

use nightscape_core::addr::ArtNetPortAddress;
use nightscape_core::clock::Clock;
use nightscape_core::codec::artnet::{self, ArtPollReply, Packet};
use nightscape_core::model::Universe;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::state::{ControllerSim, Device};

/// How long a node stays in synchronous mode after an ArtSync.
const SYNC_HOLD_MS: i64 = 4000;

/// Receives on `socket` until `shutdown`.
pub async fn serve(
    socket: UdpSocket,
    controller: Arc<ControllerSim>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; 1500];
    let failed = |e: &std::io::Error| {
        controller
            .counters
            .count_malformed(&format!("receive: {e}"))
    };
    while let Some((len, from)) = crate::next_datagram(&socket, &mut buf, &shutdown, failed).await {
        let now_ms = clock.now_ms();
        if !controller.admit(now_ms) {
            continue;
        }
        match artnet::decode(&buf[..len]) {
            Err(e) => controller.counters.count_malformed(&e.to_string()),
            Ok(Packet::Dmx(dmx)) => dmx_frame(&controller, &dmx, now_ms),
            Ok(Packet::Sync) => sync(&controller, now_ms),
            Ok(Packet::Poll(_)) => {
                let local = socket.local_addr().ok();
                for reply in poll_replies(&controller, local) {
                    // A reply that cannot be sent is the asker's loss, as on a real network.
                    let _ = socket.send_to(&reply.encode(), from).await;
                }
            }
            Ok(Packet::PollReply(_)) => controller.counters.count_ignored(),
        }
    }
}

/// Receives what is sent to every node at once (ArtPoll and ArtDmx to the broadcast address)
/// on the shared Art-Net port until `shutdown`: frames go to the node that has the
/// port-address, polls are answered by every node, a sync reaches all of them.
pub async fn serve_broadcast(
    socket: UdpSocket,
    nodes: Vec<(Arc<ControllerSim>, SocketAddr)>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; 1500];
    while let Some((len, from)) = crate::next_datagram(&socket, &mut buf, &shutdown, |_| {}).await {
        // The shared port is bound to every address: take (and answer) loopback only.
        if !from.ip().is_loopback() {
            continue;
        }
        let now_ms = clock.now_ms();
        match artnet::decode(&buf[..len]) {
            Ok(Packet::Dmx(dmx)) => {
                let universe = Universe::ArtNet(dmx.port_address);
                for (node, _) in nodes.iter().filter(|(n, _)| carries(n, universe)) {
                    if node.admit(now_ms) {
                        dmx_frame(node, &dmx, now_ms);
                    }
                }
            }
            Ok(Packet::Sync) => {
                for (node, _) in nodes.iter().filter(|(n, _)| n.admit(now_ms)) {
                    sync(node, now_ms);
                }
            }
            Ok(Packet::Poll(_)) => {
                for (node, addr) in nodes.iter().filter(|(n, _)| n.admit(now_ms)) {
                    for reply in poll_replies(node, Some(*addr)) {
                        let _ = socket.send_to(&reply.encode(), from).await;
                    }
                }
            }
            // A stranger's garbage on the shared port is nobody's to count.
            Ok(Packet::PollReply(_)) | Err(_) => {}
        }
    }
}

fn carries(node: &ControllerSim, universe: Universe) -> bool {
    node.with_device(|d| match d {
        Device::Dmx(d) => d.universes.contains_key(&universe),
        Device::Modbus(_) => false,
    })
}

/// An ArtSync: held frames show, and the node stays in synchronous mode for 4 s.
fn sync(controller: &ControllerSim, now_ms: i64) {
    controller.with_device(|d| {
        if let Device::Dmx(d) = d {
            d.sync_until_ms = now_ms + SYNC_HOLD_MS;
            for u in d.universes.values_mut() {
                if let Some(held) = u.held.take() {
                    u.show(held, now_ms);
                }
            }
        }
    });
    controller.accepted(now_ms);
}

fn dmx_frame(controller: &ControllerSim, dmx: &artnet::ArtDmx, now_ms: i64) {
    let carried = controller.with_device(|d| {
        let Device::Dmx(d) = d else { return false };
        let sync = now_ms < d.sync_until_ms;
        let Some(u) = d.universes.get_mut(&Universe::ArtNet(dmx.port_address)) else {
            return false;
        };
        // Slots the frame does not carry are 0, as on a DMX line.
        let mut slots = [0u8; 512];
        let n = dmx.data.len().min(512);
        slots[..n].copy_from_slice(&dmx.data[..n]);
        if sync {
            u.held = Some(slots);
        } else {
            // Out of synchronous mode, an older held frame must never show later.
            u.held = None;
            u.show(slots, now_ms);
        }
        true
    });
    if carried {
        controller.accepted(now_ms);
    } else {
        controller.counters.count_ignored();
    }
}

/// The node's ArtPollReplies: four port-addresses a reply (bind index 1, 2, …).
fn poll_replies(controller: &ControllerSim, local: Option<SocketAddr>) -> Vec<ArtPollReply> {
    let universes: Vec<_> = controller.with_device(|d| match d {
        Device::Dmx(d) => d
            .universes
            .keys()
            .filter_map(|u| match u {
                Universe::ArtNet(a) => Some(*a),
                _ => None,
            })
            .collect(),
        Device::Modbus(_) => Vec::new(),
    });
    let ip = match local.map(|a| a.ip()) {
        Some(std::net::IpAddr::V4(v4)) => v4.octets(),
        _ => [127, 0, 0, 1],
    };
    // One reply carries up to four ports that share a net and sub-net.
    let mut groups: Vec<Vec<ArtNetPortAddress>> = Vec::new();
    for a in universes {
        match groups.last_mut() {
            Some(g) if g.len() < 4 && (g[0].net(), g[0].subnet()) == (a.net(), a.subnet()) => {
                g.push(a);
            }
            _ => groups.push(vec![a]),
        }
    }
    groups
        .iter()
        .enumerate()
        .map(|(k, group)| {
            let first = group[0];
            let mut sw_out = [0u8; 4];
            let mut port_types = [0u8; 4];
            let mut good_output = [0u8; 4];
            for (i, a) in group.iter().enumerate() {
                sw_out[i] = a.universe();
                port_types[i] = 0x80; // output, DMX512
                good_output[i] = 0x80; // data is being transmitted
            }
            ArtPollReply {
                ip,
                port: artnet::PORT,
                version: 1,
                net_switch: first.net(),
                sub_switch: first.subnet(),
                oem: 0x00ff,
                status1: 0xd0,
                esta_manufacturer: 0x7ff0,
                short_name: format!("ns-sim {}", controller.id),
                long_name: format!("Nightscape simulator: controller {}", controller.id),
                node_report: "#0001 [0000] simulated".into(),
                num_ports: group.len() as u16,
                port_types,
                good_input: [0; 4],
                good_output_a: good_output,
                sw_in: [0; 4],
                sw_out,
                style: 0,
                mac: [0; 6],
                bind_ip: ip,
                bind_index: (k + 1) as u8,
                status2: 0x08,
            }
        })
        .collect()
}
