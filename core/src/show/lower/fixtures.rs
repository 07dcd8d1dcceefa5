//! Fixtures and groups: each fixture's type, channel order, bits, position, whites and patch
//! (a Modbus channel or a DMX universe and address), then the patch check that lays every
//! fixture out and finds overruns and overlaps, and the groups that name fixtures.

use std::collections::HashSet;

use super::values::{IdSet, artnet_address, in_range, int_in, name, root};
use super::{Indexed, SiteContext};
use crate::addr::{DmxAddress, SacnUniverse};
use crate::diag::{Code, FieldPath};
use crate::model::{
    Bits, Controller, ControllerId, Emitter, Fixture, FixtureId, FixtureKind, Group, GroupId,
    LayoutError, Output, Patch, PixelKind, Role, Shape, Universe,
};
use crate::output::{MapError, OutputMap, SinkAddress};
use crate::show::file::{
    FIXTURE_TYPES, FixtureFile, FixtureTypeFile, GroupFile, PixelFile, UniverseFile, variant,
};
use crate::show::{Problems, bad_id_message, not_one_of};

/// Pixels-per-universe and strip lengths beyond this are certainly typos.
const MAX_PIXELS: i64 = 100_000;
const DEFAULT_GAMMA: f64 = 2.2;

fn order(
    text: &str,
    kind: FixtureKind,
    path: &FieldPath,
    p: &mut Problems,
) -> Option<Vec<Emitter>> {
    let default = kind.default_order();
    let mut order = Vec::new();
    for ch in text.chars() {
        match default
            .iter()
            .find(|e| e.letter() == ch.to_ascii_lowercase())
        {
            Some(e) if !order.contains(e) => order.push(*e),
            _ => break,
        }
    }
    if order.len() != default.len() || text.chars().count() != default.len() {
        let letters: String = default.iter().map(|e| e.letter()).collect();
        p.error(
            Code::BadValue,
            path,
            format!("`{text}` is not a channel order for this fixture: use each of `{letters}` once, e.g. \"{letters}\""),
        );
        return None;
    }
    Some(order)
}

pub(super) fn fixtures(
    files: Vec<FixtureFile>,
    controllers: &Indexed<Controller>,
    p: &mut Problems,
) -> Indexed<Fixture> {
    let mut ids = IdSet::new("fixture");
    let mut out = Vec::new();
    for (i, f) in files.into_iter().enumerate() {
        let path = root().key("fixtures").index(i);
        if let Some(fixture) = fixture(f, &path, &mut ids, controllers, p) {
            out.push((i, fixture));
        }
    }
    out
}

