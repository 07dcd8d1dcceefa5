//! The cross-checks of a lowered site: fixtures against the site's limits and zone, and
//! gateways, controllers and fixtures that nothing uses.

use super::Indexed;
use super::values::root;
use crate::diag::Code;
use crate::model::{Controller, Fixture, Gateway, Group, Limits, ZoneRule};
use crate::show::Problems;

/// Fixtures whose capabilities break the site's limits, and fixtures that will be clamped.
pub(super) fn limit_check(
    fixtures: &Indexed<Fixture>,
    limits: &Limits,
    zone: Option<&ZoneRule>,
    p: &mut Problems,
) {
    for (i, f) in fixtures {
        let path = root().key("fixtures").index(*i);
        if let (Some((lo, hi)), Some((warm, cool))) = (limits.cct_k, f.white_k)
            && (cool < lo || warm > hi)
        {
            let what = if warm == cool {
                format!("its white is {warm} K")
            } else {
                format!("its whites span {warm}–{cool} K")
            };
            p.error(
                Code::LimitBroken,
                &path.key("white_k"),
                format!("the site allows whites of {lo}–{hi} K only, but {what}: it can show nothing allowed"),
            );
        }
        if limits.cct_k.is_some() && !f.kind.has_white() {
            p.warning(
                Code::WhiteApproximate,
                &path.key("type"),
                "the site allows whites only, and this fixture mixes white from colour: its whites will be approximate",
            );
        }
        if let (Some(zone), Some(lum)) = (zone, f.luminance_cd_m2) {
            let at_max = lum * limits.max_output.get();
            if at_max > zone.max_cd_m2 {
                p.warning(
                    Code::LimitClamped,
                    &path.key("luminance_cd_m2"),
                    format!(
                        "at the site's maximum output it reaches {at_max:.0} cd/m², above zone {}'s {} cd/m²; its output will be held to {:.0} %",
                        zone.zone.get(),
                        zone.max_cd_m2,
                        100.0 * zone.max_cd_m2 / lum
                    ),
                );
            }
        }
    }
}

pub(super) fn usage_check(
    gateways: &Indexed<Gateway>,
    controllers: &Indexed<Controller>,
    fixtures: &Indexed<Fixture>,
    groups: &Indexed<Group>,
    p: &mut Problems,
) {
    if gateways.is_empty() && !p.has_errors() {
        p.error(
            Code::Missing,
            &root(),
            "the site has no [[gateways]]; nothing would play it",
        );
    }
    // With errors in the site, things look unused only because their users failed to lower;
    // those warnings would be noise until the errors are fixed.
    if p.has_errors() {
        return;
    }
    for (i, g) in gateways {
        if !controllers.iter().any(|(_, c)| c.gateway == g.id) {
            p.warning(
                Code::Unused,
                &root().key("gateways").index(*i).key("id"),
                format!("gateway `{}` drives no controller", g.id),
            );
        }
    }
    for (i, c) in controllers {
        if !fixtures.iter().any(|(_, f)| f.controller == c.id) {
            p.warning(
                Code::Unused,
                &root().key("controllers").index(*i).key("id"),
                format!("controller `{}` has no fixtures", c.id),
            );
        }
    }
    for (i, f) in fixtures {
        if !groups.iter().any(|(_, g)| g.fixtures.contains(&f.id)) {
            p.warning(
                Code::Unused,
                &root().key("fixtures").index(*i).key("id"),
                format!(
                    "fixture `{}` is in no group, so no scene can light it",
                    f.id
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_site, found, pending};
    use super::*;

    #[test]
    fn a_site_without_gateways_is_an_error() {
        let mut p = Problems::default();
        usage_check(&vec![], &vec![], &vec![], &vec![], &mut p);
        assert_eq!(
            pending(&p),
            [found(
                "missing",
                "",
                "the site has no [[gateways]]; nothing would play it"
            )]
        );
    }

    const CONTROLLERS: &str = "[[controllers]]\nid = \"px\"\ngateway = \"gw\"\nsacn = { universe = 1 }\n[[controllers]]\nid = \"spare\"\ngateway = \"gw\"\nsacn = { universe = 2 }\n";

    #[test]
    fn unused_controllers_and_fixtures_are_warned_about() {
        let fixture = "[[fixtures]]\nid = \"f1\"\ntype = \"rgb\"\ncontroller = \"px\"\naddress = 1\nat = [0, 0]\npower_w = 10\n";
        assert_eq!(
            check_site("", &format!("{CONTROLLERS}{fixture}")),
            [
                found(
                    "unused",
                    "controllers[1].id",
                    "controller `spare` has no fixtures"
                ),
                found(
                    "unused",
                    "fixtures[0].id",
                    "fixture `f1` is in no group, so no scene can light it"
                ),
            ]
        );
    }

    #[test]
    fn fixtures_are_checked_against_the_limits_and_zone() {
        let fixtures = "[[fixtures]]\nid = \"bright\"\ntype = \"rgb\"\ncontroller = \"px\"\naddress = 1\nat = [0, 0]\npower_w = 10\nluminance_cd_m2 = 360\n[[fixtures]]\nid = \"warm\"\ntype = \"cct\"\ncontroller = \"px\"\naddress = 10\nat = [0, 0]\npower_w = 10\nwhite_k = [2200, 2700]\n";
        let group = "[[groups]]\nid = \"all\"\nfixtures = [\"bright\", \"warm\"]\n";
        let found_now = check_site(
            "cct_k = [3000, 4000]",
            &format!("{CONTROLLERS}{fixtures}{group}"),
        );
        assert_eq!(
            found_now,
            [
                found(
                    "white-approximate",
                    "fixtures[0].type",
                    "the site allows whites only, and this fixture mixes white from colour: its whites will be approximate"
                ),
                found(
                    "limit-clamped",
                    "fixtures[0].luminance_cd_m2",
                    "at the site's maximum output it reaches 360 cd/m², above zone 3's 180 cd/m²; its output will be held to 50 %"
                ),
                found(
                    "limit-broken",
                    "fixtures[1].white_k",
                    "the site allows whites of 3000–4000 K only, but its whites span 2200–2700 K: it can show nothing allowed"
                ),
            ]
        );
    }
}
