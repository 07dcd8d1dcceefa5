//! Lowering: from the serde types of the show files to the checked domain model, reporting
//! every problem on the way with its field path.
//!
//! [`crate::show::check`] parses each file into the types of [`crate::show::file`] and hands
//! them here; what comes back is a [`crate::model`] value, or nothing, with every problem
//! collected in [`Problems`](crate::show::Problems) for placing in its file. The work is
//! split by concern:
//! - [`values`]: single values (names, ranges, times, addresses, registers, ids);
//! - [`profiles`]: the zone table and the Modbus controller profiles;
//! - [`site`](mod@site): a site with its limits, tariff, gateways and controllers;
//! - [`fixtures`]: a site's fixtures and groups, and the patch check;
//! - [`checks`]: the cross-checks run on a lowered site.

use std::collections::BTreeMap;

use crate::model::{Profile, ProfileId, ZoneTable};

mod checks;
mod fixtures;
mod profiles;
mod site;
mod values;

pub(super) use profiles::{profile, zones};
pub(super) use site::site;
pub(super) use values::{name, time_of_day};

/// Items are kept with their index in the file so later checks can name the field.
type Indexed<T> = Vec<(usize, T)>;

/// What a site is checked against besides itself.
pub(super) struct SiteContext<'a> {
    pub(super) zones: Option<&'a ZoneTable>,
    pub(super) profiles: &'a BTreeMap<ProfileId, Profile>,
}

/// Small libraries and problem lists for the tests of lowering.
#[cfg(test)]
mod testing {
    use crate::diag::Diagnostic;
    use crate::show::{Problems, SourceFile, check};

    /// `(code, field path, message)`: what a test compares.
    pub(super) type Found = (&'static str, String, String);

    /// A `Found` from borrowed parts.
    pub(super) fn found(code: &'static str, path: &str, message: &str) -> Found {
        (code, path.to_owned(), message.to_owned())
    }

    /// The problems collected so far, not yet placed in a file.
    pub(super) fn pending(p: &Problems) -> Vec<Found> {
        p.pending
            .iter()
            .map(|d| (d.code.as_str(), d.path.to_string(), d.message.clone()))
            .collect()
    }

    /// The diagnostics of `file`.
    pub(super) fn found_in(diagnostics: &[Diagnostic], file: &str) -> Vec<Found> {
        diagnostics
            .iter()
            .filter(|d| d.location.file == file)
            .map(|d| (d.code.as_str(), d.path.to_string(), d.message.clone()))
            .collect()
    }

    /// A zone table with the four zones, as `zones.toml`.
    pub(super) fn zones() -> SourceFile {
        let mut text =
            "source = \"test\"\napplies_after_sunset_min = 60\napplies_before_sunrise_min = 60\n"
                .to_owned();
        for (zone, avg, max, curfew) in [
            (1, 5.0, 20.0, "22:00"),
            (2, 5.0, 60.0, "23:00"),
            (3, 15.0, 180.0, "00:00"),
            (4, 25.0, 300.0, "none"),
        ] {
            text.push_str(&format!(
                "[[zones]]\nzone = {zone}\nname = {{ ko = \"{zone}종\" }}\ndecorative_avg_cd_m2 = {avg:?}\ndecorative_max_cd_m2 = {max:?}\ncurfew = \"{curfew}\"\n"
            ));
        }
        SourceFile {
            path: "zones.toml".to_owned(),
            text,
        }
    }

    /// Profile `io16`: 16 one-register channels from holding register 0.
    pub(super) fn profile() -> SourceFile {
        SourceFile {
            path: "profiles/io16.toml".to_owned(),
            text: "name = \"16 channels\"\n[levels]\nstart = 0\nchannels = 16\nbits = 8\n[write]\nmax_registers = 16\nfc16 = true\n".to_owned(),
        }
    }

    /// The diagnostics of `sites/test/site.toml`, checked with [`zones`] and [`profile`]: a
    /// building in zone 3 with `limits` as its `[limits]`, one gateway `gw`, then `rest`.
    pub(super) fn check_site(limits: &str, rest: &str) -> Vec<Found> {
        let site = SourceFile {
            path: "sites/test/site.toml".to_owned(),
            text: format!(
                "name = {{ ko = \"시험\" }}\nkind = \"building\"\nlocation = {{ lat = 37.5, lon = 127.0 }}\ntime_zone = \"Asia/Seoul\"\nzone = 3\n[limits]\n{limits}\n[[gateways]]\nid = \"gw\"\n{rest}\n"
            ),
        };
        let checked = check(&[zones(), profile(), site]);
        found_in(&checked.diagnostics, "sites/test/site.toml")
    }
}