fn fixture(
    f: FixtureFile,
    path: &FieldPath,
    ids: &mut IdSet,
    controllers: &Indexed<Controller>,
    p: &mut Problems,
) -> Option<Fixture> {
    let required = |key: &str, what: &str, given: bool, p: &mut Problems| {
        if !given {
            p.error(
                Code::Missing,
                path,
                format!("a fixture needs `{key}`, {what}"),
            );
        }
    };
    required("id", "its name in groups and messages", f.id.is_some(), p);
    required(
        "type",
        "one of dimmer, cct, rgb, rgbw, rgba, pixel-strip",
        f.kind.is_some(),
        p,
    );
    required(
        "controller",
        "the controller that drives it",
        f.controller.is_some(),
        p,
    );
    required(
        "power_w",
        "its rated power at full output in watts",
        f.power_w.is_some(),
        p,
    );
    let kind_file = match f.kind.as_deref() {
        Some(text) => {
            let kind = variant::<FixtureTypeFile>(text);
            if kind.is_none() {
                p.error(
                    Code::BadValue,
                    &path.key("type"),
                    not_one_of(text, "a fixture type", &FIXTURE_TYPES),
                );
            }
            kind
        }
        None => None,
    };
    let (Some(id_text), Some(kind_file), Some(controller_text), Some(power_w)) =
        (f.id.clone(), kind_file, f.controller.clone(), f.power_w)
    else {
        return None;
    };
    let id = ids.take(&id_text, FixtureId::new, &path.key("id"), p);
    let is_strip = kind_file == FixtureTypeFile::PixelStrip;
    let pixels = match (is_strip, f.pixels) {
        (true, Some(n)) => int_in::<u32>(n, 1, MAX_PIXELS, &path.key("pixels"), "pixels", p),
        (true, None) => {
            p.error(
                Code::Missing,
                path,
                "a pixel-strip needs `pixels`, its pixel count",
            );
            None
        }
        (false, Some(_)) => {
            p.error(
                Code::Conflict,
                &path.key("pixels"),
                "`pixels` is for pixel-strip fixtures only",
            );
            None
        }
        (false, None) => Some(1),
    };
    if !is_strip && f.pixel.is_some() {
        p.error(
            Code::Conflict,
            &path.key("pixel"),
            "`pixel` is for pixel-strip fixtures only",
        );
    }
    let kind = match kind_file {
        FixtureTypeFile::Dimmer => FixtureKind::Dimmer,
        FixtureTypeFile::Cct => FixtureKind::Cct,
        FixtureTypeFile::Rgb => FixtureKind::Rgb,
        FixtureTypeFile::Rgbw => FixtureKind::Rgbw,
        FixtureTypeFile::Rgba => FixtureKind::Rgba,
        FixtureTypeFile::PixelStrip => FixtureKind::PixelStrip {
            pixel: match f.pixel {
                Some(PixelFile::Rgbw) => PixelKind::Rgbw,
                _ => PixelKind::Rgb,
            },
            pixels: pixels.unwrap_or(1),
        },
    };
    let order = match &f.order {
        Some(text) => order(text, kind, &path.key("order"), p),
        None => Some(kind.default_order()),
    };
    let bits = match f.bits.unwrap_or(8) {
        8 => Some(Bits::Eight),
        16 => Some(Bits::Sixteen),
        other => {
            p.error(
                Code::OutOfRange,
                &path.key("bits"),
                format!("bits is {other}; fixtures take 8 or 16 bits per colour"),
            );
            None
        }
    };
    let gamma = f.gamma.unwrap_or(DEFAULT_GAMMA);
    let gamma_ok = in_range(gamma, 0.5, 4.0, &path.key("gamma"), "gamma", p);
    let controller = ControllerId::new(&controller_text)
        .ok()
        .and_then(|id| controllers.iter().find(|(_, c)| c.id == id))
        .map(|(_, c)| c);
    if controller.is_none() {
        p.error(
            Code::UnknownRef,
            &path.key("controller"),
            format!(
                "controller `{}` is not defined in this site's [[controllers]]",
                controller_text
            ),
        );
    }
    let patch = controller.and_then(|c| patch(&f, is_strip, c, path, p));
    let shape = shape(&f, is_strip, path, p);
    let power_ok = in_range(power_w, 0.0, 20_000.0, &path.key("power_w"), "power_w", p);
    if let Some(l) = f.luminance_cd_m2 {
        in_range(
            l,
            0.0,
            1e7,
            &path.key("luminance_cd_m2"),
            "luminance_cd_m2",
            p,
        );
    }
    let white_k = white(&f, kind, path, p);
    Some(Fixture {
        id: id?,
        name: f.name,
        kind: pixels.map(|_| kind)?,
        order: order?,
        bits: bits?,
        gamma: gamma_ok.then_some(gamma)?,
        controller: controller?.id.clone(),
        patch: patch?,
        shape: shape?,
        power_w: power_ok.then_some(power_w)?,
        luminance_cd_m2: f.luminance_cd_m2,
        white_k: white_k?,
    })
}

