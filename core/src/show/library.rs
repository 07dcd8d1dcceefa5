//! The show library: everything [`super::check`] could build from a library's files.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::calendar::{Calendar, CalendarId};
use crate::model::{Profile, ProfileId, Site, SiteId, ZoneRule, ZoneTable};
use crate::output::OutputMap;
use crate::render::{CompiledScene, Layout};
use crate::scene::{Scene, SceneId};
use crate::schedule::{Evaluator, Schedule};
use crate::sun::Almanac;

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

    /// A site compiled for output, under its zone's rule.
    pub fn layout(&self, site: &SiteId) -> Option<Layout> {
        let s = self.sites.get(site)?;
        Some(Layout::new(s, self.zone_rule(s)))
    }

    /// Where every channel of a site goes. A site in the library was checked, so every
    /// fixture has its place.
    pub fn output_map(&self, site: &SiteId) -> Option<OutputMap> {
        let s = self.sites.get(site)?;
        Some(OutputMap::build(&s.fixtures, &s.controllers, &self.profiles).0)
    }

    /// Every scene of a site compiled for `layout`, by id.
    pub fn compiled_scenes(&self, layout: &Layout) -> BTreeMap<SceneId, Arc<CompiledScene>> {
        self.scenes_of(layout.site())
            .map(|s| (s.id.clone(), Arc::new(CompiledScene::new(s, layout))))
            .collect()
    }

    /// The schedule evaluator of a site (one without rules when it has no schedule), owning
    /// what it needs so a task can keep it.
    pub fn evaluator(&self, site: &SiteId, almanac: Arc<Almanac>) -> Option<Evaluator> {
        let s = self.sites.get(site)?;
        let schedule = self
            .schedules
            .get(site)
            .cloned()
            .unwrap_or(Schedule { rules: Vec::new() });
        Some(Evaluator::new(
            Arc::new(s.clone()),
            Arc::new(schedule),
            &self.calendars,
            almanac,
        ))
    }
}
