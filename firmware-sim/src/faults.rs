//! Faults put on simulated controllers, by the API or a scenario file, so the gateway's
//! handling of the field's failures can be tested: a controller offline, slow, losing
//! requests, answering exceptions, a lamp that fails, over-temperature, a reboot, a power
//! meter that drifts.
//!
//! A scenario file is TOML:
//!
//! ```toml
//! [[faults]]
//! controller = "donam-dim-1"
//! fault = "latency"
//! ms = 300
//!
//! [[faults]]
//! controller = "donam-path"
//! fault = "lamp-failure"
//! fixture = "path-3"
//!
//! [[faults]]
//! controller = "donam-dmx"
//! fault = "reboot"
//! ms = 2000                  # two seconds without power
//! ```

use nightscape_core::{ControllerId, FixtureId};
use serde::{Deserialize, Serialize};

/// One fault on one controller.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "FaultFile")]
pub struct Fault {
    pub controller: ControllerId,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum FaultKind {
    /// Takes nothing and answers nothing, as a controller without power or network.
    Offline,
    /// Every Modbus answer comes this late.
    Latency {
        ms: u64,
    },
    /// This share (0–1) of requests and packets is lost without an answer.
    Drop {
        share: f64,
    },
    /// This share (0–1) of Modbus requests is answered with exception `code`.
    Exception {
        code: u8,
        share: f64,
    },
    /// The fixture stays dark; a Modbus controller sets its lamp-fault bit.
    LampFailure {
        fixture: FixtureId,
    },
    /// A Modbus controller sets its over-temperature bit.
    OverTemperature,
    /// A Modbus controller's outputs short or fail: dark, with the profile's bit set.
    OutputShort,
    OutputFault,
    /// Power lost for `down_ms` (0: at once) and back: the controller answers nothing
    /// meanwhile, then its uptime starts again and its levels are gone.
    Reboot {
        down_ms: u64,
    },
    /// The power meter reads this factor of the true draw.
    PowerDrift {
        factor: f64,
    },
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum FaultName {
    Offline,
    Latency,
    Drop,
    Exception,
    LampFailure,
    OverTemperature,
    OutputShort,
    OutputFault,
    Reboot,
    PowerDrift,
}

impl FaultName {
    fn as_str(self) -> &'static str {
        match self {
            FaultName::Offline => "offline",
            FaultName::Latency => "latency",
            FaultName::Drop => "drop",
            FaultName::Exception => "exception",
            FaultName::LampFailure => "lamp-failure",
            FaultName::OverTemperature => "over-temperature",
            FaultName::OutputShort => "output-short",
            FaultName::OutputFault => "output-fault",
            FaultName::Reboot => "reboot",
            FaultName::PowerDrift => "power-drift",
        }
    }
}

/// A fault as written: every key a fault may take, checked against the kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultFile {
    controller: ControllerId,
    fault: FaultName,
    ms: Option<u64>,
    share: Option<f64>,
    code: Option<u8>,
    fixture: Option<FixtureId>,
    factor: Option<f64>,
}

impl TryFrom<FaultFile> for Fault {
    type Error = String;

