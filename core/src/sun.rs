//! Sunrise, sunset and civil twilight, by the NOAA method (after Meeus).
//!
//! The slowly changing terms — the sun's declination and the equation of time — depend only
//! on the date, not on the place, so they are computed once per date ([`Terms::for_day`]) and
//! shared by every site; an event's time then costs one arc-cosine per site. The terms are
//! interpolated to the event's own time and the event is solved twice, which keeps it within
//! ten seconds of NREL's SPA from 60° S to 60° N on every day of a year (see the tests).

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The sine of the sun's declination and the equation of time (minutes) at 00:00 UTC of
/// one day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Terms {
    sin_declination: f64,
    equation_of_time: f64,
}

impl Terms {
    /// Terms at 00:00 UTC of `day` (days since 1970-01-01).
    pub fn for_day(day: i64) -> Terms {
        Terms::at_julian(day as f64 + 2_440_587.5)
    }

    fn at_julian(jd: f64) -> Terms {
        let t = (jd - 2_451_545.0) / 36_525.0;
        let l0 = (280.466_46 + t * (36_000.769_83 + t * 0.000_303_2)).rem_euclid(360.0);
        let m = 357.529_11 + t * (35_999.050_29 - 0.000_153_7 * t);
        let e = 0.016_708_634 - t * (0.000_042_037 + 0.000_000_126_7 * t);
        let mr = m.to_radians();
        let centre = mr.sin() * (1.914_602 - t * (0.004_817 + 0.000_014 * t))
            + (2.0 * mr).sin() * (0.019_993 - 0.000_101 * t)
            + (3.0 * mr).sin() * 0.000_289;
        let omega = (125.04 - 1934.136 * t).to_radians();
        let apparent = (l0 + centre - 0.005_69 - 0.004_78 * omega.sin()).to_radians();
        let mean_obliquity =
            23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.000_59 - t * 0.001_813))) / 60.0) / 60.0;
        let obliquity = (mean_obliquity + 0.002_56 * omega.cos()).to_radians();
        let sin_declination = obliquity.sin() * apparent.sin();
        let y = (obliquity / 2.0).tan().powi(2);
        let l0r = l0.to_radians();
        let eot = y * (2.0 * l0r).sin() - 2.0 * e * mr.sin()
            + 4.0 * e * y * mr.sin() * (2.0 * l0r).cos()
            - 0.5 * y * y * (4.0 * l0r).sin()
            - 1.25 * e * e * (2.0 * mr).sin();
        Terms {
            sin_declination,
            equation_of_time: 4.0 * eot.to_degrees(),
        }
    }

    fn lerp(self, next: Terms, f: f64) -> Terms {
        Terms {
            sin_declination: self.sin_declination
                + (next.sin_declination - self.sin_declination) * f,
            equation_of_time: self.equation_of_time
                + (next.equation_of_time - self.equation_of_time) * f,
        }
    }
}

/// The solar events Nightscape schedules by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Sunrise = 0,
    Sunset,
    CivilDawn,
    CivilDusk,
}

impl Event {
    /// Zenith angle of the sun's centre at the event: 90°50′ for rise and set (refraction
    /// and the sun's radius), 96° for civil twilight.
    pub fn zenith(self) -> f64 {
        match self {
            Event::Sunrise | Event::Sunset => 90.833,
            Event::CivilDawn | Event::CivilDusk => 96.0,
        }
    }

    /// cos(zenith), worked out once: the event loop runs for every site and day.
    fn cos_zenith(self) -> f64 {
        const RISE_SET: f64 = -0.014_538_080_502_7;
        const CIVIL: f64 = -0.104_528_463_267_7;
        match self {
            Event::Sunrise | Event::Sunset => RISE_SET,
            Event::CivilDawn | Event::CivilDusk => CIVIL,
        }
    }

    fn rising(self) -> bool {
        matches!(self, Event::Sunrise | Event::CivilDawn)
    }

    pub fn name(self) -> &'static str {
        match self {
            Event::Sunrise => "sunrise",
            Event::Sunset => "sunset",
            Event::CivilDawn => "civil dawn",
            Event::CivilDusk => "civil dusk",
        }
    }
}

/// Why an event does not happen on a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polar {
    /// The sun stays above the event's horizon all day (midnight sun).
    AlwaysAbove,
    /// The sun stays below it all day (polar night).
    AlwaysBelow,
}

impl std::fmt::Display for Polar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Polar::AlwaysAbove => "the sun stays above that horizon all day (midnight sun)",
            Polar::AlwaysBelow => "the sun stays below that horizon all day (polar night)",
        })
    }
}

/// A place on Earth, with the trigonometry of its latitude done once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    sin_lat: f64,
    cos_lat: f64,
    lon: f64,
}

