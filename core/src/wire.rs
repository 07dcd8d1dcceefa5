//! The MQTT messages between server and gateways (DESIGN's wire protocol, v1), each with a
//! schema version. Decoding checks the version first and returns a typed error for unknown
//! versions and malformed JSON; nothing here panics on what arrives. Ids are the core's id
//! types and closed sets are enums, so a message that decodes is one the receiver can act on.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ids::{ControllerId, FixtureId, GatewayId, SceneId};
use crate::model::{Level, StatusBit};

pub const SCHEMA: u32 = 1;

/// The leaf of a gateway's topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Plan,
    Overrides,
    Cmd,
    Ack,
    State,
    Telemetry,
    Event,
}

impl Topic {
    pub const ALL: [Topic; 7] = [
        Topic::Plan,
        Topic::Overrides,
        Topic::Cmd,
        Topic::Ack,
        Topic::State,
        Topic::Telemetry,
        Topic::Event,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Plan => "plan",
            Topic::Overrides => "overrides",
            Topic::Cmd => "cmd",
            Topic::Ack => "ack",
            Topic::State => "state",
            Topic::Telemetry => "telemetry",
            Topic::Event => "event",
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The topic of one gateway's `leaf`, under `prefix` (empty in production; tests give each
/// run its own so runs on one broker do not meet).
pub fn topic(prefix: &str, gateway: &GatewayId, leaf: Topic) -> String {
    format!("{prefix}nightscape/v1/gw/{gateway}/{leaf}")
}

/// Which gateway and leaf a topic under `prefix` is, or `None` for a topic that is not one.
pub fn parse_topic(prefix: &str, topic: &str) -> Option<(GatewayId, Topic)> {
    let rest = topic
        .strip_prefix(prefix)?
        .strip_prefix("nightscape/v1/gw/")?;
    let (gateway, leaf) = rest.split_once('/')?;
    let leaf = Topic::ALL.into_iter().find(|t| t.as_str() == leaf)?;
    Some((gateway.parse().ok()?, leaf))
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

/// Writes a message. The messages are plain structs of strings, numbers and enums, which
/// serde_json always serializes.
pub fn encode<T: Message>(message: &T) -> Vec<u8> {
    serde_json::to_vec(message).unwrap_or_default()
}

/// Why a cue is what it is, as the state message says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Cause {
    /// No rule covers the instant.
    Idle,
    Rule {
        rule: String,
    },
    /// A rule held to the curfew level.
    Curfew {
        rule: Option<String>,
    },
    Override,
    Blackout,
}

impl From<&crate::schedule::Cause> for Cause {
    fn from(cause: &crate::schedule::Cause) -> Cause {
        use crate::schedule::Cause as C;
        match cause {
            C::Idle => Cause::Idle,
            C::Rule { name, .. } => Cause::Rule {
                rule: name.to_string(),
            },
            C::Curfew { rule } => Cause::Curfew {
                rule: rule.as_ref().map(|r| r.to_string()),
            },
            C::Override => Cause::Override,
            C::Blackout => Cause::Blackout,
        }
    }
}

/// What plays now and why (retained; the last will says `online: false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveCue {
    pub scene: Option<SceneId>,
    pub brightness_pct: Level,
    pub cause: Cause,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub schema: u32,
    pub gateway: GatewayId,
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

/// What an ack answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum About {
    Plan,
    Overrides,
    Cmd,
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
    pub gateway: GatewayId,
    pub about: About,
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
    pub controller: ControllerId,
    /// The faults the controller's status register reports (empty when healthy or not read).
    pub faults: Vec<StatusBit>,
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
    pub gateway: GatewayId,
    pub at_ms: i64,
    pub controllers: Vec<ControllerHealth>,
    /// Frames sent since the last telemetry message, and how many left later than a
    /// frame period after their time.
    pub frames: u64,
    pub late_frames: u64,
    /// Frames per second measured over the same span.
    pub frame_rate_hz: f64,
    /// 99th percentile of |frame interval − period|, and the longest interval, in ms.
    pub jitter_p99_ms: f64,
    pub max_frame_ms: f64,
    /// Draw of the site's fixtures: measured by the controllers' meters where their profiles
    /// have one, estimated from rated power × level for the others.
    pub power_w: f64,
    pub power_source: PowerSource,
    pub cue: Option<ActiveCue>,
    pub clock_trusted: bool,
    /// The wall time played minus the time the gateway's clock reads (0 when trusted).
    pub clock_offset_ms: i64,
}

/// Where a power figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PowerSource {
    Measured,
    Estimated,
    /// Measured for some controllers, estimated for the rest.
    Mixed,
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

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// What plays changed.
    Cue,
    /// A controller or output fault opened or closed.
    Fault,
    /// The wall clock stepped or is not trusted.
    Clock,
    /// A plan was applied or refused.
    Plan,
    /// An overrides document was applied or refused.
    Overrides,
    /// A command was run, refused or expired.
    Command,
    /// The gateway started, stopped or lost its broker.
    Gateway,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub schema: u32,
    pub gateway: GatewayId,
    pub at_ms: i64,
    /// Unique per gateway, so the server stores an event once however often it arrives.
    pub id: String,
    pub kind: EventKind,
    pub severity: Severity,
    pub controller: Option<ControllerId>,
    pub message: String,
    /// For a cue event: what plays from `at_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cue: Option<ActiveCue>,
    /// For a fault event: which fault of its source (the controller, or the gateway) opened
    /// or closed, so the server keeps one open fault per source and kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultChange>,
}

