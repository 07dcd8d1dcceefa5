//! The gateway's configuration: one TOML file, checked as the show files are — every
//! problem reported at once, each with its line and column and what to write instead.
//!
//! ```toml
//! gateway = "gyebaek-gw"                  # this gateway's id in the show library
//! data_dir = "/var/lib/nightscape"        # plans, overrides, trusted time, sACN CID, events
//! trusted_keys = ["/etc/nightscape/city.pub"]
//! frame_rate_hz = 40                      # DMX over IP, 1–44
//! safe_state = "hold"                     # on shutdown: hold the last look, or go dark
//! loopback_only = false                   # true on test machines: refuse non-loopback
//! endpoints = "/etc/nightscape/endpoints.toml"   # optional: replaces field addresses
//!
//! [mqtt]
//! host = "broker.city.example"
//! port = 8883
//! username = "gyebaek-gw"
//! password_file = "/etc/nightscape/mqtt.password"
//! ca_file = "/etc/nightscape/ca.pem"      # TLS when given
//! topic_prefix = ""
//! ```

use std::ops::Range;
use std::path::PathBuf;

use nightscape_core::GatewayId;
use serde::Deserialize;

/// What a gateway does with its output when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafeState {
    /// Keeps the last look (controllers hold; sACN receivers see a stream terminated).
    Hold,
    /// Sends zeros, then stops.
    Dark,
}

/// The broker the gateway talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mqtt {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// TLS with this CA when given.
    pub ca_file: Option<PathBuf>,
    pub topic_prefix: String,
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub gateway: GatewayId,
    pub data_dir: PathBuf,
    pub trusted_keys: Vec<PathBuf>,
    pub frame_rate_hz: u32,
    pub safe_state: SafeState,
    pub loopback_only: bool,
    pub endpoints: Option<PathBuf>,
    /// The address of the interface sACN multicast leaves by (the lighting network's, on a
    /// box with several); the system's route for 239.255.0.0/16 when not given.
    pub multicast_interface: Option<std::net::Ipv4Addr>,
    pub mqtt: Mqtt,
}