fn patch(
    f: &FixtureFile,
    is_strip: bool,
    controller: &Controller,
    path: &FieldPath,
    p: &mut Problems,
) -> Option<Patch> {
    if let Output::Modbus { .. } = controller.output {
        for (key, given) in [
            ("universe", f.universe.is_some()),
            ("address", f.address.is_some()),
            ("pixels_per_universe", f.pixels_per_universe.is_some()),
        ] {
            if given {
                p.error(
                    Code::Conflict,
                    &path.key(key),
                    format!(
                        "`{}` is a Modbus controller: give `channel`, not `{key}`",
                        controller.id
                    ),
                );
            }
        }
        let Some(channel) = f.channel else {
            p.error(
                Code::Missing,
                path,
                "a fixture on a Modbus controller needs `channel` (1-based)",
            );
            return None;
        };
        let channel = int_in(channel, 1, 65535, &path.key("channel"), "the channel", p)?;
        return Some(Patch::Modbus { channel });
    }
    if f.channel.is_some() {
        p.error(
            Code::Conflict,
            &path.key("channel"),
            format!(
                "`{}` is a {} controller: give `universe` and `address`, not `channel`",
                controller.id,
                controller.output.protocol()
            ),
        );
    }
    if !is_strip && f.pixels_per_universe.is_some() {
        p.error(
            Code::Conflict,
            &path.key("pixels_per_universe"),
            "`pixels_per_universe` is for pixel-strip fixtures only",
        );
    }
    let Some(address) = f.address else {
        p.error(
            Code::Missing,
            path,
            "a DMX fixture needs `address`, its first slot (1–512)",
        );
        return None;
    };
    let address = DmxAddress::new(address)
        .map_err(|e| p.error(Code::OutOfRange, &path.key("address"), e.to_string()))
        .ok();
    let carried = controller.output.universes();
    let universe_path = path.key("universe");
    let universe = match (&f.universe, &controller.output) {
        (None, _) if carried.len() == 1 => Some(carried[0]),
        (None, _) => {
            p.error(
                Code::Missing,
                path,
                format!(
                    "`{}` carries {} universes: say which with `universe`",
                    controller.id,
                    carried.len()
                ),
            );
            None
        }
        (Some(u), Output::ArtNet { .. }) => {
            artnet_address(u, &universe_path, p).map(Universe::ArtNet)
        }
        (Some(UniverseFile::Number(n)), Output::Sacn { .. }) => SacnUniverse::new(*n)
            .map_err(|e| p.error(Code::UniverseRange, &universe_path, e.to_string()))
            .ok()
            .map(Universe::Sacn),
        (Some(UniverseFile::Number(n)), _) => {
            int_in(*n, 1, 64, &universe_path, "the universe", p).map(Universe::DmxMqtt)
        }
        (Some(UniverseFile::Text(t)), _) => {
            p.error(
                Code::BadValue,
                &universe_path,
                format!("`{t}`: only Art-Net universes are written as text; write a number"),
            );
            None
        }
    };
    if let Some(u) = universe
        && !carried.contains(&u)
    {
        p.error(
            Code::UniverseRange,
            &universe_path,
            format!(
                "controller `{}` does not carry universe {u} (it has {})",
                controller.id,
                span_text(&carried)
            ),
        );
        return None;
    }
    let pixels_per_universe = match f.pixels_per_universe {
        Some(n) if is_strip => Some(int_in(
            n,
            1,
            512,
            &path.key("pixels_per_universe"),
            "pixels_per_universe",
            p,
        )?),
        _ => None,
    };
    Some(Patch::Dmx {
        universe: universe?,
        address: address?,
        pixels_per_universe,
    })
}

/// "slot 12" or "slots 12–14".
fn slot_text(first: u16, last: u16) -> String {
    if first == last {
        format!("slot {first}")
    } else {
        format!("slots {first}–{last}")
    }
}

fn span_text(universes: &[Universe]) -> String {
    match universes {
        [] => "none".to_owned(),
        [one] => one.to_string(),
        [first, .., last] => format!("{first} to {last}"),
    }
}

fn shape(f: &FixtureFile, is_strip: bool, path: &FieldPath, p: &mut Problems) -> Option<Shape> {
    let finite = |pt: &[f64; 2]| pt.iter().all(|v| v.is_finite() && v.abs() <= 100_000.0);
    match (&f.at, &f.line) {
        (Some(_), Some(_)) => {
            p.error(
                Code::Conflict,
                &path.key("line"),
                "give `at` (a point) or `line` (a polyline), not both",
            );
            None
        }
        (None, None) => {
            p.error(
                Code::Missing,
                path,
                "give the fixture's position: `at = [x, y]` or `line = [[x, y], …]` in metres",
            );
            None
        }
        (Some(_), None) if is_strip => {
            p.error(
                Code::Missing,
                &path.key("at"),
                "a pixel-strip is drawn along `line = [[x, y], …]`, not at a point",
            );
            None
        }
        (Some(at), None) => {
            if !finite(at) {
                p.error(
                    Code::OutOfRange,
                    &path.key("at"),
                    "positions are metres within 100 km of the site origin",
                );
                return None;
            }
            Some(Shape::Point(*at))
        }
        (None, Some(line)) => {
            if line.len() < 2 {
                p.error(
                    Code::Missing,
                    &path.key("line"),
                    "a line needs at least two points",
                );
                return None;
            }
            if !line.iter().all(finite) {
                p.error(
                    Code::OutOfRange,
                    &path.key("line"),
                    "positions are metres within 100 km of the site origin",
                );
                return None;
            }
            Some(Shape::Line(line.clone()))
        }
    }
}

