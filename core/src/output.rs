//! The output map: where every channel of a site's layout goes on the wire.
//!
//! A [`Layout`](crate::render::Layout) numbers a site's channels 0.. in fixture order, each
//! fixture's pixels one after another. The [`OutputMap`] says, per controller, where each
//! fixture's share of those channels lands: a run of slots in one DMX universe (Art-Net,
//! sACN, DMX over MQTT), or a run of the controller's channels, which its Modbus profile
//! turns into registers. It is built once from the checked site and used three ways, so
//! they cannot disagree:
//!
//! - the show checker reports overruns, split pixels, universes a controller does not carry
//!   and overlapping slots or registers from it;
//! - the gateway [`gather`](Sink::gather)s layout channels into each universe or register
//!   buffer it sends;
//! - the simulator [`scatter`](Sink::scatter)s what a controller received back into layout
//!   channels and decodes them into light.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::ops::Range;

use crate::model::{
    Bits, Controller, ControllerId, Fixture, GatewayId, LayoutError, Output, Patch, Profile,
    ProfileId, RegisterSlot, Universe,
};

/// One fixture's channels in one sink: `len` channels from layout channel `channels.start`
/// go to the sink's positions `first..first + len` (1-based DMX slots, or 1-based controller
/// channels for Modbus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Index of the fixture among the site's fixtures (the layout's order).
    pub fixture: usize,
    /// Layout channels this run carries.
    pub channels: Range<usize>,
    /// First slot or controller channel, 1-based.
    pub first: u16,
}

impl Run {
    /// Sink positions (1-based) this run writes.
    pub fn positions(&self) -> Range<u32> {
        let first = u32::from(self.first);
        first..first + self.channels.len() as u32
    }
}

/// Where a sink's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SinkAddress {
    /// One DMX universe of 512 slots.
    Universe(Universe),
    /// The channels of a Modbus controller, `count` of them, mapped to registers by its
    /// profile.
    ModbusChannels { count: u16 },
}

/// One universe or one Modbus channel space of a controller, with the runs that fill it,
/// sorted by position (then fixture).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sink {
    pub address: SinkAddress,
    pub runs: Vec<Run>,
}

impl Sink {
    /// Bytes the sink holds: 512 for a universe, the profile's channel count for Modbus.
    pub fn len(&self) -> usize {
        match self.address {
            SinkAddress::Universe(_) => 512,
            SinkAddress::ModbusChannels { count } => usize::from(count),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes this sink's bytes into `out` (the universe's slots or the controller's
    /// channels, from index 0): each run's layout channels from `channels`, and 0 where no
    /// fixture is patched, so a buffer reused for several sinks carries nothing over. Runs
    /// that do not fit `channels` or `out` are skipped, never a panic.
    pub fn gather(&self, channels: &[u8], out: &mut [u8]) {
        out.fill(0);
        for run in &self.runs {
            let Some(at) = usize::from(run.first).checked_sub(1) else {
                continue;
            };
            let (Some(from), Some(to)) = (
                channels.get(run.channels.clone()),
                out.get_mut(at..at + run.channels.len()),
            ) else {
                continue;
            };
            to.copy_from_slice(from);
        }
    }

    /// The inverse of [`gather`](Self::gather), for the receiving side: writes what the sink
    /// received (`received`, from slot or channel 1; a short universe leaves the missing
    /// slots at 0) into the layout channels it carries.
    pub fn scatter(&self, received: &[u8], channels: &mut [u8]) {
        for run in &self.runs {
            let (Some(to), Some(at)) = (
                channels.get_mut(run.channels.clone()),
                usize::from(run.first).checked_sub(1),
            ) else {
                continue;
            };
            for (k, byte) in to.iter_mut().enumerate() {
                *byte = received.get(at + k).copied().unwrap_or(0);
            }
        }
    }

    /// Pairs of runs that write the same positions: `(earlier, later)`, each later run with
    /// the first earlier one it collides with.
    pub fn overlaps(&self) -> Vec<(&Run, &Run)> {
        let mut out = Vec::new();
        for (n, run) in self.runs.iter().enumerate() {
            if let Some(other) = self.runs[..n]
                .iter()
                .find(|o| o.fixture != run.fixture && o.positions().end > u32::from(run.first))
            {
                out.push((other, run));
            }
        }
        out
    }
}

/// Everything one controller receives.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerMap {
    pub controller: ControllerId,
    pub gateway: GatewayId,
    /// Index of the controller among the site's controllers.
    pub index: usize,
    /// For Modbus controllers, their profile.
    pub profile: Option<ProfileId>,
    /// Universes in order (every universe the controller carries, used or not), or the one
    /// Modbus channel space.
    pub sinks: Vec<Sink>,
}

impl ControllerMap {
    /// The sink of one universe.
    pub fn universe(&self, universe: Universe) -> Option<&Sink> {
        self.sinks
            .iter()
            .find(|s| s.address == SinkAddress::Universe(universe))
    }
}

/// Why a fixture's channels have no place on its controller.
#[derive(Debug, Clone, PartialEq)]
pub enum MapError {
    /// The fixture cannot be laid into universes at all.
    Layout(LayoutError),
    /// Pixels `first_pixel + 1 ..= first_pixel + pixels` need a universe the controller does
    /// not carry.
    NotCarried {
        universe: Universe,
        first_pixel: u32,
        pixels: u32,
        carried: Vec<Universe>,
    },
    /// A 16-bit fixture on a Modbus controller: profiles take one byte a channel.
    WideOnModbus { profile: ProfileId },
    /// Controller channels `first..=last` run past the profile's channels.
    PastProfile {
        first: u16,
        last: u32,
        profile: ProfileId,
        channels: u16,
        registers: Range<u32>,
    },
}

/// The whole site's output map: per controller, its sinks; per fixture, its layout channels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutputMap {
    controllers: Vec<ControllerMap>,
    fixture_channels: Vec<Range<usize>>,
    channel_count: usize,
}

