//! The show library: everything [`super::check`] could build from a library's files.

use std::collections::BTreeMap;

use crate::calendar::{Calendar, CalendarId};
use crate::model::{Profile, ProfileId, Site, SiteId, ZoneRule, ZoneTable};
use crate::scene::{Scene, SceneId};
use crate::schedule::Schedule;

/// A whole show library: what `scenes/` holds once it is checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShowLibrary {
    pub zones: Option<ZoneTable>,
    pub profiles: BTreeMap<ProfileId, Profile>,
    pub sites: BTreeMap<SiteId, Site>,
    pub scenes: BTreeMap<SceneId, Scene>,
    pub calendars: BTreeMap<CalendarId, Calendar>,
    pub schedules: BTreeMap<SiteId, Schedule>,
}

impl ShowLibrary {
    /// The zone rule of a site, when the zone table is there.
    pub fn zone_rule(&self, site: &Site) -> Option<&ZoneRule> {
        self.zones.as_ref().and_then(|z| z.rule(site.zone))
    }

    /// The scenes of one site, by id.
    pub fn scenes_of<'a>(&'a self, site: &'a SiteId) -> impl Iterator<Item = &'a Scene> + 'a {
        self.scenes.values().filter(move |s| &s.site == site)
    }
}
