//! A year of transitions for 1,000 sites on one core, side by side with the sun times
//! alone for the same site-days.
//!
//! Run: `cargo bench -p nightscape-core --bench schedule`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use jiff::civil::date;
use nightscape_core::model::LatLon;
use nightscape_core::schedule::{Evaluator, epoch_day, local_instant};
use nightscape_core::show::check;
use nightscape_core::sun::{Almanac, Event, Place};

#[path = "../tests/it/common.rs"]
mod common;

const SITES: usize = 1000;
const ZONES: [&str; 8] = [
    "Asia/Seoul",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Africa/Cairo",
    "Pacific/Auckland",
];

fn main() {
    let checked = check(&common::shipped_library());
    assert_eq!(checked.error_count(), 0);
    let lib = &checked.library;
    let templates: Vec<_> = lib.sites.values().collect();
    // 1,000 sites from the shipped ones, spread over latitudes ±55° and eight time zones
    // (five of them with daylight saving).
    let sites: Vec<_> = (0..SITES)
        .map(|i| {
            let mut site = templates[i % templates.len()].clone();
            let lat = -55.0 + 110.0 * (i as f64 / SITES as f64);
            let zone = ZONES[i % ZONES.len()];
            site.time_zone = jiff::tz::db().get(zone).expect("a known zone");
            site.location = LatLon {
                lat,
                lon: -170.0 + (i as f64 * 37.0) % 340.0,
            };
            site
        })
        .collect();
    let first = date(2027, 1, 1);
    let last = date(2027, 12, 31);
    let almanac_start = Instant::now();
    let almanac = Arc::new(Almanac::new(epoch_day(first) - 1, epoch_day(last) + 1));
    let almanac_time = almanac_start.elapsed();

    let mut best = f64::INFINITY;
    let mut count = 0;
    for _ in 0..5 {
        let start = Instant::now();
        count = 0;
        for site in &sites {
            let schedule = &lib.schedules[&templates
                .iter()
                .find(|t| t.id == site.id)
                .expect("template")
                .id];
            let eval = Evaluator::new(
                Arc::new(site.clone()),
                Arc::new(schedule.clone()),
                &lib.calendars,
                almanac.clone(),
            );
            let from = local_instant(
                first,
                nightscape_core::model::TimeOfDay::MIDNIGHT,
                &site.time_zone,
            );
            let to = from + 365 * 86_400_000;
            let (list, _) = eval.transitions(from, to);
            count += list.len();
            black_box(list);
        }
        best = best.min(start.elapsed().as_secs_f64());
    }

    let mut sun_best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        for site in &sites {
            for day in epoch_day(first)..=epoch_day(last) {
                for e in [Event::Sunrise, Event::Sunset, Event::CivilDusk] {
                    black_box(
                        almanac
                            .event(Place::new(site.location.lat, site.location.lon), day, e)
                            .ok(),
                    );
                }
            }
        }
        sun_best = sun_best.min(start.elapsed().as_secs_f64());
    }
    println!("sites: {SITES}, days: 365, transitions found: {count}");
    println!(
        "solar terms for the year (shared by all sites): {:.2} ms",
        almanac_time.as_secs_f64() * 1e3
    );
    println!(
        "a year of transitions for {SITES} sites: {:.1} ms (best of 5, one core)",
        best * 1e3
    );
    println!(
        "  of which sun times alone (3 events a site-day): {:.1} ms",
        sun_best * 1e3
    );
}
