//! Addresses that must never be swapped for one another: each is its own type with its own
//! range, parsed from the notations engineers write on site.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddrError {
    #[error("DMX address {0} is outside 1–512")]
    Dmx(i64),
    #[error("sACN universe {0} is outside 1–63999")]
    Sacn(i64),
    #[error("Art-Net port-address {0} is outside 0–32767")]
    ArtNet(i64),
    #[error("Art-Net `{0}` is not `net:subnet:universe` (net 0–127, subnet 0–15, universe 0–15)")]
    ArtNetTriple(String),
    #[error("register {0} is outside 0–65535")]
    Register(i64),
    #[error(
        "`{0}` is not a register: write a 0-based number (0x1000 or 4096) or 4xxxx/3xxxx notation (40001 = holding 0)"
    )]
    RegisterText(String),
}

/// A DMX512 slot, 1–512.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DmxAddress(u16);

impl DmxAddress {
    pub const SLOTS: u16 = 512;

    pub fn new(value: i64) -> Result<Self, AddrError> {
        match u16::try_from(value) {
            Ok(v) if (1..=Self::SLOTS).contains(&v) => Ok(DmxAddress(v)),
            _ => Err(AddrError::Dmx(value)),
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// An E1.31 universe, 1–63999 (64000–65535 are reserved, 0 is not a data universe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SacnUniverse(u16);

impl SacnUniverse {
    pub const MAX: u16 = 63999;

    pub fn new(value: i64) -> Result<Self, AddrError> {
        match u16::try_from(value) {
            Ok(v) if (1..=Self::MAX).contains(&v) => Ok(SacnUniverse(v)),
            _ => Err(AddrError::Sacn(value)),
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// An Art-Net 4 port-address: 15 bits of net (7), subnet (4) and universe (4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArtNetPortAddress(u16);

impl ArtNetPortAddress {
    pub const MAX: u16 = 32767;

    pub fn new(value: i64) -> Result<Self, AddrError> {
        match u16::try_from(value) {
            Ok(v) if v <= Self::MAX => Ok(ArtNetPortAddress(v)),
            _ => Err(AddrError::ArtNet(value)),
        }
    }

    pub fn from_parts(net: u8, subnet: u8, universe: u8) -> Option<Self> {
        (net <= 127 && subnet <= 15 && universe <= 15).then(|| {
            ArtNetPortAddress(u16::from(net) << 8 | u16::from(subnet) << 4 | u16::from(universe))
        })
    }

    pub fn get(self) -> u16 {
        self.0
    }

    pub fn net(self) -> u8 {
        (self.0 >> 8) as u8
    }

    pub fn subnet(self) -> u8 {
        ((self.0 >> 4) & 0x0f) as u8
    }

    pub fn universe(self) -> u8 {
        (self.0 & 0x0f) as u8
    }
}

impl FromStr for ArtNetPortAddress {
    type Err = AddrError;

    /// `net:subnet:universe` as printed on Art-Net nodes, or the plain 15-bit number.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || AddrError::ArtNetTriple(text.to_owned());
        let parts: Vec<&str> = text.trim().split(':').collect();
        match parts.as_slice() {
            [single] => {
                let value: i64 = single.parse().map_err(|_| bad())?;
                ArtNetPortAddress::new(value)
            }
            [net, subnet, universe] => {
                let net: u8 = net.parse().map_err(|_| bad())?;
                let subnet: u8 = subnet.parse().map_err(|_| bad())?;
                let universe: u8 = universe.parse().map_err(|_| bad())?;
                ArtNetPortAddress::from_parts(net, subnet, universe).ok_or_else(bad)
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for ArtNetPortAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.net(), self.subnet(), self.universe())
    }
}

/// Which Modbus table a register lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RegisterTable {
    Holding,
    Input,
}

/// A 0-based Modbus register address (what goes on the wire), 0–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegisterAddr(u16);

impl RegisterAddr {
    /// Every 16-bit number is a register address.
    pub const fn from_u16(value: u16) -> Self {
        RegisterAddr(value)
    }

    pub fn new(value: i64) -> Result<Self, AddrError> {
        u16::try_from(value)
            .map(RegisterAddr)
            .map_err(|_| AddrError::Register(value))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// Parses an address as written in a data sheet: decimal or `0x` hex (0-based), or the
    /// 1-based "Modicon" notation `4xxxx`/`4xxxxx` (holding) and `3xxxx`/`3xxxxx` (input).
    /// Returns the table the notation names, if it names one.
    pub fn parse(text: &str) -> Result<(Self, Option<RegisterTable>), AddrError> {
        let text = text.trim();
        let bad = || AddrError::RegisterText(text.to_owned());
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            let value = i64::from_str_radix(hex, 16).map_err(|_| bad())?;
            return Ok((RegisterAddr::new(value)?, None));
        }
        if !text.chars().all(|c| c.is_ascii_digit()) || text.is_empty() {
            return Err(bad());
        }
        let table = match text.as_bytes()[0] {
            b'4' => Some(RegisterTable::Holding),
            b'3' => Some(RegisterTable::Input),
            _ => None,
        };
        match (table, text.len()) {
            (Some(table), 5 | 6) => {
                let offset: i64 = text[1..].parse().map_err(|_| bad())?;
                if offset == 0 {
                    return Err(bad());
                }
                Ok((RegisterAddr::new(offset - 1)?, Some(table)))
            }
            _ => {
                let value: i64 = text.parse().map_err(|_| bad())?;
                Ok((RegisterAddr::new(value)?, None))
            }
        }
    }
}

impl fmt::Display for RegisterAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:04X})", self.0, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dmx_and_sacn_ranges() {
        assert!(DmxAddress::new(0).is_err());
        assert_eq!(DmxAddress::new(512).unwrap().get(), 512);
        assert!(DmxAddress::new(513).is_err());
        assert!(SacnUniverse::new(0).is_err());
        assert_eq!(SacnUniverse::new(63999).unwrap().get(), 63999);
        assert!(SacnUniverse::new(64000).is_err());
    }

    #[test]
    fn artnet_triple_and_number_agree() {
        let triple: ArtNetPortAddress = "1:2:3".parse().unwrap();
        assert_eq!(triple.get(), 0x0123);
        assert_eq!(triple.to_string(), "1:2:3");
        assert_eq!("291".parse::<ArtNetPortAddress>().unwrap(), triple);
        assert!("128:0:0".parse::<ArtNetPortAddress>().is_err());
        assert!("0:16:0".parse::<ArtNetPortAddress>().is_err());
        assert!("32768".parse::<ArtNetPortAddress>().is_err());
        assert!("1:2".parse::<ArtNetPortAddress>().is_err());
    }

    #[test]
    fn register_notations() {
        use RegisterTable::*;
        assert_eq!(RegisterAddr::parse("0").unwrap(), (RegisterAddr(0), None));
        assert_eq!(
            RegisterAddr::parse("0x2000").unwrap(),
            (RegisterAddr(0x2000), None)
        );
        assert_eq!(
            RegisterAddr::parse("40001").unwrap(),
            (RegisterAddr(0), Some(Holding))
        );
        assert_eq!(
            RegisterAddr::parse("40014").unwrap(),
            (RegisterAddr(13), Some(Holding))
        );
        assert_eq!(
            RegisterAddr::parse("30105").unwrap(),
            (RegisterAddr(104), Some(Input))
        );
        assert_eq!(
            RegisterAddr::parse("465536").unwrap(),
            (RegisterAddr(65535), Some(Holding))
        );
        assert_eq!(
            RegisterAddr::parse("1234").unwrap(),
            (RegisterAddr(1234), None)
        );
        assert!(RegisterAddr::parse("40000").is_err());
        assert!(RegisterAddr::parse("70000").is_err());
        assert!(RegisterAddr::parse("holding").is_err());
    }
}