/// A fault opening or closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultChange {
    pub code: FaultCode,
    pub open: bool,
}

/// The kinds of fault a gateway reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultCode {
    /// A Modbus controller or Art-Net node does not answer.
    Unreachable,
    /// A controller's status register reports faults.
    Status,
    /// Switched on but drawing far less power than its levels need.
    DidNotLight,
    /// DMX over IP cannot be sent.
    Send,
}

impl FaultCode {
    pub const ALL: [FaultCode; 4] = [
        FaultCode::Unreachable,
        FaultCode::Status,
        FaultCode::DidNotLight,
        FaultCode::Send,
    ];

    /// The code whose text form is `text` (as the server stores it).
    pub fn from_text(text: &str) -> Option<FaultCode> {
        FaultCode::ALL.into_iter().find(|c| c.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FaultCode::Unreachable => "unreachable",
            FaultCode::Status => "status",
            FaultCode::DidNotLight => "did-not-light",
            FaultCode::Send => "send",
        }
    }
}

impl Message for Event {
    const KIND: &'static str = "event";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Flash a fixture (or all of a controller's) so staff can find it.
    Identify {
        fixture: Option<FixtureId>,
        controller: Option<ControllerId>,
        seconds: u32,
    },
    /// Set one channel of a controller to a level, for commissioning.
    ChannelTest {
        controller: ControllerId,
        universe: Option<u16>,
        channel: u16,
        level: u8,
        seconds: u32,
    },
    /// Republish state and rewrite every controller. (Written with braces so that, like
    /// every other action, it refuses fields it does not know: serde lets a unit variant of
    /// an internally tagged enum take any.)
    Resync {},
    /// Poll the Art-Net nodes and probe the Modbus controllers of the plan; the findings
    /// come back as an event, the ack says how many answered.
    Discover {},
}

/// The longest an identify or a channel test may last. A fixture left blinking all night
/// by a typing mistake is what the bound is for, so the gateway checks it too.
pub const COMMAND_MOST_S: u32 = 3600;