    fn try_from(f: FaultFile) -> Result<Fault, String> {
        let need = |what: &str| format!("fault `{}` needs `{what}`", f.fault.as_str());
        let given = [
            ("ms", f.ms.is_some()),
            ("share", f.share.is_some()),
            ("code", f.code.is_some()),
            ("fixture", f.fixture.is_some()),
            ("factor", f.factor.is_some()),
        ];
        let kind = match f.fault {
            FaultName::Offline => FaultKind::Offline,
            FaultName::Latency => FaultKind::Latency {
                ms: f.ms.ok_or_else(|| need("ms"))?,
            },
            FaultName::Drop => FaultKind::Drop {
                share: f.share.ok_or_else(|| need("share"))?,
            },
            FaultName::Exception => FaultKind::Exception {
                code: f.code.ok_or_else(|| need("code"))?,
                share: f.share.unwrap_or(1.0),
            },
            FaultName::LampFailure => FaultKind::LampFailure {
                fixture: f.fixture.clone().ok_or_else(|| need("fixture"))?,
            },
            FaultName::OverTemperature => FaultKind::OverTemperature,
            FaultName::OutputShort => FaultKind::OutputShort,
            FaultName::OutputFault => FaultKind::OutputFault,
            FaultName::Reboot => FaultKind::Reboot {
                down_ms: f.ms.unwrap_or(0),
            },
            FaultName::PowerDrift => FaultKind::PowerDrift {
                factor: f.factor.ok_or_else(|| need("factor"))?,
            },
        };
        let takes: &[&str] = match kind {
            FaultKind::Latency { .. } | FaultKind::Reboot { .. } => &["ms"],
            FaultKind::Drop { .. } => &["share"],
            FaultKind::Exception { .. } => &["code", "share"],
            FaultKind::LampFailure { .. } => &["fixture"],
            FaultKind::PowerDrift { .. } => &["factor"],
            _ => &[],
        };
        if let Some((key, _)) = given.iter().find(|(k, g)| *g && !takes.contains(k)) {
            return Err(format!(
                "`{key}` does not go with fault `{}`",
                f.fault.as_str()
            ));
        }
        Ok(Fault {
            controller: f.controller,
            kind,
        })
    }
}

/// A file of faults to apply together.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub faults: Vec<Fault>,
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

/// The faults a controller has now (a reboot is done at once, not kept).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ActiveFaults {
    pub offline: bool,
    pub latency_ms: u64,
    pub drop_share: f64,
    pub exception: Option<(u8, f64)>,
    pub lamp_failed: Vec<FixtureId>,
    pub over_temperature: bool,
    pub output_short: bool,
    pub output_fault: bool,
    pub power_drift: Option<f64>,
    /// Wall time until which a rebooting controller is without power.
    pub down_until_ms: Option<i64>,
}

impl ActiveFaults {
    pub fn is_clear(&self) -> bool {
        *self == ActiveFaults::default()
    }
}

/// A small, fast generator for shares of dropped requests (reproducible per controller).
#[derive(Debug)]
pub struct Dice(std::sync::atomic::AtomicU64);

impl Dice {
    pub fn new(seed: u64) -> Dice {
        Dice(std::sync::atomic::AtomicU64::new(seed | 1))
    }

    /// True with probability `share`.
    pub fn roll(&self, share: f64) -> bool {
        if share <= 0.0 {
            return false;
        }
        if share >= 1.0 {
            return true;
        }
        let mut x = self.0.load(std::sync::atomic::Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, std::sync::atomic::Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64 <= share
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_files_read_every_kind_and_refuse_unknown_ones() {
        let text = r#"
[[faults]]
controller = "a"
fault = "latency"
ms = 300

[[faults]]
controller = "b"
fault = "lamp-failure"
fixture = "f-3"

[[faults]]
controller = "c"
fault = "exception"
code = 6
share = 0.5
"#;
        let s = Scenario::parse(text).unwrap();
        assert_eq!(s.faults.len(), 3);
        assert_eq!(s.faults[0].kind, FaultKind::Latency { ms: 300 });
        assert!(Scenario::parse("[[faults]]\ncontroller = \"a\"\nfault = \"gremlins\"\n").is_err());
        assert!(
            Scenario::parse("[[faults]]\ncontroller = \"A B\"\nfault = \"offline\"\n").is_err()
        );
        let wrong =
            Scenario::parse("[[faults]]\ncontroller = \"a\"\nfault = \"offline\"\nms = 3\n");
        assert!(
            wrong
                .unwrap_err()
                .contains("`ms` does not go with fault `offline`")
        );
        let missing = Scenario::parse("[[faults]]\ncontroller = \"a\"\nfault = \"latency\"\n");
        assert!(missing.unwrap_err().contains("needs `ms`"));
        let dice = Dice::new(7);
        let hits = (0..10_000).filter(|_| dice.roll(0.25)).count();
        assert!((2200..2800).contains(&hits), "{hits}");
    }
}
