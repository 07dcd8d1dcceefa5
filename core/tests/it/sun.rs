//! Sun times against NREL's SPA (the `solar-positioning` crate) for every day of a year.
#![allow(clippy::unwrap_used)]

use nightscape_core::sun::{Almanac, DAY_MS, Event, Place, Polar};
use solar_positioning::{Horizon, Location, SolarEvents};

const DELTA_T: f64 = 69.0;

fn jd(ms: i64) -> f64 {
    ms as f64 / DAY_MS as f64 + 2_440_587.5
}

fn ms(jd: f64) -> i64 {
    ((jd - 2_440_587.5) * DAY_MS as f64).round() as i64
}

/// SPA's event nearest to ours (searching ±12 h around it).
fn oracle(lat: f64, lon: f64, near: i64, which: Event) -> Option<i64> {
    let spa = SolarEvents::new();
    let location = Location {
        latitude: lat,
        longitude: lon,
    };
    let horizon = match which {
        Event::Sunrise | Event::Sunset => Horizon::SunriseSunset,
        Event::CivilDawn | Event::CivilDusk => Horizon::CivilTwilight,
    };
    let (start, end) = (jd(near - DAY_MS / 2), jd(near + DAY_MS / 2));
    let found = match which {
        Event::Sunrise | Event::CivilDawn => {
            spa.next_rise_from_julian(start, end, location, DELTA_T, horizon)
        }
        Event::Sunset | Event::CivilDusk => {
            spa.next_set_from_julian(start, end, location, DELTA_T, horizon)
        }
    };
    found.unwrap().map(ms)
}

#[test]
fn within_a_minute_of_spa_every_day_of_a_year_to_60_degrees() {
    let first = 20_454; // 2026-01-01
    let almanac = Almanac::new(first, first + 365);
    let places = [
        (36.2014, 127.0893, "Nonsan"),
        (60.0, 24.9, "60 N"),
        (-60.0, -45.0, "60 S"),
        (0.0, 0.0, "equator"),
        (-33.87, 151.21, "Sydney"),
        (40.71, -74.01, "New York"),
        (51.48, -0.0, "Greenwich"),
    ];
    let mut worst = (0i64, "");
    let mut checked = 0;
    for (lat, lon, name) in places {
        for day in first..first + 365 {
            for which in [
                Event::Sunrise,
                Event::Sunset,
                Event::CivilDawn,
                Event::CivilDusk,
            ] {
                let ours = almanac.event(Place::new(lat, lon), day, which);
                let Ok(ours) = ours else { continue };
                // Seeded from the day before (as schedules do), the one-step solution agrees.
                if let Ok(before) = almanac.event(Place::new(lat, lon), day - 1, which) {
                    let near = almanac
                        .event_near(Place::new(lat, lon), day, which, before + DAY_MS)
                        .unwrap();
                    assert!(
                        (near - ours).abs() <= 2_000,
                        "{name} day {day} {which:?}: {near} vs {ours}"
                    );
                }
                let theirs = oracle(lat, lon, ours, which)
                    .unwrap_or_else(|| panic!("{name} day {day} {which:?}: SPA has none"));
                let error = (ours - theirs).abs();
                assert!(
                    error <= 60_000,
                    "{name} day {day} {which:?}: {error} ms off SPA"
                );
                if error > worst.0 {
                    worst = (error, name);
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 10_000, "{checked}");
    eprintln!("{checked} events, worst {} ms ({})", worst.0, worst.1);
}

#[test]
fn polar_day_and_night_are_reported_not_panicked() {
    let almanac = Almanac::new(20_454, 20_454 + 365);
    // Tromsø (69.65 N): no sunset at midsummer, no sunrise at midwinter.
    let midsummer = 20_454 + 171;
    let midwinter = 20_454 + 354;
    assert_eq!(
        almanac.event(Place::new(69.65, 18.96), midsummer, Event::Sunset),
        Err(Polar::AlwaysAbove)
    );
    assert_eq!(
        almanac.event(Place::new(69.65, 18.96), midwinter, Event::Sunrise),
        Err(Polar::AlwaysBelow)
    );
    // At the poles too.
    assert!(
        almanac
            .event(Place::new(90.0, 0.0), midsummer, Event::Sunset)
            .is_err()
    );
    assert!(
        almanac
            .event(Place::new(-90.0, 0.0), midsummer, Event::CivilDusk)
            .is_err()
    );
}