/// Returns `Some(white)` when the fixture's whites are valid (which may be no white).
fn white(
    f: &FixtureFile,
    kind: FixtureKind,
    path: &FieldPath,
    p: &mut Problems,
) -> Option<Option<(f64, f64)>> {
    let wp = path.key("white_k");
    let has_white = matches!(
        kind,
        FixtureKind::Dimmer
            | FixtureKind::Cct
            | FixtureKind::Rgbw
            | FixtureKind::PixelStrip {
                pixel: PixelKind::Rgbw,
                ..
            }
    );
    match f.white_k {
        None if kind == FixtureKind::Cct => {
            p.error(
                Code::Missing,
                path,
                "a cct fixture needs `white_k = [warm, cool]` in kelvin",
            );
            None
        }
        None => Some(None),
        Some(_) if !has_white => {
            p.error(
                Code::Conflict,
                &wp,
                "this fixture has no white emitter; leave `white_k` out",
            );
            None
        }
        Some([a, b]) => {
            let ok = in_range(a, 1000.0, 20_000.0, &wp, "the white", p)
                && in_range(b, 1000.0, 20_000.0, &wp, "the white", p);
            if !ok {
                return None;
            }
            if kind == FixtureKind::Cct && a >= b {
                p.error(
                    Code::Conflict,
                    &wp,
                    "write `[warm, cool]`: the warm white has the lower kelvin",
                );
                return None;
            }
            if kind != FixtureKind::Cct && a != b {
                p.error(Code::Conflict, &wp, "only cct fixtures have two whites; write the one white twice, e.g. [3000, 3000]");
                return None;
            }
            Some(Some((a, b)))
        }
    }
}

/// Lays out every fixture's channels through the site's [`OutputMap`] and reports overruns,
/// split pixels, universes or channels a controller does not have, and overlaps. Returns
/// false when a fixture cannot be laid out.
pub(super) fn patch_check(
    fixtures: &Indexed<Fixture>,
    controllers: &Indexed<Controller>,
    context: &SiteContext<'_>,
    p: &mut Problems,
) -> bool {
    let list: Vec<&Fixture> = fixtures.iter().map(|(_, f)| f).collect();
    let controller_list: Vec<&Controller> = controllers.iter().map(|(_, c)| c).collect();
    let (map, errors) = OutputMap::build(&list, &controller_list, context.profiles);
    let file_index = |k: usize| fixtures[k].0;
    for (k, error) in &errors {
        let f = list[*k];
        let path = root().key("fixtures").index(file_index(*k));
        map_error(f, error, &path, p);
    }
    let mut ok = errors.is_empty();
    let mut reported = HashSet::new();
    for overlap in map.overlaps() {
        let (earlier, later) = (overlap.earlier, overlap.later);
        let (id, other_id) = (&list[later.fixture].id, &list[earlier.fixture].id);
        let controller = &overlap.controller.controller;
        let path = root().key("fixtures").index(file_index(later.fixture));
        match overlap.address {
            SinkAddress::Universe(universe) => {
                let (slots, other) = (later.positions(), earlier.positions());
                let last = (slots.end - 1).min(other.end - 1);
                p.error(
                    Code::DmxOverlap,
                    &path.key("address"),
                    format!(
                        "{} of universe {universe} on `{controller}` {} already fixture `{other_id}`'s (it takes {}–{}); `{id}` must start at {} or later",
                        slot_text(slots.start as u16, last as u16),
                        if last > slots.start { "are" } else { "is" },
                        other.start,
                        other.end - 1,
                        other.end
                    ),
                );
            }
            SinkAddress::ModbusChannels { .. } => {
                if !reported.insert((later.fixture, earlier.fixture)) {
                    continue;
                }
                let register = overlap
                    .controller
                    .profile
                    .as_ref()
                    .and_then(|id| context.profiles.get(id))
                    .and_then(|profile| overlap.register(profile))
                    .map_or(0, |slot| slot.register.get());
                p.error(
                    Code::RegisterOverlap,
                    &path.key("channel"),
                    format!(
                        "register {register} on `{controller}` is written for both `{other_id}` and `{id}`"
                    ),
                );
            }
        }
        ok = false;
    }
    ok
}