impl Config {
    /// A gateway on this machine, for `up`, tests and benchmarks: loopback only, 40 Hz,
    /// holding its look when it stops, the broker on 127.0.0.1:`mqtt_port` with no
    /// credentials; no keys or endpoint map files (they are given to the runtime directly).
    pub fn local(
        gateway: GatewayId,
        data_dir: PathBuf,
        mqtt_port: u16,
        topic_prefix: &str,
    ) -> Config {
        Config {
            gateway,
            data_dir,
            trusted_keys: Vec::new(),
            frame_rate_hz: 40,
            safe_state: SafeState::Hold,
            loopback_only: true,
            endpoints: None,
            multicast_interface: None,
            mqtt: Mqtt {
                host: "127.0.0.1".into(),
                port: mqtt_port,
                username: None,
                password_file: None,
                ca_file: None,
                topic_prefix: topic_prefix.to_owned(),
            },
        }
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line and column, when the problem has a place.
    pub at: Option<(usize, usize)>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Some((line, col)) => write!(f, "{line}:{col}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

type Spanned<T> = toml::Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    gateway: Spanned<String>,
    data_dir: Spanned<String>,
    trusted_keys: Spanned<Vec<String>>,
    frame_rate_hz: Option<Spanned<i64>>,
    safe_state: Option<Spanned<String>>,
    loopback_only: Option<bool>,
    endpoints: Option<String>,
    multicast_interface: Option<Spanned<String>>,
    mqtt: MqttFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttFile {
    host: Spanned<String>,
    port: Option<Spanned<i64>>,
    username: Option<String>,
    password_file: Option<String>,
    ca_file: Option<String>,
    topic_prefix: Option<String>,
}

/// The configuration `print-default-config` writes: every key, with what it means.
pub const DEFAULT: &str = r#"# Nightscape gateway configuration.
# This gateway's id in the show library (the plan must be addressed to it).
gateway = "my-site-gw"
# Plans, overrides, the last trusted time, the sACN source id and undelivered events live here.
data_dir = "/var/lib/nightscape"
# Public keys that may sign plans and overrides (from `nightscape keygen`, the .pub file).
trusted_keys = ["/etc/nightscape/city.pub"]
# Frames per second for DMX over IP (Art-Net, sACN), 1–44. Modbus is written on change.
frame_rate_hz = 40
# What the lights do when the gateway stops: "hold" the last look, or go "dark".
safe_state = "hold"
# Refuse to send anywhere but 127.0.0.0/8 (development and test machines).
loopback_only = false
# Optional: where each controller really listens, replacing the show library's addresses
# (the file `nightscape sim` writes).
# endpoints = "/etc/nightscape/endpoints.toml"
# Optional: the address of the interface sACN multicast leaves by, on a box with several
# networks (the lighting network's address); otherwise the system's route decides.
# multicast_interface = "10.31.2.1"

[mqtt]
host = "127.0.0.1"
port = 1883
# username = "my-site-gw"
# password_file = "/etc/nightscape/mqtt.password"
# ca_file = "/etc/nightscape/ca.pem"     # TLS to the broker when given
topic_prefix = ""
"#;

/// Line and column (1-based, in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Reads a configuration; returns every problem when it cannot be used.
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| {
        vec![ConfigError {
            at: e.span().map(|s| line_col(text, s.start)),
            message: e.message().trim().to_owned(),
        }]
    })?;
    let mut errors = Vec::new();
    let mut error = |span: Range<usize>, message: String| {
        errors.push(ConfigError {
            at: Some(line_col(text, span.start)),
            message,
        });
    };
    let gateway = match file.gateway.get_ref().parse::<GatewayId>() {
        Ok(id) => Some(id),
        Err(e) => {
            error(file.gateway.span(), format!("gateway: {e}"));
            None
        }
    };
    if file.data_dir.get_ref().trim().is_empty() {
        error(
            file.data_dir.span(),
            "data_dir is empty; give the directory for plans and state, e.g. \"/var/lib/nightscape\"".into(),
        );
    }
    if file.trusted_keys.get_ref().is_empty() {
        error(
            file.trusted_keys.span(),
            "trusted_keys is empty; a gateway must trust at least one plan-signing key".into(),
        );
    }
    let frame_rate_hz = match &file.frame_rate_hz {
        Some(r) if !(1..=44).contains(r.get_ref()) => {
            error(
                r.span(),
                format!(
                    "frame_rate_hz is {}; DMX over IP runs at 1–44 frames a second",
                    r.get_ref()
                ),
            );
            None
        }
        Some(r) => Some(*r.get_ref() as u32),
        None => Some(40),
    };
    let safe_state = match file
        .safe_state
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span()))
    {
        None | Some(("hold", _)) => Some(SafeState::Hold),
        Some(("dark", _)) => Some(SafeState::Dark),
        Some((other, span)) => {
            error(
                span,
                format!("safe_state `{other}` is not one; write \"hold\" or \"dark\""),
            );
            None
        }
    };
    let port = match &file.mqtt.port {
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                error(
                    p.span(),
                    format!("mqtt.port {} is not a port (1–65535)", p.get_ref()),
                );
                None
            }
        },
        None => Some(if file.mqtt.ca_file.is_some() {
            8883
        } else {
            1883
        }),
    };
    let loopback_only = file.loopback_only.unwrap_or(false);
    let host = file.mqtt.host.get_ref().trim().to_owned();
    if host.is_empty() {
        error(file.mqtt.host.span(), "mqtt.host is empty".into());
    } else if loopback_only
        && host != "localhost"
        && !host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        error(
            file.mqtt.host.span(),
            format!("mqtt.host `{host}` is not loopback, and loopback_only is set"),
        );
    }
    let multicast_interface = match &file.multicast_interface {
        None => None,
        Some(text) => match text.get_ref().parse::<std::net::Ipv4Addr>() {
            Ok(ip) if loopback_only && !ip.is_loopback() => {
                error(
                    text.span(),
                    format!("multicast_interface {ip} is not loopback, and loopback_only is set"),
                );
                None
            }
            Ok(ip) => Some(ip),
            Err(_) => {
                error(
                    text.span(),
                    format!(
                        "multicast_interface `{}` is not an IPv4 address; write the interface's address, e.g. \"10.31.2.1\"",
                        text.get_ref()
                    ),
                );
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    match (gateway, frame_rate_hz, safe_state, port) {
        (Some(gateway), Some(frame_rate_hz), Some(safe_state), Some(port)) => Ok(Config {
            gateway,
            data_dir: PathBuf::from(file.data_dir.into_inner()),
            trusted_keys: file
                .trusted_keys
                .into_inner()
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            frame_rate_hz,
            safe_state,
            loopback_only,
            endpoints: file.endpoints.map(PathBuf::from),
            multicast_interface,
            mqtt: Mqtt {
                host,
                port,
                username: file.mqtt.username,
                password_file: file.mqtt.password_file.map(PathBuf::from),
                ca_file: file.mqtt.ca_file.map(PathBuf::from),
                topic_prefix: file.mqtt.topic_prefix.unwrap_or_default(),
            },
        }),
        _ => Err(vec![ConfigError {
            at: None,
            message: "the configuration has errors".into(),
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_reads_back() {
        let c = parse(DEFAULT).unwrap();
        assert_eq!(c.gateway.as_str(), "my-site-gw");
        assert_eq!(c.frame_rate_hz, 40);
        assert_eq!(c.safe_state, SafeState::Hold);
        assert_eq!(c.mqtt.port, 1883);
        assert!(!c.loopback_only);
    }

    #[test]
    fn every_mistake_is_reported_with_its_place() {
        let text = DEFAULT
            .replace("\"my-site-gw\"", "\"My Site\"")
            .replace("frame_rate_hz = 40", "frame_rate_hz = 60")
            .replace("\"hold\"\n", "\"off\"\n")
            .replace("loopback_only = false", "loopback_only = true")
            .replace("host = \"127.0.0.1\"", "host = \"10.0.0.5\"");
        let errors = parse(&text).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 4, "{shown:#?}");
        assert!(
            shown[0].starts_with("3:11: gateway: `My Site` has `M`"),
            "{}",
            shown[0]
        );
        assert!(shown[1].contains("frame_rate_hz is 60"), "{}", shown[1]);
        assert!(shown[2].contains("safe_state `off`"), "{}", shown[2]);
        assert!(
            shown[3].contains("mqtt.host `10.0.0.5` is not loopback"),
            "{}",
            shown[3]
        );
    }

    #[test]
    fn a_multicast_interface_is_an_address_and_loopback_when_loopback_only() {
        let with = |line: &str| parse(&format!("{line}\n{DEFAULT}"));
        assert_eq!(
            with("multicast_interface = \"10.31.2.1\"")
                .unwrap()
                .multicast_interface,
            Some(std::net::Ipv4Addr::new(10, 31, 2, 1))
        );
        let errors = with("multicast_interface = \"eth1\"").unwrap_err();
        assert!(
            errors[0].message.contains("not an IPv4 address"),
            "{errors:?}"
        );
        let text = DEFAULT.replace("loopback_only = false", "loopback_only = true");
        let errors = parse(&format!("multicast_interface = \"10.31.2.1\"\n{text}")).unwrap_err();
        assert!(errors[0].message.contains("not loopback"), "{errors:?}");
    }

    #[test]
    fn unknown_keys_and_types_name_the_key() {
        let errors = parse(&DEFAULT.replace("frame_rate_hz", "frame_rate")).unwrap_err();
        assert!(
            errors[0].message.contains("unknown field `frame_rate`"),
            "{errors:?}"
        );
        assert!(errors[0].at.is_some());
        let errors =
            parse(&DEFAULT.replace("frame_rate_hz = 40", "frame_rate_hz = \"fast\"")).unwrap_err();
        assert!(errors[0].message.contains("invalid type"), "{errors:?}");
    }
}
