//! Where each controller of the gateway is sent, and the `loopback_only` guard.
//!
//! The show library holds field addresses (`10.x` hosts, sACN multicast groups). An endpoint
//! map (written by the simulator, or by an installer for an unusual network) replaces them
//! controller by controller. With `loopback_only` — set on every development, test and CI
//! machine — a destination outside 127.0.0.0/8 is refused before anything is sent, naming
//! the controller; multicast is allowed only out of the loopback interface.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use nightscape_core::codec::{artnet, sacn};
use nightscape_core::endpoints::EndpointMap;
use nightscape_core::model::{Output, Site};
use nightscape_core::{ControllerId, GatewayId};

/// Where one controller's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Modbus TCP.
    Tcp(SocketAddr),
    /// Art-Net or sACN unicast.
    Udp(SocketAddr),
    /// sACN multicast: each universe to its group, out of `interface`.
    Multicast { interface: Ipv4Addr },
    /// DMX over MQTT, through the gateway's broker.
    Broker,
}

/// A destination the guard refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error(
        "controller `{controller}` would be sent to {to} (its field address), outside loopback; loopback_only is set: give an endpoint map that places it on 127.0.0.0/8"
    )]
    NotLoopback {
        controller: ControllerId,
        to: String,
    },
    #[error(
        "controller `{controller}`: its host `{host}` is not an IP address; give it in the endpoint map"
    )]
    NotAnAddress {
        controller: ControllerId,
        host: String,
    },
}

/// The destination of every controller of `gateway` on `site`.
pub fn destinations(
    site: &Site,
    gateway: &GatewayId,
    endpoints: Option<&EndpointMap>,
    loopback_only: bool,
) -> Result<BTreeMap<ControllerId, Destination>, GuardError> {
    destinations_via(site, gateway, endpoints, loopback_only, None)
}

/// The same, with sACN multicast leaving by `multicast_interface` (on a box with several
/// networks; ignored under `loopback_only`, where it is always loopback).
pub fn destinations_via(
    site: &Site,
    gateway: &GatewayId,
    endpoints: Option<&EndpointMap>,
    loopback_only: bool,
    multicast_interface: Option<Ipv4Addr>,
) -> Result<BTreeMap<ControllerId, Destination>, GuardError> {
    let mut out = BTreeMap::new();
    for c in site.controllers.iter().filter(|c| &c.gateway == gateway) {
        let mapped = endpoints.and_then(|m| m.get(&c.id));
        let destination = match (&c.output, mapped) {
            (Output::DmxMqtt { .. }, _) => Destination::Broker,
            (Output::Modbus { .. }, Some(addr)) => Destination::Tcp(addr),
            (Output::ArtNet { .. } | Output::Sacn { .. }, Some(addr)) => Destination::Udp(addr),
            (Output::Modbus { host, port, .. }, None) => {
                let ip: IpAddr = host.parse().map_err(|_| GuardError::NotAnAddress {
                    controller: c.id.clone(),
                    host: host.clone(),
                })?;
                Destination::Tcp(SocketAddr::new(ip, *port))
            }
            (Output::ArtNet { ip, .. }, None) => {
                Destination::Udp(SocketAddr::new(*ip, artnet::PORT))
            }
            (
                Output::Sacn {
                    unicast: Some(ip), ..
                },
                None,
            ) => Destination::Udp(SocketAddr::new(*ip, sacn::PORT)),
            (Output::Sacn { unicast: None, .. }, None) => Destination::Multicast {
                interface: if loopback_only {
                    Ipv4Addr::LOCALHOST
                } else {
                    multicast_interface.unwrap_or(Ipv4Addr::UNSPECIFIED)
                },
            },
        };
        if loopback_only {
            let refused = match destination {
                Destination::Tcp(a) | Destination::Udp(a) => {
                    (!a.ip().is_loopback()).then(|| a.to_string())
                }
                Destination::Multicast { .. } | Destination::Broker => None,
            };
            if let Some(to) = refused {
                return Err(GuardError::NotLoopback {
                    controller: c.id.clone(),
                    to,
                });
            }
        }
        out.insert(c.id.clone(), destination);
    }
    Ok(out)
}