/// Reports why a fixture has no place on its controller.
fn map_error(f: &Fixture, error: &MapError, path: &FieldPath, p: &mut Problems) {
    match error {
        MapError::PastProfile {
            first,
            last,
            profile,
            channels,
            registers,
        } => p.error(
            Code::RegisterRange,
            &path.key("channel"),
            format!(
                "channels {first}–{last} run past the {channels} channels of profile `{profile}` (registers {}–{})",
                registers.start,
                registers.end - 1
            ),
        ),
        MapError::WideOnModbus { profile } => p.error(
            Code::Conflict,
            &path.key("bits"),
            format!(
                "a 16-bit fixture cannot be driven through Modbus profile `{profile}`, which takes one byte a channel (scaled to its register range); set `bits = 8`"
            ),
        ),
        MapError::NotCarried {
            universe,
            first_pixel,
            pixels,
            carried,
        } => p.error(
            Code::UniverseRange,
            &path.key("pixels"),
            format!(
                "pixels {}–{} need universe {universe}, which controller `{}` does not carry (it has {})",
                first_pixel + 1,
                first_pixel + pixels,
                f.controller,
                span_text(carried)
            ),
        ),
        MapError::Layout(LayoutError::Overrun { last_slot }) => p.error(
            Code::UniverseOverrun,
            &path.key("address"),
            format!(
                "the fixture takes {} channels, so it would end at slot {last_slot}, past 512; move it to a lower address or the next universe",
                f.channel_count()
            ),
        ),
        MapError::Layout(LayoutError::PixelSplit { pixel, universe }) => p.error(
            Code::PixelSplit,
            &path.key("pixels_per_universe"),
            format!(
                "pixel {pixel} would be split between universe {universe} and the next: at {} channels a pixel, only {} fit from this address",
                f.channels_per_pixel(),
                pixel - 1
            ),
        ),
        MapError::Layout(LayoutError::NoNextUniverse { after }) => p.error(
            Code::UniverseRange,
            &path.key("pixels"),
            format!("the strip continues past universe {after}, the protocol's last"),
        ),
    }
}

