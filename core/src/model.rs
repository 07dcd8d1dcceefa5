//! The domain model: sites, gateways, controllers, fixtures, groups, controller profiles and
//! the zone table, as the rest of Nightscape uses them. Every value here has been checked;
//! the show files are lowered into these types by [`crate::show`].

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use crate::addr::{ArtNetPortAddress, DmxAddress, RegisterAddr, SacnUniverse};

pub use crate::ids::{
    ControllerId, FixtureId, GatewayId, GroupId, ProfileId, Role, SiteId, is_slug,
};

/// A name in Korean, with English where one is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub ko: String,
    pub en: Option<String>,
}

/// An output level as a fraction of full, 0.0–1.0. In text and JSON it is a percentage:
/// `75 %` prints, `75`, `75%` and `75 %` parse, and serde writes the number `75.0`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Level(f64);

/// A percentage outside 0–100 (or not a number).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("{0} is not a level; write a percentage from 0 to 100")]
pub struct LevelError(pub f64);

impl Level {
    pub const FULL: Level = Level(1.0);
    pub const ZERO: Level = Level(0.0);

    pub fn from_pct(pct: f64) -> Result<Self, LevelError> {
        if (0.0..=100.0).contains(&pct) {
            Ok(Level(pct / 100.0))
        } else {
            Err(LevelError(pct))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }

    pub fn pct(self) -> f64 {
        self.0 * 100.0
    }
}

impl TryFrom<f64> for Level {
    type Error = LevelError;
    fn try_from(pct: f64) -> Result<Self, LevelError> {
        Level::from_pct(pct)
    }
}

impl From<Level> for f64 {
    fn from(level: Level) -> f64 {
        level.pct()
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole percentages print without decimals; others with what they need, up to 2.
        let pct = (self.pct() * 100.0).round() / 100.0;
        write!(f, "{pct} %")
    }
}

impl std::str::FromStr for Level {
    type Err = LevelError;
    fn from_str(text: &str) -> Result<Self, LevelError> {
        let number = text.trim().trim_end_matches('%').trim_end();
        let pct: f64 = number.parse().map_err(|_| LevelError(f64::NAN))?;
        Level::from_pct(pct)
    }
}

/// A local time of day in minutes after midnight, 0–1439. In text and JSON it is `HH:MM`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct TimeOfDay(u16);

/// Text that is not a time of day.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a time of day; write HH:MM on a 24-hour clock, e.g. \"23:30\"")]
pub struct TimeOfDayError(pub String);

impl TimeOfDay {
    pub const MIDNIGHT: TimeOfDay = TimeOfDay(0);

    /// Minutes after midnight, 0–1439.
    pub fn from_minutes(minutes: u16) -> Option<Self> {
        (minutes < 24 * 60).then_some(TimeOfDay(minutes))
    }

