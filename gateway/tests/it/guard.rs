//! Destinations and the loopback guard on the shipped sites.

use std::net::Ipv4Addr;

use nightscape_core::check;
use nightscape_core::endpoints::EndpointMap;
use nightscape_gateway::guard::{Destination, GuardError, destinations, destinations_via};

use crate::shipped_library;

#[test]
fn field_addresses_are_refused_on_loopback_only_and_the_endpoint_map_replaces_them() {
    let lib = check(&shipped_library()).library;
    let donam = &lib.sites[&"donam-seowon".parse().unwrap()];
    let gw = "donam-gw".parse().unwrap();
    // On a site box, the field addresses.
    let field = destinations(donam, &gw, None, false).unwrap();
    assert_eq!(
        field[&"donam-path".parse().unwrap()],
        Destination::Tcp("10.41.0.30:502".parse().unwrap())
    );
    // On a test machine, refused, naming the controller.
    let err = destinations(donam, &gw, None, true).unwrap_err();
    assert!(
        matches!(&err, GuardError::NotLoopback { controller, .. } if controller.as_str() == "donam-dim-1")
    );
    assert!(err.to_string().contains("10.41.0.10:502"), "{err}");
    // With the simulator's endpoint map, everything goes to loopback.
    let mut map = EndpointMap::default();
    for (i, c) in donam.controllers.iter().enumerate() {
        map.controllers.insert(
            c.id.clone(),
            format!("127.0.0.1:{}", 15000 + i).parse().unwrap(),
        );
    }
    let mapped = destinations(donam, &gw, Some(&map), true).unwrap();
    assert_eq!(mapped.len(), donam.controllers.len());
    assert!(
        mapped
            .values()
            .all(|d| matches!(d, Destination::Tcp(a) if a.ip().is_loopback()))
    );
    // Multicast stays multicast, out of the loopback interface.
    let bridge = &lib.sites[&"gyebaek-bridge".parse().unwrap()];
    let d = destinations(bridge, &"gyebaek-gw".parse().unwrap(), None, true);
    // The south railing is unicast to a field address: refused.
    assert!(
        matches!(d, Err(GuardError::NotLoopback { controller, .. }) if controller.as_str() == "gyebaek-px-south")
    );
    let mut map = EndpointMap::default();
    map.controllers.insert(
        "gyebaek-px-south".parse().unwrap(),
        "127.0.0.1:15568".parse().unwrap(),
    );
    let d = destinations(bridge, &"gyebaek-gw".parse().unwrap(), Some(&map), true).unwrap();
    assert_eq!(
        d[&"gyebaek-px-north".parse().unwrap()],
        Destination::Multicast {
            interface: Ipv4Addr::LOCALHOST
        }
    );
}

#[test]
fn multicast_leaves_by_the_configured_interface_and_by_loopback_under_loopback_only() {
    let lib = check(&shipped_library()).library;
    let site = &lib.sites[&"gyebaek-bridge".parse().unwrap()];
    let gw = "gyebaek-gw".parse().unwrap();
    let lan = Ipv4Addr::new(10, 31, 2, 1);
    let north = "gyebaek-px-north".parse().unwrap();
    // Only where each controller goes is computed here; nothing is sent.
    let to = destinations_via(site, &gw, None, false, Some(lan)).unwrap();
    assert_eq!(to[&north], Destination::Multicast { interface: lan });
    let mut endpoints = EndpointMap::default();
    endpoints.controllers.insert(
        "gyebaek-px-south".parse().unwrap(),
        "127.0.0.1:5568".parse().unwrap(),
    );
    let to = destinations_via(site, &gw, Some(&endpoints), true, Some(lan)).unwrap();
    assert_eq!(
        to[&north],
        Destination::Multicast {
            interface: Ipv4Addr::LOCALHOST
        }
    );
}
