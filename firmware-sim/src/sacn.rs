//! A simulated sACN (E1.31) receiver: each universe through the core's receiver state
//! machine (priority, highest-takes-precedence merge, sequence, stream termination, 2.5 s
//! loss holding the last look), and universe synchronization: data that names a sync address
//! waits until the synchronization packet for that address arrives.

use std::collections::BTreeMap;
use std::sync::Arc;

use nightscape_core::ControllerId;
use nightscape_core::addr::SacnUniverse;
use nightscape_core::clock::Clock;
use nightscape_core::codec::sacn::{self, Fed, Packet};
use nightscape_core::model::Universe;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::state::{ControllerSim, Device};

/// Data packets one universe keeps waiting for their sync packet (older ones are dropped).
const MAX_PENDING: usize = 4;

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
    while let Some((len, _)) = crate::next_datagram(&socket, &mut buf, &shutdown, failed).await {
        receive(&controller, &buf[..len], clock.now_ms());
    }
}

/// Receives multicast for every universe in `by_universe` (joined on loopback) until
/// `shutdown`: data goes to the controller of its universe, sync packets to each of them once.
pub async fn serve_multicast(
    socket: UdpSocket,
    by_universe: BTreeMap<u16, Vec<Arc<ControllerSim>>>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; 1500];
    while let Some((len, from)) = crate::next_datagram(&socket, &mut buf, &shutdown, |_| {}).await {
        // The group socket is bound to every address: take loopback only.
        if !from.ip().is_loopback() {
            continue;
        }
        let bytes = &buf[..len];
        let now_ms = clock.now_ms();
        match sacn::decode(bytes) {
            Ok(Packet::Data(p)) => {
                for c in by_universe.get(&p.universe).into_iter().flatten() {
                    receive(c, bytes, now_ms);
                }
            }
            Ok(Packet::Sync(_)) => {
                let mut seen: Vec<&ControllerId> = Vec::new();
                for c in by_universe.values().flatten() {
                    if !seen.contains(&&c.id) {
                        seen.push(&c.id);
                        receive(c, bytes, now_ms);
                    }
                }
            }
            // A stranger's garbage on the group is nobody's to count; discovery is not for us.
            Ok(Packet::Discovery(_)) | Err(_) => {}
        }
    }
}

/// Applies one datagram (shared with the multicast listener and tests).
pub fn receive(controller: &ControllerSim, bytes: &[u8], now_ms: i64) {
    if !controller.admit(now_ms) {
        return;
    }
    match sacn::decode(bytes) {
        Err(e) => controller.counters.count_malformed(&e.to_string()),
        Ok(Packet::Data(p)) => data(controller, p, now_ms),
        Ok(Packet::Sync(s)) => {
            let mut fed = Vec::new();
            controller.with_device(|d| {
                let Device::Dmx(d) = d else { return };
                for u in d.universes.values_mut() {
                    let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut u.pending)
                        .into_iter()
                        .partition(|(p, _)| p.sync_address == s.sync_address);
                    u.pending = waiting;
                    if let Some(r) = &mut u.receiver {
                        for (p, _) in &ready {
                            fed.push(r.feed(p, now_ms));
                        }
                    }
                }
            });
            tally(controller, &fed, now_ms);
        }
        Ok(Packet::Discovery(_)) => controller.counters.count_ignored(),
    }
}

fn data(controller: &ControllerSim, p: sacn::DataPacket, now_ms: i64) {
    let Ok(universe) = SacnUniverse::new(i64::from(p.universe)) else {
        controller
            .counters
            .count_malformed("universe outside 1–63999");
        return;
    };
    let fed = controller.with_device(|d| {
        let Device::Dmx(d) = d else { return None };
        let u = d.universes.get_mut(&Universe::Sacn(universe))?;
        if p.sync_address != 0 && !p.terminated() {
            if u.pending.len() >= MAX_PENDING {
                u.pending.remove(0);
            }
            u.pending.push((p, now_ms));
            return Some(Fed::Accepted);
        }
        u.receiver.as_mut().map(|r| r.feed(&p, now_ms))
    });
    match fed {
        Some(f) => tally(controller, &[f], now_ms),
        None => controller.counters.count_ignored(),
    }
}

fn tally(controller: &ControllerSim, fed: &[Fed], now_ms: i64) {
    for f in fed {
        match f {
            Fed::Accepted | Fed::Terminated => controller.accepted(now_ms),
            Fed::OutOfOrder => controller.counters.count_out_of_sequence(),
            Fed::Preview | Fed::Ignored => controller.counters.count_ignored(),
        }
    }
}