    /// Parses `HH:MM` (24-hour clock; `24:00` is not a time of day, write `00:00`).
    pub fn parse(text: &str) -> Result<Self, TimeOfDayError> {
        let bad = || TimeOfDayError(text.to_owned());
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if h < 24 && m < 60 {
            Ok(TimeOfDay(h * 60 + m))
        } else {
            Err(bad())
        }
    }

    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl std::str::FromStr for TimeOfDay {
    type Err = TimeOfDayError;
    fn from_str(text: &str) -> Result<Self, TimeOfDayError> {
        TimeOfDay::parse(text)
    }
}

impl TryFrom<String> for TimeOfDay {
    type Error = TimeOfDayError;
    fn try_from(text: String) -> Result<Self, TimeOfDayError> {
        TimeOfDay::parse(&text)
    }
}

impl From<TimeOfDay> for String {
    fn from(t: TimeOfDay) -> String {
        t.to_string()
    }
}

/// When a site must be at its curfew level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curfew {
    None,
    At(TimeOfDay),
}

impl Curfew {
    pub fn parse(text: &str) -> Option<Self> {
        if text == "none" {
            Some(Curfew::None)
        } else {
            TimeOfDay::parse(text).ok().map(Curfew::At)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiteKind {
    Building,
    Bridge,
    Heritage,
    Park,
    RoadStructure,
}

impl SiteKind {
    /// Sites that drivers see: signal look-alikes are forbidden there unless the site says
    /// otherwise, and flashing is slower.
    pub fn faces_traffic(self) -> bool {
        matches!(self, SiteKind::Bridge | SiteKind::RoadStructure)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

/// A Korean lighting-environment management zone (조명환경관리구역), 1–4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LightZone(u8);

impl LightZone {
    pub fn new(zone: i64) -> Option<Self> {
        u8::try_from(zone)
            .ok()
            .filter(|z| (1..=4).contains(z))
            .map(LightZone)
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// Colours that may be mistaken for traffic signals. Each is a hue band with a saturation
/// floor, so pale tints of the same hue stay allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForbiddenColour {
    SignalRed,
    SignalAmber,
    SignalGreen,
}

impl ForbiddenColour {
    pub const ALL: [ForbiddenColour; 3] = [
        ForbiddenColour::SignalRed,
        ForbiddenColour::SignalAmber,
        ForbiddenColour::SignalGreen,
    ];

    /// Hue band in degrees `(from, to)`, wrapping past 360, and the lowest HSV saturation
    /// that counts as a look-alike.
    pub fn hue_band(self) -> ((f64, f64), f64) {
        match self {
            ForbiddenColour::SignalRed => ((345.0, 15.0), 0.5),
            ForbiddenColour::SignalAmber => ((20.0, 50.0), 0.5),
            ForbiddenColour::SignalGreen => ((120.0, 190.0), 0.5),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_output: Level,
    /// Allowed whites `(lowest, highest)` in kelvin; when set, only whites may be shown.
    pub cct_k: Option<(f64, f64)>,
    pub saturation_max: f64,
    pub forbidden: Vec<ForbiddenColour>,
    pub max_flash_hz: f64,
    pub curfew: Curfew,
    pub curfew_level: Level,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TariffBand {
    pub from: TimeOfDay,
    pub to: TimeOfDay,
    pub per_kwh: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tariff {
    pub currency: String,
    pub per_kwh: f64,
    pub bands: Vec<TariffBand>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    pub id: GatewayId,
    pub name: Option<Name>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FadeBy {
    Gateway,
    Controller,
}

/// What a DMX controller shows when its data stops (2.5 s without a frame or a live source).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnLoss {
    /// Keeps the last look (the usual setting: a network fault does not darken a site).
    #[default]
    Hold,
    Dark,
}

/// How a gateway reaches a controller, and which universes or registers it carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Modbus {
        host: String,
        port: u16,
        unit: u8,
        profile: ProfileId,
        fade_by: FadeBy,
    },
    ArtNet {
        ip: IpAddr,
        first: ArtNetPortAddress,
        count: u16,
        on_loss: OnLoss,
    },
    Sacn {
        first: SacnUniverse,
        count: u16,
        priority: u8,
        unicast: Option<IpAddr>,
        on_loss: OnLoss,
    },
    DmxMqtt {
        first: u16,
        count: u16,
    },
}

impl Output {
    pub fn protocol(&self) -> &'static str {
        match self {
            Output::Modbus { .. } => "modbus",
            Output::ArtNet { .. } => "artnet",
            Output::Sacn { .. } => "sacn",
            Output::DmxMqtt { .. } => "dmx-mqtt",
        }
    }

    /// The universes this output carries, in order; empty for Modbus.
    pub fn universes(&self) -> Vec<Universe> {
        match *self {
            Output::Modbus { .. } => Vec::new(),
            Output::ArtNet { first, count, .. } => (0..count)
                .filter_map(|i| ArtNetPortAddress::new(i64::from(first.get() + i)).ok())
                .map(Universe::ArtNet)
                .collect(),
            Output::Sacn { first, count, .. } => (0..count)
                .filter_map(|i| SacnUniverse::new(i64::from(first.get()) + i64::from(i)).ok())
                .map(Universe::Sacn)
                .collect(),
            Output::DmxMqtt { first, count } => {
                (0..count).map(|i| Universe::DmxMqtt(first + i)).collect()
            }
        }
    }
}

/// A DMX universe in the numbering of the protocol that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Universe {
    Sacn(SacnUniverse),
    ArtNet(ArtNetPortAddress),
    DmxMqtt(u16),
}

impl Universe {
    /// Its number as protocols and commands name it: the sACN universe, the Art-Net
    /// port-address (net × 256 + sub-net × 16 + universe), the DMX-over-MQTT universe.
    pub fn number(self) -> u16 {
        match self {
            Universe::Sacn(u) => u.get(),
            Universe::ArtNet(u) => u.get(),
            Universe::DmxMqtt(u) => u,
        }
    }

    /// The next universe of the same protocol, if there is one.
    pub fn next(self) -> Option<Universe> {
        match self {
            Universe::Sacn(u) => SacnUniverse::new(i64::from(u.get()) + 1)
                .ok()
                .map(Universe::Sacn),
            Universe::ArtNet(u) => ArtNetPortAddress::new(i64::from(u.get()) + 1)
                .ok()
                .map(Universe::ArtNet),
            Universe::DmxMqtt(u) => u.checked_add(1).map(Universe::DmxMqtt),
        }
    }
}

impl fmt::Display for Universe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Universe::Sacn(u) => write!(f, "{}", u.get()),
            Universe::ArtNet(u) => write!(f, "{u}"),
            Universe::DmxMqtt(u) => write!(f, "{u}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Controller {
    pub id: ControllerId,
    pub gateway: GatewayId,
    pub name: Option<String>,
    pub output: Output,
}

/// One light-emitting channel kind, in the order a fixture expects its channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Emitter {
    Intensity,
    Red,
    Green,
    Blue,
    White,
    Amber,
    Warm,
    Cool,
}

impl Emitter {
    pub fn letter(self) -> char {
        match self {
            Emitter::Intensity => 'i',
            Emitter::Red => 'r',
            Emitter::Green => 'g',
            Emitter::Blue => 'b',
            Emitter::White => 'w',
            Emitter::Amber => 'a',
            Emitter::Warm => 'w',
            Emitter::Cool => 'c',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelKind {
    Rgb,
    Rgbw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixtureKind {
    Dimmer,
    Cct,
    Rgb,
    Rgbw,
    Rgba,
    PixelStrip { pixel: PixelKind, pixels: u32 },
}

impl FixtureKind {
    /// The emitters of one pixel (one cell for non-strip fixtures), in the default order.
    pub fn default_order(self) -> Vec<Emitter> {
        use Emitter::*;
        match self {
            FixtureKind::Dimmer => vec![Intensity],
            FixtureKind::Cct => vec![Warm, Cool],
            FixtureKind::Rgb
            | FixtureKind::PixelStrip {
                pixel: PixelKind::Rgb,
                ..
            } => vec![Red, Green, Blue],
            FixtureKind::Rgbw
            | FixtureKind::PixelStrip {
                pixel: PixelKind::Rgbw,
                ..
            } => vec![Red, Green, Blue, White],
            FixtureKind::Rgba => vec![Red, Green, Blue, Amber],
        }
    }

    pub fn pixels(self) -> u32 {
        match self {
            FixtureKind::PixelStrip { pixels, .. } => pixels,
            _ => 1,
        }
    }

    /// Whether the fixture has an emitter of its own for white (a dimmer's lamp, CCT's two
    /// whites, the W of RGBW); the others mix white from colour.
    pub fn has_white(self) -> bool {
        self.default_order()
            .iter()
            .any(|e| matches!(e, Emitter::Intensity | Emitter::White | Emitter::Warm))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    Eight,
    Sixteen,
}

impl Bits {
    pub fn channels(self) -> u16 {
        match self {
            Bits::Eight => 1,
            Bits::Sixteen => 2,
        }
    }
}

/// Where a fixture's channels start on its controller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Patch {
    Dmx {
        universe: Universe,
        address: DmxAddress,
        /// A fixed pixel count per universe, when the controller is set up that way.
        pixels_per_universe: Option<u16>,
    },
    Modbus {
        /// 1-based channel of the controller, mapped to registers by its profile.
        channel: u16,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Point([f64; 2]),
    Line(Vec<[f64; 2]>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    pub id: FixtureId,
    pub name: Option<String>,
    pub kind: FixtureKind,
    pub order: Vec<Emitter>,
    pub bits: Bits,
    pub gamma: f64,
    pub controller: ControllerId,
    pub patch: Patch,
    pub shape: Shape,
    pub power_w: f64,
    pub luminance_cd_m2: Option<f64>,
    /// `(warm, cool)` kelvin of a CCT fixture; `(k, k)` for a fixed white.
    pub white_k: Option<(f64, f64)>,
}

/// One run of a fixture's channels inside one universe: `slots` are 1-based DMX slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmxRun {
    pub universe: Universe,
    pub slots: Range<u16>,
    /// Index of the first pixel in this run and how many pixels it holds.
    pub first_pixel: u32,
    pub pixels: u32,
}

/// Why a fixture's DMX channels cannot be laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// A non-strip fixture's channels run past slot 512.
    Overrun { last_slot: u32 },
    /// With a fixed pixels-per-universe, pixel `pixel` would straddle two universes.
    PixelSplit { pixel: u32, universe: Universe },
    /// A strip needs more universes than the protocol has after this one.
    NoNextUniverse { after: Universe },
}

impl Fixture {
    /// Channels one pixel takes (16-bit doubles them).
    pub fn channels_per_pixel(&self) -> u16 {
        self.order.len() as u16 * self.bits.channels()
    }

    /// All channels the fixture takes.
    pub fn channel_count(&self) -> u32 {
        u32::from(self.channels_per_pixel()) * self.kind.pixels()
    }

    /// Lays a DMX-patched fixture's channels into universes. A strip fills each universe
    /// with whole pixels (170 RGB, 128 RGBW at 8 bits) and continues at slot 1 of the next;
    /// a pixel is never split. Returns an empty list for Modbus fixtures.
    pub fn dmx_runs(&self) -> Result<Vec<DmxRun>, LayoutError> {
        let Patch::Dmx {
            universe,
            address,
            pixels_per_universe,
        } = self.patch
        else {
            return Ok(Vec::new());
        };
        let per_pixel = u32::from(self.channels_per_pixel());
        let is_strip = matches!(self.kind, FixtureKind::PixelStrip { .. });
        let total = self.kind.pixels();
        let mut runs = Vec::new();
        let mut universe = universe;
        let mut start = u32::from(address.get());
        let mut done = 0;
        while done < total {
            let room = (u32::from(DmxAddress::SLOTS) + 1 - start) / per_pixel;
            let wanted = match pixels_per_universe {
                Some(fixed) if is_strip => {
                    let fixed = u32::from(fixed);
                    if fixed > room {
                        return Err(LayoutError::PixelSplit {
                            pixel: done + room + 1,
                            universe,
                        });
                    }
                    fixed
                }
                _ => room,
            };
            let here = wanted.min(total - done);
            if here == 0 || (!is_strip && here < total) {
                return Err(LayoutError::Overrun {
                    last_slot: start + per_pixel * total - 1,
                });
            }
            let end = start + here * per_pixel;
            runs.push(DmxRun {
                universe,
                slots: start as u16..end as u16,
                first_pixel: done,
                pixels: here,
            });
            done += here;
            if done < total {
                universe = universe
                    .next()
                    .ok_or(LayoutError::NoNextUniverse { after: universe })?;
                start = 1;
            }
        }
        Ok(runs)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: GroupId,
    pub role: Option<Role>,
    pub name: Option<Name>,
    pub fixtures: Vec<FixtureId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub id: SiteId,
    pub name: Name,
    pub kind: SiteKind,
    pub location: LatLon,
    pub time_zone: jiff::tz::TimeZone,
    pub zone: LightZone,
    pub limits: Limits,
    pub tariff: Option<Tariff>,
    pub gateways: Vec<Gateway>,
    pub controllers: Vec<Controller>,
    pub fixtures: Vec<Fixture>,
    pub groups: Vec<Group>,
}

impl Site {
    pub fn fixture(&self, id: &FixtureId) -> Option<&Fixture> {
        self.fixtures.iter().find(|f| &f.id == id)
    }

    pub fn controller(&self, id: &ControllerId) -> Option<&Controller> {
        self.controllers.iter().find(|c| &c.id == id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pack {
    HighFirst,
    LowFirst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordOrder {
    Big,
    Little,
}

/// Which part of a register a channel's value occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RegisterPart {
    Whole,
    High,
    Low,
}

/// Where one channel's value lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegisterSlot {
    pub register: RegisterAddr,
    pub part: RegisterPart,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Levels {
    pub start: RegisterAddr,
    pub channels: u16,
    pub bits: Bits,
    /// Register value at full output.
    pub max: u32,
    pub pack: Option<Pack>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WritePolicy {
    pub max_registers: u16,
    pub fc16: bool,
    pub min_interval: Duration,
    pub refresh: Option<Duration>,
    pub serialize_host: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enable {
    pub register: RegisterAddr,
    pub on: u16,
    pub off: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Master {
    pub register: RegisterAddr,
    pub max: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fade {
    pub register: RegisterAddr,
    pub unit: Duration,
    pub max: u16,
}

/// A fault a controller reports in a bit of its status register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusBit {
    OutputFault,
    OverTemperature,
    LampFault,
    OutputShort,
    /// A bit the device uses for something Nightscape does not name.
    Unused,
}

impl StatusBit {
    pub fn name(self) -> &'static str {
        match self {
            StatusBit::OutputFault => "output-fault",
            StatusBit::OverTemperature => "over-temperature",
            StatusBit::LampFault => "lamp-fault",
            StatusBit::OutputShort => "output-short",
            StatusBit::Unused => "unused",
        }
    }
}

/// The input register that says how the device is: 0 is healthy; `bits[k]` names bit `k`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRegister {
    pub register: RegisterAddr,
    pub bits: Vec<StatusBit>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Power {
    pub register: RegisterAddr,
    pub words: u8,
    pub watts_per_unit: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Uptime {
    pub register: RegisterAddr,
    pub words: u8,
    pub seconds_per_unit: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Temperature {
    pub register: RegisterAddr,
    /// Degrees Celsius per unit of the signed raw value.
    pub degrees_per_unit: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readback {
    pub start: RegisterAddr,
    pub table: crate::addr::RegisterTable,
}

/// How a Modbus device maps channels to registers and what else it offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub id: ProfileId,
    pub name: String,
    pub vendor: Option<String>,
    pub source: Option<String>,
    pub levels: Levels,
    pub write: WritePolicy,
    pub word_order: WordOrder,
    pub enable: Option<Enable>,
    pub master: Option<Master>,
    pub fade: Option<Fade>,
    pub status: Option<StatusRegister>,
    pub power: Option<Power>,
    pub uptime: Option<Uptime>,
    pub temperature: Option<Temperature>,
    /// Input register of the firmware version (major high byte, minor low byte).
    pub firmware: Option<RegisterAddr>,
    /// First input register of the failed-output bitmap (bit k of register n: channel
    /// 16·n + k + 1).
    pub lamp_faults: Option<RegisterAddr>,
    pub readback: Option<Readback>,
}

impl Profile {
    /// Where 1-based channel `channel` lands, or `None` past the device's channels.
    pub fn channel_slot(&self, channel: u16) -> Option<RegisterSlot> {
        if channel == 0 || channel > self.levels.channels {
            return None;
        }
        let index = u32::from(channel - 1);
        let (offset, part) = match self.levels.pack {
            None => (index, RegisterPart::Whole),
            Some(pack) => {
                let first = index % 2 == 0;
                let part = match (pack, first) {
                    (Pack::HighFirst, true) | (Pack::LowFirst, false) => RegisterPart::High,
                    _ => RegisterPart::Low,
                };
                (index / 2, part)
            }
        };
        let register = u32::from(self.levels.start.get()) + offset;
        RegisterAddr::new(i64::from(register))
            .ok()
            .map(|register| RegisterSlot { register, part })
    }

    /// Holding registers the channel levels occupy, as 0-based addresses (may run past
    /// 65535 in a broken profile; the loader reports that).
    pub fn level_registers(&self) -> Range<u32> {
        let count = match self.levels.pack {
            None => u32::from(self.levels.channels),
            Some(_) => u32::from(self.levels.channels).div_ceil(2),
        };
        let start = u32::from(self.levels.start.get());
        start..start + count
    }
}

/// What a lighting-environment zone allows (decorative lighting).
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneRule {
    pub zone: LightZone,
    pub name: Name,
    pub avg_cd_m2: f64,
    pub max_cd_m2: f64,
    pub curfew: Curfew,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ZoneTable {
    pub source: String,
    pub applies_after_sunset: Duration,
    pub applies_before_sunrise: Duration,
    pub zones: Vec<ZoneRule>,
}

impl ZoneTable {
    pub fn rule(&self, zone: LightZone) -> Option<&ZoneRule> {
        self.zones.iter().find(|z| z.zone == zone)
    }
}