impl Place {
    /// `lat` and `lon` in degrees, north and east positive.
    pub fn new(lat: f64, lon: f64) -> Place {
        let (sin_lat, cos_lat) = lat.to_radians().sin_cos();
        Place {
            sin_lat,
            cos_lat,
            lon,
        }
    }
}

/// The time of `event` on `day` (days since 1970-01-01) at `place`, in milliseconds since
/// the epoch: the occurrence nearest to that day's local solar noon. `today` and `tomorrow`
/// are the terms of `day` and `day + 1`.
pub fn event(
    place: Place,
    day: i64,
    today: Terms,
    tomorrow: Terms,
    event: Event,
) -> Result<i64, Polar> {
    // Start from solar noon, then solve again with the terms at the event's own time.
    let noon = 720.0 - 4.0 * place.lon - today.equation_of_time;
    solve(place, day, today, tomorrow, event, noon, 2)
}

/// As [`event`], starting from an estimate (milliseconds since the epoch) within a few
/// minutes of the answer — such as the same event the day before, plus a day — which needs
/// one solution instead of two.
pub fn event_near(
    place: Place,
    day: i64,
    today: Terms,
    tomorrow: Terms,
    event: Event,
    estimate: i64,
) -> Result<i64, Polar> {
    let minutes = (estimate - day * DAY_MS) as f64 / 60_000.0;
    if !(-1440.0..2880.0).contains(&minutes) {
        return self::event(place, day, today, tomorrow, event);
    }
    solve(place, day, today, tomorrow, event, minutes, 1)
}

fn solve(
    place: Place,
    day: i64,
    today: Terms,
    tomorrow: Terms,
    event: Event,
    start: f64,
    rounds: u32,
) -> Result<i64, Polar> {
    let cos_zenith = event.cos_zenith();
    let sign = if event.rising() { -1.0 } else { 1.0 };
    let mut minutes = start;
    for _ in 0..rounds {
        let terms = today.lerp(tomorrow, minutes / 1440.0);
        let sin_d = terms.sin_declination;
        let cos_d = (1.0 - sin_d * sin_d).sqrt();
        // cos(hour angle) = (cos z − sin φ sin δ) / (cos φ cos δ)
        let x = (cos_zenith - place.sin_lat * sin_d) / (place.cos_lat * cos_d);
        // (At a pole both sides divide by zero and the comparison decides on infinity.)
        if x < -1.0 {
            return Err(Polar::AlwaysAbove);
        }
        if x > 1.0 || x.is_nan() {
            return Err(Polar::AlwaysBelow);
        }
        let hour_angle = x.acos().to_degrees();
        let noon = 720.0 - 4.0 * place.lon - terms.equation_of_time;
        minutes = noon + sign * 4.0 * hour_angle;
    }
    // Round half away from zero without a call into the maths library.
    let ms = minutes * 60_000.0;
    let ms = if ms >= 0.0 {
        (ms + 0.5) as i64
    } else {
        (ms - 0.5) as i64
    };
    Ok(day * DAY_MS + ms)
}

/// Solar terms for a run of days, each computed once.
#[derive(Debug, Clone, Default)]
pub struct Almanac {
    first: i64,
    terms: Vec<Terms>,
}

impl Almanac {
    /// Terms for days `first ..= last + 1` (the day after is needed for interpolation).
    pub fn new(first: i64, last: i64) -> Almanac {
        Almanac {
            first,
            terms: (first..=last + 1).map(Terms::for_day).collect(),
        }
    }

    /// The terms of `day` and the day after, from the table when it covers them.
    pub fn pair(&self, day: i64) -> (Terms, Terms) {
        let i = day - self.first;
        if i >= 0 && (i as usize) + 1 < self.terms.len() {
            (self.terms[i as usize], self.terms[i as usize + 1])
        } else {
            (Terms::for_day(day), Terms::for_day(day + 1))
        }
    }

    pub fn event(&self, place: Place, day: i64, which: Event) -> Result<i64, Polar> {
        let (today, tomorrow) = self.pair(day);
        event(place, day, today, tomorrow, which)
    }

    /// [`event`](Self::event) from a close estimate (see [`event_near`]).
    pub fn event_near(
        &self,
        place: Place,
        day: i64,
        which: Event,
        estimate: i64,
    ) -> Result<i64, Polar> {
        let (today, tomorrow) = self.pair(day);
        event_near(place, day, today, tomorrow, which, estimate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cosine_constants_are_the_zenith_angles() {
        for e in [Event::Sunrise, Event::CivilDusk] {
            assert!(
                (e.cos_zenith() - e.zenith().to_radians().cos()).abs() < 1e-12,
                "{e:?}"
            );
        }
    }
}
