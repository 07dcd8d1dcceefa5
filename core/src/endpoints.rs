//! The endpoint map: where each controller really listens, replacing the show library's
//! field addresses. The simulator writes one for the controllers it runs; a gateway given one
//! sends there instead of to `10.x` field addresses, and with `loopback_only` refuses any
//! destination outside 127.0.0.0/8. Text in, text out: the files are the edges' business.
//!
//! ```toml
//! # written by nightscape sim
//! broker = "127.0.0.1:1883"        # for DMX-over-MQTT controllers
//! topic_prefix = "run-17/"          # prepended to every MQTT topic
//!
//! [controllers]
//! gyebaek-px-north = "127.77.0.1:5568"
//! donam-wb = "127.77.0.3:502"
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::ids::ControllerId;

/// Controller id → socket address, and the broker DMX-over-MQTT controllers listen on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointMap {
    /// `host:port` of the MQTT broker, for DMX-over-MQTT controllers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// Prepended to every MQTT topic, so runs on one broker do not meet.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic_prefix: String,
    #[serde(default)]
    pub controllers: BTreeMap<ControllerId, SocketAddr>,
}

/// Why an endpoint map cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoint map: {0}")]
    Syntax(String),
    #[error(
        "endpoint map: controller `{controller}` is at {addr}, outside loopback (127.0.0.0/8); with loopback_only nothing is sent there"
    )]
    NotLoopback {
        controller: ControllerId,
        addr: SocketAddr,
    },
}

impl EndpointMap {
    pub fn parse(text: &str) -> Result<EndpointMap, EndpointError> {
        toml::from_str(text).map_err(|e| EndpointError::Syntax(e.to_string()))
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("# written by nightscape sim: where each controller listens\n{body}")
    }

    pub fn get(&self, controller: &ControllerId) -> Option<SocketAddr> {
        self.controllers.get(controller).copied()
    }

    /// Refuses a map that sends anywhere but loopback.
    pub fn check_loopback(&self) -> Result<(), EndpointError> {
        match self.controllers.iter().find(|(_, a)| !is_loopback(a.ip())) {
            Some((controller, addr)) => Err(EndpointError::NotLoopback {
                controller: controller.clone(),
                addr: *addr,
            }),
            None => Ok(()),
        }
    }
}

/// 127.0.0.0/8 or ::1.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// Whether a `Host` header's value (`name`, `name:port`, `[v6]:port`) names a service on
/// this machine: `localhost`, a loopback address, or one of `names` (names or addresses,
/// at any port). The server and the simulator both refuse any other, so a web page whose
/// name was rebound to 127.0.0.1 (DNS rebinding) cannot reach them.
pub fn host_allowed(value: &str, names: &[String]) -> bool {
    let Some((host, _)) = split_authority(value) else {
        return false;
    };
    let host = normal_host(host);
    let as_ip = host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    host == "localhost"
        || as_ip.is_some_and(|ip| ip.is_loopback())
        || names.iter().any(|name| {
            let name = normal_host(name);
            name == host
                || as_ip
                    .is_some_and(|ip| name.parse::<IpAddr>().is_ok_and(|n| n.to_canonical() == ip))
        })
}

/// A host as compared: lowercase, without brackets around an IPv6 address, without the
/// trailing dot of a fully qualified name.
pub fn normal_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => inner.to_owned(),
        None => host,
    }
}

/// `host[:port]` → (host, port); an IPv6 address keeps its brackets. `None` when it is not
/// one (a port that is not a number, text after a bracket, a bare IPv6 address).
pub fn split_authority(value: &str) -> Option<(&str, Option<u16>)> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.starts_with('[') {
        let end = value.find(']')?;
        let (host, rest) = value.split_at(end + 1);
        return match rest.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if rest.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match value.rsplit_once(':') {
        // A bare IPv6 address has colons but no port.
        Some((host, _)) if host.contains(':') => None,
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((value, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip_and_refuse_field_addresses() {
        let mut map = EndpointMap {
            broker: Some("127.0.0.1:1883".into()),
            topic_prefix: "run-1/".into(),
            controllers: BTreeMap::new(),
        };
        map.controllers.insert(
            "gyebaek-px-north".parse().unwrap(),
            "127.77.0.1:5568".parse().unwrap(),
        );
        let text = map.to_toml();
        assert!(
            text.contains("gyebaek-px-north = \"127.77.0.1:5568\""),
            "{text}"
        );
        assert_eq!(EndpointMap::parse(&text).unwrap(), map);
        assert_eq!(map.check_loopback(), Ok(()));
        map.controllers.insert(
            "donam-wb".parse().unwrap(),
            "10.41.0.10:502".parse().unwrap(),
        );
        assert!(matches!(
            map.check_loopback(),
            Err(EndpointError::NotLoopback { .. })
        ));
        assert!(EndpointMap::parse("[controllers]\n\"Bad Id\" = \"127.0.0.1:1\"\n").is_err());
        assert!(EndpointMap::parse("[controllers]\nx = \"nowhere\"\n").is_err());
    }
}