/// Layout channels of each fixture, in order: the one numbering both the map and the
/// layout use.
pub(crate) fn fixture_channels<F: Borrow<Fixture>>(fixtures: &[F]) -> Vec<Range<usize>> {
    let mut at = 0;
    fixtures
        .iter()
        .map(|f| {
            let n = f.borrow().channel_count() as usize;
            at += n;
            at - n..at
        })
        .collect()
}

impl OutputMap {
    /// Builds the map of a site: `fixtures` on `controllers`, with `profiles` for Modbus.
    /// Returns it with every fixture that has no place, by its index in `fixtures`. A fixture whose controller or profile is
    /// unknown, or whose patch does not fit its controller's protocol, is left out silently
    /// (the checker reports those as references).
    pub fn build<F: Borrow<Fixture>, C: Borrow<Controller>>(
        fixtures: &[F],
        controllers: &[C],
        profiles: &BTreeMap<ProfileId, Profile>,
    ) -> (OutputMap, Vec<(usize, MapError)>) {
        let fixture_channels = fixture_channels(fixtures);
        let channel_count = fixture_channels.last().map_or(0, |r| r.end);
        let mut errors = Vec::new();
        let mut maps: Vec<ControllerMap> = controllers
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let c = c.borrow();
                let (profile, sinks) = match &c.output {
                    Output::Modbus { profile, .. } => {
                        let count = profiles.get(profile).map_or(0, |p| p.levels.channels);
                        (
                            Some(profile.clone()),
                            vec![Sink {
                                address: SinkAddress::ModbusChannels { count },
                                runs: Vec::new(),
                            }],
                        )
                    }
                    output => (
                        None,
                        output
                            .universes()
                            .into_iter()
                            .map(|u| Sink {
                                address: SinkAddress::Universe(u),
                                runs: Vec::new(),
                            })
                            .collect(),
                    ),
                };
                ControllerMap {
                    controller: c.id.clone(),
                    gateway: c.gateway.clone(),
                    index,
                    profile,
                    sinks,
                }
            })
            .collect();
        for (i, f) in fixtures.iter().enumerate() {
            let f = f.borrow();
            let Some(map) = maps.iter_mut().find(|m| m.controller == f.controller) else {
                continue;
            };
            let base = fixture_channels[i].start;
            match (&f.patch, &map.profile) {
                (Patch::Modbus { channel }, Some(profile_id)) => {
                    let Some(profile) = profiles.get(profile_id) else {
                        continue;
                    };
                    if f.bits == Bits::Sixteen {
                        errors.push((
                            i,
                            MapError::WideOnModbus {
                                profile: profile_id.clone(),
                            },
                        ));
                        continue;
                    }
                    let len = f.channel_count();
                    let last = u32::from(*channel) + len - 1;
                    if *channel == 0 || last > u32::from(profile.levels.channels) {
                        errors.push((
                            i,
                            MapError::PastProfile {
                                first: *channel,
                                last,
                                profile: profile_id.clone(),
                                channels: profile.levels.channels,
                                registers: profile.level_registers(),
                            },
                        ));
                        continue;
                    }
                    map.sinks[0].runs.push(Run {
                        fixture: i,
                        channels: base..base + len as usize,
                        first: *channel,
                    });
                }
                (Patch::Dmx { .. }, _) => {
                    let runs = match f.dmx_runs() {
                        Ok(runs) => runs,
                        Err(e) => {
                            errors.push((i, MapError::Layout(e)));
                            continue;
                        }
                    };
                    let per_pixel = usize::from(f.channels_per_pixel());
                    for run in runs {
                        let Some(sink) = map
                            .sinks
                            .iter_mut()
                            .find(|s| s.address == SinkAddress::Universe(run.universe))
                        else {
                            errors.push((
                                i,
                                MapError::NotCarried {
                                    universe: run.universe,
                                    first_pixel: run.first_pixel,
                                    pixels: run.pixels,
                                    carried: controllers[map.index].borrow().output.universes(),
                                },
                            ));
                            break;
                        };
                        let from = base + run.first_pixel as usize * per_pixel;
                        sink.runs.push(Run {
                            fixture: i,
                            channels: from..from + run.pixels as usize * per_pixel,
                            first: run.slots.start,
                        });
                    }
                }
                (Patch::Modbus { .. }, None) => {}
            }
        }
        for map in &mut maps {
            for sink in &mut map.sinks {
                sink.runs.sort_by_key(|r| (r.first, r.fixture));
            }
        }
        let map = OutputMap {
            controllers: maps,
            fixture_channels,
            channel_count,
        };
        (map, errors)
    }

    /// Every controller of the site, in the site's order.
    pub fn controllers(&self) -> &[ControllerMap] {
        &self.controllers
    }

    pub fn controller(&self, id: &ControllerId) -> Option<&ControllerMap> {
        self.controllers.iter().find(|c| &c.controller == id)
    }

    /// The controllers one gateway drives.
    pub fn of_gateway<'a>(
        &'a self,
        gateway: &'a GatewayId,
    ) -> impl Iterator<Item = &'a ControllerMap> + 'a {
        self.controllers
            .iter()
            .filter(move |c| &c.gateway == gateway)
    }

    /// Layout channels of each fixture, in the site's fixture order.
    pub fn fixture_channels(&self) -> &[Range<usize>] {
        &self.fixture_channels
    }

    /// All layout channels.
    pub fn channel_count(&self) -> usize {
        self.channel_count
    }

    /// Every place two fixtures write the same slot or controller channel.
    pub fn overlaps(&self) -> Vec<Overlap<'_>> {
        let mut out = Vec::new();
        for map in &self.controllers {
            for sink in &map.sinks {
                for (earlier, later) in sink.overlaps() {
                    out.push(Overlap {
                        controller: map,
                        address: sink.address,
                        earlier,
                        later,
                    });
                }
            }
        }
        out
    }
}

/// Two fixtures writing the same positions of one sink.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overlap<'a> {
    pub controller: &'a ControllerMap,
    pub address: SinkAddress,
    pub earlier: &'a Run,
    pub later: &'a Run,
}

impl Overlap<'_> {
    /// The first position both write (1-based).
    pub fn first_shared(&self) -> u16 {
        self.later.first
    }

    /// For a Modbus sink, the register (and part) of the first shared channel.
    pub fn register(&self, profile: &Profile) -> Option<RegisterSlot> {
        match self.address {
            SinkAddress::ModbusChannels { .. } => profile.channel_slot(self.first_shared()),
            SinkAddress::Universe(_) => None,
        }
    }
}
