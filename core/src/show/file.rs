//! The show files as written by people: serde types that mirror the TOML one to one.
//!
//! These types are only the edge. Numbers stay wide (`i64`, `f64`) and references stay
//! strings, so that range and reference problems are reported by the lowering step with a
//! field path and a clear message instead of stopping the parse. The JSON Schemas in
//! `scenes/schema/` are generated from these types for editor completion.
//!
//! Unknown keys are not rejected by serde (that would stop at the first); the loader collects
//! every one of them and reports each as `unknown-key`. The schemas still forbid them.

use schemars::JsonSchema;
use serde::Deserialize;

/// `{ ko = "계백교", en = "Gyebaek Bridge" }`: Korean first, English for visitors and logs.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct NameFile {
    pub ko: String,
    pub en: Option<String>,
}

/// `sites/<site-id>/site.toml`: one site, its gateways, controllers, fixtures and groups.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "Nightscape site")]
pub struct SiteFile {
    // Required keys are read as options so that a missing one is reported with every other
    // problem; the schema marks them required.
    #[schemars(required)]
    pub name: Option<NameFile>,
    #[schemars(with = "SiteKindFile", required)]
    pub kind: Option<String>,
    #[schemars(required)]
    pub location: Option<LocationFile>,
    /// IANA time zone the site's schedule runs in, e.g. `Asia/Seoul`.
    #[schemars(required)]
    pub time_zone: Option<String>,
    /// Korean lighting-environment management zone, 1 (darkest) to 4 (commercial).
    #[schemars(required)]
    pub zone: Option<i64>,
    #[serde(default)]
    pub limits: LimitsFile,
    pub tariff: Option<TariffFile>,
    #[serde(default)]
    pub gateways: Vec<GatewayFile>,
    #[serde(default)]
    pub controllers: Vec<ControllerFile>,
    #[serde(default)]
    pub fixtures: Vec<FixtureFile>,
    #[serde(default)]
    pub groups: Vec<GroupFile>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SiteKindFile {
    Building,
    Bridge,
    Heritage,
    Park,
    RoadStructure,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct LocationFile {
    /// Degrees north, WGS 84.
    pub lat: f64,
    /// Degrees east, WGS 84.
    pub lon: f64,
}

/// What the site may show. Missing values come from the site's zone and kind.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct LimitsFile {
    /// Highest output any channel may reach, in percent of full.
    pub max_output_pct: Option<f64>,
    /// Allowed white range `[lowest, highest]` in kelvin; the site then shows whites only.
    pub cct_k: Option<[f64; 2]>,
    /// Highest colour saturation, 0 (white only) to 1 (any colour).
    pub saturation_max: Option<f64>,
    /// Colours that must not be shown, e.g. traffic-signal look-alikes near roads.
    pub forbidden_colours: Option<Vec<ForbiddenColourFile>>,
    /// Fastest allowed change of brightness (flash, strobe, chase) in hertz.
    pub max_flash_hz: Option<f64>,
    /// Local time after which the site goes to its curfew level: `"23:00"`, or `"none"`.
    pub curfew: Option<String>,
    /// Output during curfew, in percent of full (default 0).
    pub curfew_level_pct: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
// The variants are the file's own words (`signal-red`, …).
#[allow(clippy::enum_variant_names)]
pub enum ForbiddenColourFile {
    SignalRed,
    SignalAmber,
    SignalGreen,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TariffFile {
    /// ISO 4217 code; `KRW` when left out.
    pub currency: Option<String>,
    /// Energy price per kWh outside any band.
    pub per_kwh: f64,
    /// Time-of-use bands, local time; a band may run over midnight.
    #[serde(default)]
    pub bands: Vec<TariffBandFile>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TariffBandFile {
    pub from: String,
    pub to: String,
    pub per_kwh: f64,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct GatewayFile {
    pub id: String,
    pub name: Option<NameFile>,
}

/// A field controller. Exactly one of `modbus`, `artnet`, `sacn`, `dmx_mqtt` says how the
/// gateway reaches it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ControllerFile {
    pub id: String,
    pub gateway: String,
    pub name: Option<String>,
    pub modbus: Option<ModbusFile>,
    pub artnet: Option<ArtNetFile>,
    pub sacn: Option<SacnFile>,
    pub dmx_mqtt: Option<DmxMqttFile>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ModbusFile {
    /// IP address or host name of the device (or of its Modbus-to-serial bridge).
    pub host: String,
    /// TCP port; 502 when left out.
    pub port: Option<i64>,
    /// Unit (slave) id, 1–247; 1 when left out.
    pub unit: Option<i64>,
    /// Controller profile id (a file in `profiles/`).
    pub profile: String,
    /// Who fades between cues: `gateway` (default) or the device's own fade register.
    pub fade_by: Option<FadeByFile>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FadeByFile {
    Gateway,
    Controller,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ArtNetFile {
    /// The node's IP address (unicast, as Art-Net 4 asks).
    pub ip: String,
    /// First port-address, `net:subnet:universe` or a number 0–32767.
    pub port_address: UniverseFile,
    /// How many consecutive port-addresses the node takes; 1 when left out.
    pub universes: Option<i64>,
    /// What the node shows when frames stop for 2.5 s: `hold` (default) or `dark`.
    pub on_loss: Option<OnLossFile>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OnLossFile {
    Hold,
    Dark,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SacnFile {
    /// First universe, 1–63999.
    pub universe: i64,
    /// How many consecutive universes the controller takes; 1 when left out.
    pub universes: Option<i64>,
    /// Source priority 0–200; 100 when left out.
    pub priority: Option<i64>,
    /// Send to this IP address instead of the universe's multicast group.
    pub unicast: Option<String>,
    /// What the receiver shows when every source is lost for 2.5 s: `hold` (default) keeps
    /// the last look, `dark` goes to 0.
    pub on_loss: Option<OnLossFile>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DmxMqttFile {
    /// First universe number in the topic `nightscape/v1/dmx/{controller}/{universe}`, 1–64.
    pub universe: Option<i64>,
    /// How many universes; 1 when left out.
    pub universes: Option<i64>,
}

/// A universe as written in a file: a number, or `"net:subnet:universe"` for Art-Net.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum UniverseFile {
    Number(i64),
    Text(String),
}

/// A Modbus register as written in a file: a 0-based number, or text such as `"0x2000"`
/// or `"40001"` (1-based holding-register notation).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RegisterFile {
    Number(i64),
    Text(String),
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FixtureTypeFile {
    Dimmer,
    Cct,
    Rgb,
    Rgbw,
    Rgba,
    PixelStrip,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PixelFile {
    Rgb,
    Rgbw,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FixtureFile {
    // Required keys are options here so that a missing one is reported with the others
    // instead of stopping the file; the schema still marks them required.
    #[schemars(required)]
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "type")]
    #[schemars(with = "FixtureTypeFile", required)]
    pub kind: Option<String>,
    /// Colour of each pixel of a `pixel-strip`: `rgb` (default) or `rgbw`.
    pub pixel: Option<PixelFile>,
    /// Channel order as letters: `r g b w a` for colour, `w c` (warm, cool) for `cct`.
    pub order: Option<String>,
    /// 8 (default) or 16 bits per colour; 16-bit takes a coarse and a fine channel.
    pub bits: Option<i64>,
    /// How the fixture turns a channel value into light: light ∝ value^gamma. 2.2 when left
    /// out (fixtures with a perceptual dimming curve); 1 for drivers that are linear.
    pub gamma: Option<f64>,
    #[schemars(required)]
    pub controller: Option<String>,
    /// DMX universe (sACN number, Art-Net `net:subnet:universe`, DMX-over-MQTT number).
    pub universe: Option<UniverseFile>,
    /// First DMX slot, 1–512.
    pub address: Option<i64>,
    /// First channel on a Modbus controller, 1-based, mapped to registers by its profile.
    pub channel: Option<i64>,
    /// Number of pixels of a `pixel-strip`.
    pub pixels: Option<i64>,
    /// Pixels the controller puts in each universe, when it is configured to a fixed number.
    pub pixels_per_universe: Option<i64>,
    /// Position of a point fixture `[x, y]` in metres in the site's drawing plane.
    pub at: Option<[f64; 2]>,
    /// Polyline `[[x, y], …]` in metres along which a strip's pixels are spread evenly.
    pub line: Option<Vec<[f64; 2]>>,
    /// Rated electrical power at full output, in watts.
    #[schemars(required)]
    pub power_w: Option<f64>,
    /// Measured luminance of the lit surface at full output (commissioning), in cd/m².
    pub luminance_cd_m2: Option<f64>,
    /// `cct`: warm and cool white `[warm, cool]` in kelvin. `dimmer`/`rgbw` W channel: one
    /// value `[k, k]`.
    pub white_k: Option<[f64; 2]>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct GroupFile {
    pub id: String,
    /// What the group is on the site (`facade`, `railing`, `accent`, …), so that one scene
    /// can serve several sites.
    pub role: Option<String>,
    pub name: Option<NameFile>,
    pub fixtures: Vec<String>,
}

/// `profiles/<profile-id>.toml`: how a Modbus device maps channels to registers.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "Nightscape Modbus controller profile")]
pub struct ProfileFile {
    pub name: String,
    pub vendor: Option<String>,
    /// Where the figures come from (manual, measurement) and what is still unverified.
    pub source: Option<String>,
    pub levels: LevelsFile,
    pub write: WriteFile,
    /// Word order of 32-bit values: `big` (high word first, default) or `little`.
    pub word_order: Option<WordOrderFile>,
    pub enable: Option<EnableFile>,
    pub master: Option<MasterFile>,
    pub fade: Option<FadeFile>,
    pub status: Option<StatusFile>,
    pub power: Option<PowerFile>,
    pub uptime: Option<UptimeFile>,
    /// Input register with the device's temperature.
    pub temperature: Option<TemperatureFile>,
    /// Input register with the firmware version (major in the high byte, minor in the low).
    pub firmware: Option<InputRegisterFile>,
    /// First input register of a bitmap of failed outputs: bit k of register n is channel
    /// 16·n + k + 1; as many registers as the channels need.
    pub lamp_faults: Option<InputRegisterFile>,
    /// Where the device shows what it outputs (read back for checks).
    pub readback: Option<ReadbackFile>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct LevelsFile {
    /// Holding register of channel 1.
    pub start: RegisterFile,
    /// Channels the device has.
    pub channels: i64,
    /// 8 or 16: the width of one channel's value.
    pub bits: i64,
    /// Register value at full output; 255 (8-bit) or 65535 (16-bit) when left out.
    pub max: Option<i64>,
    /// Two 8-bit channels in one register: `high-first` (odd channel in the high byte) or
    /// `low-first`. One channel per register when left out.
    pub pack: Option<PackFile>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PackFile {
    HighFirst,
    LowFirst,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct WriteFile {
    /// Most registers in one write request (Modbus allows 123; many devices take fewer).
    pub max_registers: i64,
    /// Whether Write Multiple Registers (FC16) works; otherwise one FC06 per register.
    pub fc16: bool,
    /// Shortest time between two requests to the device, in milliseconds.
    pub min_interval_ms: Option<i64>,
    /// Full rewrite period even without changes, in seconds (0 = never).
    pub refresh_s: Option<i64>,
    /// One connection per host:port shared by every unit (Modbus-to-serial bridges).
    pub serialize_host: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WordOrderFile {
    Big,
    Little,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EnableFile {
    pub register: RegisterFile,
    /// Value that switches the output on.
    pub on: i64,
    /// Value that switches it off; 0 when left out.
    pub off: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct MasterFile {
    pub register: RegisterFile,
    /// Value for full output.
    pub max: i64,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FadeFile {
    pub register: RegisterFile,
    /// Milliseconds per step of the register's value.
    pub unit_ms: i64,
    /// Largest value the register takes.
    pub max: i64,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct StatusFile {
    /// Input register; 0 means healthy.
    pub register: RegisterFile,
    /// What each bit means, from bit 0 up: `output-fault`, `over-temperature`,
    /// `lamp-fault`, `output-short`, or `unused`.
    pub bits: Option<Vec<StatusBitFile>>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StatusBitFile {
    OutputFault,
    OverTemperature,
    LampFault,
    OutputShort,
    Unused,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PowerFile {
    pub register: RegisterFile,
    /// 1 or 2 registers.
    pub words: Option<i64>,
    /// Watts per unit of the raw value.
    pub watts_per_unit: f64,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct UptimeFile {
    pub register: RegisterFile,
    /// 1 or 2 registers; 2 when left out.
    pub words: Option<i64>,
    /// Seconds per unit of the raw value; 1 when left out.
    pub seconds_per_unit: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TemperatureFile {
    pub register: RegisterFile,
    /// Degrees Celsius per unit of the raw value, which is signed; 0.1 when left out.
    pub degrees_per_unit: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct InputRegisterFile {
    pub register: RegisterFile,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TableFile {
    Holding,
    Input,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ReadbackFile {
    pub start: RegisterFile,
    pub table: TableFile,
}

/// `zones.toml`: the lighting-environment zones and what each allows.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "Nightscape light-pollution zone table")]
pub struct ZonesFile {
    /// Where the figures come from.
    pub source: String,
    /// Limits apply from this many minutes after sunset …
    pub applies_after_sunset_min: i64,
    /// … to this many minutes before sunrise.
    pub applies_before_sunrise_min: i64,
    pub zones: Vec<ZoneFile>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ZoneFile {
    pub zone: i64,
    pub name: NameFile,
    /// Decorative lighting: highest average luminance of a lit surface, cd/m².
    pub decorative_avg_cd_m2: f64,
    /// Decorative lighting: highest luminance anywhere on a lit surface, cd/m².
    pub decorative_max_cd_m2: f64,
    /// Default curfew for sites in this zone: `"23:00"` or `"none"`.
    pub curfew: String,
}

/// `sites/<site-id>/scenes/<scene-id>.toml`: a look, as layers of effects on groups.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "Nightscape scene")]
pub struct SceneFile {
    pub name: NameFile,
    /// Cross-fade into this scene, in milliseconds; 3000 when left out.
    pub fade_ms: Option<i64>,
    pub layers: Vec<LayerFile>,
}

/// Reads a kebab-case name into a unit enum by serde's own rules.
pub(crate) fn variant<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(text)).ok()
}

pub(crate) const EFFECTS: [&str; 10] = [
    "static", "kelvin", "gradient", "cycle", "breathe", "chase", "wave", "rainbow", "twinkle",
    "sky",
];
pub(crate) const SITE_KINDS: [&str; 5] =
    ["building", "bridge", "heritage", "park", "road-structure"];
pub(crate) const FIXTURE_TYPES: [&str; 6] = ["dimmer", "cct", "rgb", "rgbw", "rgba", "pixel-strip"];

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EffectFile {
    Static,
    Kelvin,
    Gradient,
    Cycle,
    Breathe,
    Chase,
    Wave,
    Rainbow,
    Twinkle,
    Sky,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BlendFile {
    Over,
    Add,
    Max,
    Multiply,
}

/// One layer. Which keys apply depends on `effect`; the checker says when one does nothing.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct LayerFile {
    /// The group this layer lights …
    pub group: Option<String>,
    /// … or every group of this role on the site.
    pub role: Option<String>,
    /// Read as text so that a misspelt effect is reported with the layer's other problems
    /// instead of stopping the file; the schema lists the effects.
    #[schemars(with = "EffectFile")]
    pub effect: String,
    /// `"#rrggbb"` or a white such as `"2700K"`.
    pub colour: Option<String>,
    pub colours: Option<Vec<String>>,
    /// Colour between pulses (chase, twinkle); black when left out.
    pub background: Option<String>,
    /// `kelvin`: the white, e.g. 2700.
    pub kelvin: Option<f64>,
    /// Layer brightness in percent; 100 when left out.
    pub brightness_pct: Option<f64>,
    /// How the layer combines with those under it: `over` (default), `add`, `max`, `multiply`.
    pub blend: Option<BlendFile>,
    /// Time for one full cycle (cycle, breathe, twinkle), seconds.
    pub period_s: Option<f64>,
    /// Travel speed (chase, wave, rainbow), metres per second.
    pub speed_mps: Option<f64>,
    /// Length of one wave or rainbow, metres.
    pub wavelength_m: Option<f64>,
    /// Length of a chase pulse, metres.
    pub width_m: Option<f64>,
    /// Distance between chase pulses, metres.
    pub spacing_m: Option<f64>,
    /// Direction of travel or of the gradient in the drawing plane; 0 = +x, 90 = +y.
    pub direction_deg: Option<f64>,
    /// How far a breath dims, percent of its brightness.
    pub depth_pct: Option<f64>,
    /// Share of pixels that twinkle in a period, percent.
    pub density_pct: Option<f64>,
    /// Rainbow saturation, percent; 100 when left out.
    pub saturation_pct: Option<f64>,
    /// Sky: colours at local clock times, blended in between (wrapping at midnight).
    pub stops: Option<Vec<SkyStopFile>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SkyStopFile {
    pub at: String,
    pub colour: String,
}

/// `sites/<site-id>/schedule.toml`: when each scene plays.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "Nightscape schedule")]
pub struct ScheduleFile {
    pub rules: Vec<RuleFile>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RuleFile {
    /// A short name, shown as the cause of what plays.
    pub name: String,
    /// The scene (of this site) to play.
    pub scene: String,
    /// `"18:30"`, `"sunset"`, `"sunset+15"`, `"civil-dusk-10"`, `"sunrise"`, `"civil-dawn"`.
    pub start: String,
    /// As `start`, or `"curfew"`. An end at or before the start is on the next day.
    pub end: String,
    /// Higher wins where rules overlap; 0 when left out.
    pub priority: Option<i64>,
    /// 100 when left out.
    pub brightness_pct: Option<f64>,
    /// `["mon", "tue", …]`; every day when left out.
    pub days: Option<Vec<String>>,
    /// A season `{ from = "03-01", to = "11-30" }`, wrapping over the new year if `from` is
    /// later than `to`.
    pub season: Option<SeasonFile>,
    /// Only on the dates of this calendar (`calendars/<id>.toml` or `.ics`).
    pub calendar: Option<String>,
    /// Cross-fade into this rule's scene, instead of the scene's own fade.
    pub fade_ms: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SeasonFile {
    pub from: String,
    pub to: String,
}

/// `calendars/<calendar-id>.toml`: named dates.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "Nightscape calendar")]
pub struct CalendarFile {
    pub name: NameFile,
    /// Where the dates come from.
    pub source: Option<String>,
    pub dates: Vec<CalendarDateFile>,
}

/// One date (`date`) or a run of dates (`from`, `to`, inclusive), as `YYYY-MM-DD`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CalendarDateFile {
    pub date: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub name: String,
}
