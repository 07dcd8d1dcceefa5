//! `firmware-sim`: simulated field controllers that behave like the real ones, so engineers
//! test scenes on a screen and every end-to-end test of the gateway has something real to
//! talk to.
//!
//! From a checked show library, [`start`] runs one simulated controller per controller of
//! the chosen sites, each on a loopback endpoint — by default its own address in
//! 127.77.0.0/16 with the protocol's standard port, as on a real network, or with
//! [`Bind::Ports`] 127.0.0.1 and free ports — and returns the [`EndpointMap`] a gateway uses
//! instead of the field addresses. Nothing is ever bound or sent outside loopback.
//!
//! - [`modbus`]: Modbus TCP devices under their profiles (tokio-modbus server), units behind
//!   one endpoint where the site says so;
//! - [`artnet`]: Art-Net 4 nodes (ArtDmx, ArtPoll → ArtPollReply, ArtSync);
//! - [`sacn`]: sACN receivers through the core's receiver state machine, with universe sync;
//! - [`dmx_mqtt`]: DMX-over-MQTT controllers subscribed on a broker;
//! - [`state`]: what they hold, turned back into each fixture's light through the core's
//!   output map and `decode`;
//! - [`faults`]: faults put on controllers by the API or a scenario file;
//! - [`api`]: the HTTP state API.
//!
//! Every protocol goes through the core's codecs, profiles and output map: there is no
//! second implementation of any of them here.

pub mod api;
pub mod artnet;
pub mod dmx_mqtt;
pub mod faults;
pub mod modbus;
pub mod sacn;
pub mod state;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use nightscape_core::clock::Clock;
use nightscape_core::endpoints::EndpointMap;
use nightscape_core::model::{OnLoss, Output};
use nightscape_core::output::SinkAddress;
use nightscape_core::{ControllerId, ShowLibrary, SiteId};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::modbus::{Load, ModbusDevice};
use crate::state::{ControllerSim, Device, DmxDevice, SimState, SiteSim, UniverseIn};

pub use dmx_mqtt::{Broker, Login};

/// Where the simulated controllers listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// Each endpoint its own address with the protocol's standard port (or the Modbus port
    /// the site gives), as on a real network: `127.77.<net>.1`, `.2`, … and on into the next
    /// `net` (see [`Bind::ADDRESSES`]); two simulators on one machine take different nets.
    Addresses { net: u8 },
    /// Every endpoint on 127.0.0.1 with a free port: many simulators on one machine.
    Ports,
}

impl Bind {
    /// The default: 127.77.0.1 and up.
    pub const ADDRESSES: Bind = Bind::Addresses { net: 0 };
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub library: ShowLibrary,
    /// The sites to run; empty runs every site of the library.
    pub sites: Vec<SiteId>,
    pub bind: Bind,
    /// The broker DMX-over-MQTT controllers subscribe on; without one they receive nothing.
    pub broker: Option<Broker>,
    /// Also receive what the field sends to many controllers at once: sACN multicast for
    /// the controllers that listen to it (no `unicast` address), joined on the loopback
    /// interface only, and Art-Net broadcast (ArtPoll, ArtDmx, ArtSync) on 0.0.0.0:6454. Use
    /// it inside a private network namespace (`unshare -n`), where loopback is the only
    /// network.
    pub multicast: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("site `{0}` is not in the library (or has errors; run `nightscape scene check`)")]
    UnknownSite(SiteId),
    #[error(
        "cannot listen for controller `{controller}` on {addr}: {source} (another simulator running? try --ports)"
    )]
    Bind {
        controller: ControllerId,
        addr: SocketAddr,
        source: io::Error,
    },
}

/// A running simulator.
#[derive(Debug)]
pub struct Sim {
    pub state: Arc<SimState>,
    pub endpoints: EndpointMap,
    pub tracker: TaskTracker,
}

/// The standard port of a protocol.
fn standard_port(output: &Output) -> u16 {
    match output {
        Output::Modbus { port, .. } => *port,
        Output::ArtNet { .. } => nightscape_core::codec::artnet::PORT,
        Output::Sacn { .. } => nightscape_core::codec::sacn::PORT,
        Output::DmxMqtt { .. } => 0,
    }
}

/// Endpoint `n` in [`Bind::Addresses`] mode from `net`: 127.77.net.1, .2, … (skipping .0 and
/// .255), into the next net after 254.
fn address(net: u8, n: usize) -> IpAddr {
    let n = n as u32;
    let net = (u32::from(net) + n / 254).min(255) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 77, net, (n % 254 + 1) as u8))
}