pub(super) fn groups(
    files: Vec<GroupFile>,
    declared: &HashSet<String>,
    p: &mut Problems,
) -> Indexed<Group> {
    let mut ids = IdSet::new("group");
    let mut out = Vec::new();
    for (i, g) in files.into_iter().enumerate() {
        let path = root().key("groups").index(i);
        let id = ids.take(&g.id, GroupId::new, &path.key("id"), p);
        let role = match &g.role {
            Some(text) => {
                let role = Role::new(text).ok();
                if role.is_none() {
                    p.error(Code::BadId, &path.key("role"), bad_id_message(text));
                }
                role
            }
            None => None,
        };
        let name = g.name.map(|n| name(n, &path.key("name"), p));
        let mut members = Vec::new();
        for (k, text) in g.fixtures.iter().enumerate() {
            let fp = path.key("fixtures").index(k);
            match FixtureId::new(text)
                .ok()
                .filter(|_| declared.contains(text))
            {
                None => p.error(
                    Code::UnknownRef,
                    &fp,
                    format!("fixture `{text}` is not defined in this site's [[fixtures]]"),
                ),
                Some(id) if members.contains(&id) => p.warning(
                    Code::DuplicateId,
                    &fp,
                    format!("fixture `{text}` is listed twice in this group"),
                ),
                Some(id) => members.push(id),
            }
        }
        if g.fixtures.is_empty() {
            p.warning(
                Code::Unused,
                &path.key("fixtures"),
                "the group has no fixtures; scenes that target it light nothing",
            );
        }
        if let Some(id) = id {
            out.push((
                i,
                Group {
                    id,
                    role,
                    name,
                    fixtures: members,
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_site, found, pending};
    use super::*;
    use crate::addr::SacnUniverse;

    #[test]
    fn orders_use_each_emitter_letter_once() {
        let mut p = Problems::default();
        let path = root().key("fixtures").index(0).key("order");
        use Emitter::{Blue, Green, Red, White};
        assert_eq!(
            order("grb", FixtureKind::Rgb, &path, &mut p),
            Some(vec![Green, Red, Blue])
        );
        assert_eq!(
            order("WRGB", FixtureKind::Rgbw, &path, &mut p),
            Some(vec![White, Red, Green, Blue])
        );
        assert_eq!(pending(&p), []);
        for bad in ["rgbb", "rg", "rgbw", "rgx"] {
            assert_eq!(order(bad, FixtureKind::Rgb, &path, &mut p), None, "{bad}");
        }
        let found_now = pending(&p);
        assert_eq!(found_now.len(), 4);
        assert_eq!(
            found_now[0],
            found(
                "bad-value",
                "fixtures[0].order",
                "`rgbb` is not a channel order for this fixture: use each of `rgb` once, e.g. \"rgb\""
            )
        );
    }

    #[test]
    fn slots_and_universes_read_as_prose() {
        assert_eq!(slot_text(12, 12), "slot 12");
        assert_eq!(slot_text(12, 14), "slots 12–14");
        let sacn = |n| Universe::Sacn(SacnUniverse::new(n).unwrap());
        assert_eq!(span_text(&[]), "none");
        assert_eq!(span_text(&[sacn(3)]), "3");
        assert_eq!(span_text(&[sacn(3), sacn(4), sacn(5)]), "3 to 5");
    }

    const SACN: &str =
        "[[controllers]]\nid = \"px\"\ngateway = \"gw\"\nsacn = { universe = 1, universes = 2 }\n";

    fn rgb(id: &str, patch: &str) -> String {
        format!(
            "[[fixtures]]\nid = \"{id}\"\ntype = \"rgb\"\ncontroller = \"px\"\n{patch}\nat = [0, 0]\npower_w = 10\n"
        )
    }

    #[test]
    fn fixtures_sharing_slots_overlap() {
        let fixtures = [
            rgb("f1", "universe = 1\naddress = 1"),
            rgb("f2", "universe = 1\naddress = 3"),
            rgb("f3", "universe = 2\naddress = 3"),
        ]
        .concat();
        assert_eq!(
            check_site("", &format!("{SACN}{fixtures}")),
            [found(
                "dmx-overlap",
                "fixtures[1].address",
                "slot 3 of universe 1 on `px` is already fixture `f1`'s (it takes 1–3); `f2` must start at 4 or later"
            )]
        );
    }

    #[test]
    fn a_patch_must_fit_its_controller() {
        let fixtures = [
            rgb("f1", "universe = 3\naddress = 1"),
            rgb("f2", "address = 1"),
            rgb("f3", "universe = 1\naddress = 511"),
            rgb("f4", "channel = 1"),
        ]
        .concat();
        assert_eq!(
            check_site("", &format!("{SACN}{fixtures}")),
            [
                found(
                    "universe-range",
                    "fixtures[0].universe",
                    "controller `px` does not carry universe 3 (it has 1 to 2)"
                ),
                found(
                    "missing",
                    "fixtures[1]",
                    "`px` carries 2 universes: say which with `universe`"
                ),
                found(
                    "universe-overrun",
                    "fixtures[2].address",
                    "the fixture takes 3 channels, so it would end at slot 513, past 512; move it to a lower address or the next universe"
                ),
                found(
                    "missing",
                    "fixtures[3]",
                    "a DMX fixture needs `address`, its first slot (1–512)"
                ),
                found(
                    "conflict",
                    "fixtures[3].channel",
                    "`px` is a sacn controller: give `universe` and `address`, not `channel`"
                ),
            ]
        );
    }

    #[test]
    fn modbus_fixtures_are_eight_bit_and_fit_their_profile() {
        let modbus = "[[controllers]]\nid = \"px\"\ngateway = \"gw\"\nmodbus = { host = \"10.0.0.9\", profile = \"io16\" }\n";
        let fixtures = [
            rgb("f1", "channel = 1\nbits = 16"),
            rgb("f2", "channel = 15"),
            rgb("f3", "channel = 4"),
        ]
        .concat();
        assert_eq!(
            check_site("", &format!("{modbus}{fixtures}")),
            [
                found(
                    "conflict",
                    "fixtures[0].bits",
                    "a 16-bit fixture cannot be driven through Modbus profile `io16`, which takes one byte a channel (scaled to its register range); set `bits = 8`"
                ),
                found(
                    "register-range",
                    "fixtures[1].channel",
                    "channels 15–17 run past the 16 channels of profile `io16` (registers 0–15)"
                ),
            ]
        );
    }

    #[test]
    fn groups_name_declared_fixtures_once() {
        let fixtures = rgb("f1", "universe = 1\naddress = 1");
        let group = "[[groups]]\nid = \"all\"\nfixtures = [\"f1\", \"f1\", \"f9\"]\n";
        assert_eq!(
            check_site("", &format!("{SACN}{fixtures}{group}")),
            [
                found(
                    "duplicate-id",
                    "groups[0].fixtures[1]",
                    "fixture `f1` is listed twice in this group"
                ),
                found(
                    "unknown-ref",
                    "groups[0].fixtures[2]",
                    "fixture `f9` is not defined in this site's [[fixtures]]"
                ),
            ]
        );
    }
}