impl Action {
    /// Checks the action's bounds; the server checks them before sending and the gateway
    /// again before running, so a command from anywhere else is held to the same rule.
    pub fn check(&self) -> Result<(), String> {
        let seconds = match self {
            Action::Identify {
                fixture,
                controller,
                seconds,
            } => {
                if fixture.is_none() == controller.is_none() {
                    return Err("identify: name either a fixture or a controller".into());
                }
                *seconds
            }
            Action::ChannelTest { seconds, .. } => *seconds,
            Action::Resync {} | Action::Discover {} => return Ok(()),
        };
        if (1..=COMMAND_MOST_S).contains(&seconds) {
            Ok(())
        } else {
            Err(format!(
                "seconds: give 1 to {COMMAND_MOST_S}, not {seconds}"
            ))
        }
    }
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
                fixture: Some("pier-1-n".parse().unwrap()),
                controller: None,
                seconds: 30
            }
        );
        assert_eq!(decode::<Command>(&encode(&cmd)).unwrap(), cmd);
        // Every action refuses fields it does not know, those without fields too.
        for extra in [
            br#"{"schema":1,"id":"c","expires_ms":0,"action":"resync","force":true}"#.as_slice(),
            br#"{"schema":1,"id":"c","expires_ms":0,"action":"discover","all":1}"#,
            br#"{"schema":1,"id":"c","expires_ms":0,"action":"identify","fixture":"f","controller":null,"seconds":3,"colour":"red"}"#,
        ] {
            assert!(
                matches!(decode::<Command>(extra), Err(WireError::Malformed { .. })),
                "{}",
                String::from_utf8_lossy(extra)
            );
        }
        let resync: Command =
            decode(br#"{"schema":1,"id":"c","expires_ms":0,"action":"resync"}"#).unwrap();
        assert_eq!(resync.action, Action::Resync {});
        assert_eq!(
            encode(&resync),
            br#"{"schema":1,"id":"c","expires_ms":0,"action":"resync"}"#
        );
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
        let gw: GatewayId = "gyebaek-gw".parse().unwrap();
        assert_eq!(
            topic("", &gw, Topic::Plan),
            "nightscape/v1/gw/gyebaek-gw/plan"
        );
        assert_eq!(
            parse_topic("t1/", "t1/nightscape/v1/gw/gyebaek-gw/state"),
            Some((gw.clone(), Topic::State))
        );
        assert_eq!(parse_topic("", "nightscape/v1/gw/gyebaek-gw/other"), None);
        assert_eq!(parse_topic("", "nightscape/v1/gw/Bad Id/state"), None);
        // A command naming a fixture that cannot be an id is refused as malformed.
        assert!(matches!(
            decode::<Command>(
                br#"{"schema":1,"id":"c","expires_ms":0,"action":"identify","fixture":"Pier 1","controller":null,"seconds":3}"#
            ),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn actions_are_held_to_their_bounds() {
        let identify = |seconds, fixture: bool, controller: bool| Action::Identify {
            fixture: fixture.then(|| "pier-1-n".parse().unwrap()),
            controller: controller.then(|| "pier-dmx".parse().unwrap()),
            seconds,
        };
        assert_eq!(identify(1, true, false).check(), Ok(()));
        assert_eq!(identify(3600, false, true).check(), Ok(()));
        // Seen: 999,999 s was acked applied and blinked on.
        assert_eq!(
            identify(999_999, true, false).check(),
            Err("seconds: give 1 to 3600, not 999999".into())
        );
        assert!(identify(0, true, false).check().is_err());
        assert!(identify(3601, true, false).check().is_err());
        assert!(identify(30, true, true).check().is_err());
        assert!(identify(30, false, false).check().is_err());
        let test = |seconds| Action::ChannelTest {
            controller: "pier-dmx".parse().unwrap(),
            universe: None,
            channel: 1,
            level: 255,
            seconds,
        };
        assert_eq!(test(60).check(), Ok(()));
        assert!(test(0).check().is_err());
        assert!(test(86_400).check().is_err());
        assert_eq!(Action::Resync {}.check(), Ok(()));
        assert_eq!(Action::Discover {}.check(), Ok(()));
    }

    #[test]
    fn state_round_trips() {
        let s = State {
            schema: SCHEMA,
            gateway: "donam-gw".parse().unwrap(),
            online: true,
            plan_version: Some(7),
            plan_hash: Some("ab".into()),
            cue: Some(ActiveCue {
                scene: Some("donam-warm-still".parse().unwrap()),
                brightness_pct: Level::FULL,
                cause: Cause::Rule {
                    rule: "evening".into(),
                },
            }),
            overrides: vec![],
            blackout: false,
            uptime_s: 3600,
            clock_trusted: true,
        };
        let bytes = encode(&s);
        assert_eq!(decode::<State>(&bytes).unwrap(), s);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains(r#""cue":{"scene":"donam-warm-still","brightness_pct":100.0,"cause":{"kind":"rule","rule":"evening"}}"#),
            "{text}"
        );
        // A level over 100 % is refused with the reason.
        let over = text.replace("100.0", "140.0");
        let err = decode::<State>(over.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("140 is not a level"), "{err}");
    }
}