/// Starts every controller of the chosen sites; they run until `shutdown`.
pub async fn start(
    config: SimConfig,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<Sim, SimError> {
    let lib = &config.library;
    let chosen: Vec<SiteId> = if config.sites.is_empty() {
        lib.sites.keys().cloned().collect()
    } else {
        config.sites.clone()
    };
    let (changes_tx, changes_rx) = watch::channel(0u64);
    let mut sites = BTreeMap::new();
    for id in &chosen {
        let (Some(site), Some(layout), Some(map)) =
            (lib.sites.get(id), lib.layout(id), lib.output_map(id))
        else {
            return Err(SimError::UnknownSite(id.clone()));
        };
        let now = clock.monotonic();
        let controllers = map
            .controllers()
            .iter()
            .map(|cm| {
                let c = &site.controllers[cm.index];
                let device = match (
                    &c.output,
                    cm.profile.as_ref().and_then(|p| lib.profiles.get(p)),
                ) {
                    (Output::Modbus { .. }, Some(profile)) => {
                        let loads = cm
                            .sinks
                            .iter()
                            .flat_map(|s| &s.runs)
                            .map(|r| Load {
                                channels: usize::from(r.first).saturating_sub(1)
                                    ..usize::from(r.first).saturating_sub(1) + r.channels.len(),
                                watts: site.fixtures[r.fixture].power_w,
                            })
                            .collect();
                        Device::Modbus(ModbusDevice::new(Arc::new(profile.clone()), loads, now))
                    }
                    (output, _) => Device::Dmx(DmxDevice {
                        universes: cm
                            .sinks
                            .iter()
                            .filter_map(|s| match s.address {
                                SinkAddress::Universe(u) => {
                                    let on_loss = match output {
                                        Output::ArtNet { on_loss, .. }
                                        | Output::Sacn { on_loss, .. } => *on_loss,
                                        _ => OnLoss::Hold,
                                    };
                                    Some((u, UniverseIn::new(u, on_loss)))
                                }
                                SinkAddress::ModbusChannels { .. } => None,
                            })
                            .collect(),
                        sync_until_ms: i64::MIN,
                    }),
                };
                Arc::new(ControllerSim::new(
                    c.id.clone(),
                    site.id.clone(),
                    c.output.protocol(),
                    device,
                    changes_tx.clone(),
                ))
            })
            .collect();
        sites.insert(
            id.clone(),
            SiteSim {
                site: site.clone(),
                layout,
                map,
                controllers,
            },
        );
    }
    let state = Arc::new(SimState {
        sites,
        clock: clock.clone(),
        changes: changes_rx,
    });
    let tracker = TaskTracker::new();
    let endpoints = listen(&state, &config, &clock, &shutdown, &tracker).await?;
    tracker.close();
    Ok(Sim {
        state,
        endpoints,
        tracker,
    })
}

/// Binds every endpoint and spawns its task; returns where each controller listens.
async fn listen(
    state: &Arc<SimState>,
    config: &SimConfig,
    clock: &Arc<dyn Clock>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<EndpointMap, SimError> {
    let mut endpoints = EndpointMap::default();
    // Modbus units that share a field host and port share a simulated endpoint.
    let mut modbus: BTreeMap<(String, u16), BTreeMap<u8, Arc<ControllerSim>>> = BTreeMap::new();
    let mut udp: Vec<(Arc<ControllerSim>, &'static str, u16)> = Vec::new();
    let mut mqtt = Vec::new();
    let mut multicast: BTreeMap<u16, Vec<Arc<ControllerSim>>> = BTreeMap::new();
    let mut art_nodes: Vec<Arc<ControllerSim>> = Vec::new();
    for s in state.sites.values() {
        for (cm, sim) in s.map.controllers().iter().zip(&s.controllers) {
            let c = &s.site.controllers[cm.index];
            match &c.output {
                Output::Modbus {
                    host, port, unit, ..
                } => {
                    modbus
                        .entry((host.clone(), *port))
                        .or_default()
                        .insert(*unit, sim.clone());
                }
                Output::ArtNet { .. } | Output::Sacn { .. } => {
                    udp.push((sim.clone(), c.output.protocol(), standard_port(&c.output)));
                    if let Output::ArtNet { .. } = &c.output {
                        art_nodes.push(sim.clone());
                    }
                    if let Output::Sacn { unicast: None, .. } = &c.output {
                        for u in c.output.universes() {
                            if let nightscape_core::model::Universe::Sacn(u) = u {
                                multicast.entry(u.get()).or_default().push(sim.clone());
                            }
                        }
                    }
                }
                Output::DmxMqtt { .. } => mqtt.push(sim.clone()),
            }
        }
    }
    let mut n = 0;
    let mut next_addr = |port: u16| {
        let addr = match config.bind {
            Bind::Addresses { net } => SocketAddr::new(address(net, n), port),
            Bind::Ports => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        };
        n += 1;
        addr
    };
    for ((_, port), units) in modbus {
        let addr = next_addr(port);
        let Some(first) = units.values().next().cloned() else {
            continue;
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind {
                controller: first.id.clone(),
                addr,
                source,
            })?;
        let local = listener.local_addr().unwrap_or(addr);
        for unit in units.values() {
            endpoints.controllers.insert(unit.id.clone(), local);
        }
        let (clock, shutdown) = (clock.clone(), shutdown.clone());
        tracker.spawn(async move {
            if let Err(e) = modbus::serve(listener, units, clock, shutdown).await {
                tracing::error!("Modbus endpoint {local} stopped: {e}");
            }
        });
    }
    for (sim, protocol, port) in udp {
        let addr = next_addr(port);
        let socket = udp_socket(addr, config.multicast).map_err(|source| SimError::Bind {
            controller: sim.id.clone(),
            addr,
            source,
        })?;
        let local = socket.local_addr().unwrap_or(addr);
        endpoints.controllers.insert(sim.id.clone(), local);
        let (clock, shutdown) = (clock.clone(), shutdown.clone());
        if protocol == "artnet" {
            tracker.spawn(artnet::serve(socket, sim, clock, shutdown));
        } else {
            tracker.spawn(sacn::serve(socket, sim, clock, shutdown));
        }
    }
    if config.multicast && !art_nodes.is_empty() {
        let shared = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            nightscape_core::codec::artnet::PORT,
        );
        let socket = udp_socket(shared, true).map_err(|source| SimError::Bind {
            controller: art_nodes[0].id.clone(),
            addr: shared,
            source,
        })?;
        let nodes = art_nodes
            .into_iter()
            .filter_map(|n| endpoints.get(&n.id).map(|a| (n, a)))
            .collect();
        tracker.spawn(artnet::serve_broadcast(
            socket,
            nodes,
            clock.clone(),
            shutdown.clone(),
        ));
    }
    if config.multicast && !multicast.is_empty() {
        let group_addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            nightscape_core::codec::sacn::PORT,
        );
        let Some(first) = multicast.values().flatten().next().map(|c| c.id.clone()) else {
            return Ok(endpoints);
        };
        let bind_error = |source| SimError::Bind {
            controller: first.clone(),
            addr: group_addr,
            source,
        };
        let socket = udp_socket(group_addr, true).map_err(bind_error)?;
        for u in multicast.keys() {
            let Ok(u) = nightscape_core::addr::SacnUniverse::new(i64::from(*u)) else {
                continue;
            };
            let group = nightscape_core::codec::sacn::multicast_group(u);
            socket
                .join_multicast_v4(group, Ipv4Addr::LOCALHOST)
                .map_err(bind_error)?;
        }
        tracker.spawn(sacn::serve_multicast(
            socket,
            multicast,
            clock.clone(),
            shutdown.clone(),
        ));
    }
    match &config.broker {
        Some(broker) => {
            endpoints.broker = Some(format!("{}:{}", broker.host, broker.port));
            endpoints.topic_prefix.clone_from(&broker.topic_prefix);
            for controller in mqtt {
                tracker.spawn(dmx_mqtt::serve(
                    broker.clone(),
                    controller,
                    clock.clone(),
                    shutdown.clone(),
                ));
            }
        }
        None if !mqtt.is_empty() => tracing::warn!(
            "{} DMX-over-MQTT controllers receive nothing: no broker given",
            mqtt.len()
        ),
        None => {}
    }
    Ok(endpoints)
}

/// The next datagram on `socket` (its length and sender), or `None` once `shutdown` fires.
/// A receive error is told to `failed` and skipped.
async fn next_datagram(
    socket: &UdpSocket,
    buf: &mut [u8],
    shutdown: &CancellationToken,
    failed: impl Fn(&io::Error),
) -> Option<(usize, SocketAddr)> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            r = socket.recv_from(buf) => match r {
                Ok(r) => return Some(r),
                Err(e) => failed(&e),
            },
        }
    }
}

/// A UDP socket bound to `addr`; shared with other sockets on the same port when `shared`
/// (the multicast listener binds the wildcard address on 5568 beside the unicast ones).
fn udp_socket(addr: SocketAddr, shared: bool) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if shared {
        socket.set_reuse_address(true)?;
        socket.set_broadcast(true)?;
    }
    // A frame's worth of universes arrives in a burst: room for it (the kernel may cap it).
    socket.set_recv_buffer_size(4 << 20)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}
