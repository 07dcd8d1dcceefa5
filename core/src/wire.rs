//! The MQTT messages between server and gateways (DESIGN's wire protocol, v1), each with a
//! schema version. Decoding checks the version first and returns a typed error for unknown
//! versions and malformed JSON; nothing here panics on what arrives.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const SCHEMA: u32 = 1;

/// Topics of one gateway.
pub fn topic(gateway: &str, leaf: &str) -> String {
    format!("nightscape/v1/gw/{gateway}/{leaf}")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("malformed {kind} message: {detail}")]
    Malformed { kind: &'static str, detail: String },
    #[error("{kind} message schema {got} is not one this side reads (it reads {reads})")]
    UnknownSchema {
        kind: &'static str,
        got: u64,
        reads: u32,
    },
}

/// A message type with its name for errors.
pub trait Message: Serialize + DeserializeOwned {
    const KIND: &'static str;
}

/// Reads a message, checking its schema version before anything else.
pub fn decode<T: Message>(bytes: &[u8]) -> Result<T, WireError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| WireError::Malformed {
            kind: T::KIND,
            detail: e.to_string(),
        })?;
    match value.get("schema").and_then(|s| s.as_u64()) {
        Some(s) if s == u64::from(SCHEMA) => {}
        Some(s) => {
            return Err(WireError::UnknownSchema {
                kind: T::KIND,
                got: s,
                reads: SCHEMA,
            });
        }
        None => {
            return Err(WireError::Malformed {
                kind: T::KIND,
                detail: "no schema field".into(),
            });
        }
    }
    serde_json::from_value(value).map_err(|e| WireError::Malformed {
        kind: T::KIND,
        detail: e.to_string(),
    })
}

pub fn encode<T: Message>(message: &T) -> Vec<u8> {
    serde_json::to_vec(message).unwrap_or_default()
}

/// What plays now and why (retained; the last will says `online: false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveCue {
    pub scene: Option<String>,
    pub brightness_pct: f64,
    pub cause: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub schema: u32,
    pub gateway: String,
    pub online: bool,
    pub plan_version: Option<u64>,
    pub plan_hash: Option<String>,
    pub cue: Option<ActiveCue>,
    /// Ids of the overrides in force.
    pub overrides: Vec<String>,
    pub blackout: bool,
    pub uptime_s: u64,
    /// Whether the gateway trusts its wall clock (see DESIGN, "Time").
    pub clock_trusted: bool,
}

impl Message for State {
    const KIND: &'static str = "state";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckResult {
    Applied,
    Rejected,
    Expired,
}

/// The answer to a plan, an overrides document or a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub schema: u32,
    pub gateway: String,
    /// `plan`, `overrides` or `cmd`.
    pub about: String,
    /// The plan or document version, or the command id.
    pub id: String,
    pub result: AckResult,
    pub reason: Option<String>,
}

impl Message for Ack {
    const KIND: &'static str = "ack";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerHealth {
    pub controller: String,
    pub reachable: bool,
    pub errors: u64,
    pub last_error: Option<String>,
    pub power_w: Option<f64>,
    pub uptime_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    pub schema: u32,
    pub gateway: String,
    pub at_ms: i64,
    pub controllers: Vec<ControllerHealth>,
    pub frames: u64,
    pub late_frames: u64,
    pub max_frame_ms: f64,
    /// Estimated draw of the lit fixtures from their rated power and levels.
    pub power_w: f64,
}

impl Message for Telemetry {
    const KIND: &'static str = "telemetry";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Info,
    Warning,
    Fault,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub schema: u32,
    pub gateway: String,
    pub at_ms: i64,
    /// `cue`, `fault`, `clock`, `plan`, `command`, …
    pub kind: String,
    pub severity: Severity,
    pub controller: Option<String>,
    pub message: String,
}

impl Message for Event {
    const KIND: &'static str = "event";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Flash a fixture (or all of a controller's) so staff can find it.
    Identify {
        fixture: Option<String>,
        controller: Option<String>,
        seconds: u32,
    },
    /// Set one channel of a controller to a level, for commissioning.
    ChannelTest {
        controller: String,
        universe: Option<u16>,
        channel: u16,
        level: u8,
        seconds: u32,
    },
    /// Republish state and rewrite every controller.
    Resync,
}

/// A transient command; one that arrives after `expires_ms` is acked `expired`. (Unknown
/// fields are refused by the action, which receives every field the command does not use.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub schema: u32,
    pub id: String,
    pub expires_ms: i64,
    #[serde(flatten)]
    pub action: Action,
}

impl Message for Command {
    const KIND: &'static str = "cmd";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_and_version_errors_are_typed() {
        let text = br#"{"schema":1,"id":"c-17","expires_ms":1798000000000,"action":"identify","fixture":"pier-1-n","controller":null,"seconds":30}"#;
        let cmd: Command = decode(text).unwrap();
        assert_eq!(
            cmd.action,
            Action::Identify {
                fixture: Some("pier-1-n".into()),
                controller: None,
                seconds: 30
            }
        );
        assert_eq!(decode::<Command>(&encode(&cmd)).unwrap(), cmd);
        let v2 = br#"{"schema":2,"id":"c-18","expires_ms":0,"action":"resync"}"#;
        assert_eq!(
            decode::<Command>(v2),
            Err(WireError::UnknownSchema {
                kind: "cmd",
                got: 2,
                reads: 1
            })
        );
        assert!(matches!(
            decode::<Command>(b"{\"schema\":1,\"id\":"),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(
            decode::<Command>(br#"{"schema":1,"id":"x","expires_ms":0,"action":"self-destruct"}"#),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(
            decode::<Ack>(br#"{"id":"x"}"#),
            Err(WireError::Malformed { .. })
        ));
        assert_eq!(
            topic("gyebaek-gw", "plan"),
            "nightscape/v1/gw/gyebaek-gw/plan"
        );
    }

    #[test]
    fn state_round_trips() {
        let s = State {
            schema: SCHEMA,
            gateway: "donam-gw".into(),
            online: true,
            plan_version: Some(7),
            plan_hash: Some("ab".into()),
            cue: Some(ActiveCue {
                scene: Some("donam-warm-still".into()),
                brightness_pct: 100.0,
                cause: "rule evening".into(),
            }),
            overrides: vec![],
            blackout: false,
            uptime_s: 3600,
            clock_trusted: true,
        };
        assert_eq!(decode::<State>(&encode(&s)).unwrap(), s);
    }
}
