//! Calling hours in the lead's local time (API.md section 6.5), DST-correct through jiff.

use crate::settings::CallingHours;
use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The tz database's `zone.tab` (public domain): country code → zones.
static ZONE_TAB: &str = include_str!("../data/zone.tab");

fn zones_by_country() -> &'static HashMap<&'static str, Vec<&'static str>> {
    static TABLE: OnceLock<HashMap<&'static str, Vec<&'static str>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table: HashMap<&str, Vec<&str>> = HashMap::new();
        for line in ZONE_TAB.lines().filter(|l| !l.starts_with('#')) {
            let mut cols = line.split('\t');
            if let (Some(country), Some(_), Some(zone)) = (cols.next(), cols.next(), cols.next()) {
                table.entry(country).or_default().push(zone);
            }
        }
        table
    })
}

/// The zone a lead's calling hours are read in: its own, else its country's only zone, else the workflow's.
pub fn lead_zone(lead_timezone: Option<&str>, phone_country: Option<&str>, workflow_timezone: &str) -> String {
    if let Some(tz) = lead_timezone.filter(|tz| TimeZone::get(tz).is_ok()) {
        return tz.to_string();
    }
    if let Some([only]) = phone_country.and_then(|c| zones_by_country().get(c)).map(Vec::as_slice) {
        return (*only).to_string();
    }
    workflow_timezone.to_string()
}

fn day_index(day: Weekday) -> usize {
    match day {
        Weekday::Monday => 0,
        Weekday::Tuesday => 1,
        Weekday::Wednesday => 2,
        Weekday::Thursday => 3,
        Weekday::Friday => 4,
        Weekday::Saturday => 5,
        Weekday::Sunday => 6,
    }
}

/// `None` when `now_ms` is inside the calling hours in `zone`; otherwise the next opening (Unix ms).
pub fn next_opening(now_ms: i64, zone: &str, hours: &CallingHours) -> Option<i64> {
    let tz = TimeZone::get(zone).unwrap_or(TimeZone::UTC);
    let now = Timestamp::from_millisecond(now_ms).ok()?;
    let local = now.to_zoned_datetime(tz.clone());
    let days = hours.day_indexes();
    let (start, end) = hours.window_minutes();
    let mut date = local.date();
    for _ in 0..=8 {
        if days.contains(&day_index(date.weekday())) {
            let at = |minutes: u32| {
                date.at((minutes / 60) as i8, (minutes % 60) as i8, 0, 0)
                    .to_zoned_datetime(tz.clone())
                    .map(|z| z.timestamp().as_millisecond())
            };
            if let (Ok(open), Ok(close)) = (at(start), at(end)) {
                if now_ms < open {
                    return Some(open);
                }
                if now_ms < close {
                    return None;
                }
            }
        }
        date = date.tomorrow().ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(days: &[&str], start: &str, end: &str) -> CallingHours {
        CallingHours {
            days: days.iter().map(|d| d.to_string()).collect(),
            start: start.into(),
            end: end.into(),
        }
    }

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn bogota_never_admits_three_am() {
        let h = hours(&["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "09:00", "20:00");
        // 03:00 in Bogota (UTC-5) is 08:00 UTC.
        let opening = next_opening(ms("2026-03-10T08:00:00Z"), "America/Bogota", &h).unwrap();
        assert_eq!(opening, ms("2026-03-10T14:00:00Z"));
        // 19:59 local is inside; 20:00 local (01:00 UTC next day) is not.
        assert_eq!(next_opening(ms("2026-03-11T00:59:00Z"), "America/Bogota", &h), None);
        assert_eq!(
            next_opening(ms("2026-03-11T01:00:00Z"), "America/Bogota", &h),
            Some(ms("2026-03-11T14:00:00Z"))
        );
    }

    #[test]
    fn opening_moves_with_dst() {
        let h = hours(&["mon", "tue", "wed", "thu", "fri"], "09:00", "18:00");
        // New York springs forward on Sunday 2026-03-08; Monday 09:00 EDT is 13:00 UTC.
        let opening = next_opening(ms("2026-03-07T15:00:00Z"), "America/New_York", &h).unwrap();
        assert_eq!(opening, ms("2026-03-09T13:00:00Z"));
        // The Friday before, 09:00 EST is 14:00 UTC.
        assert_eq!(
            next_opening(ms("2026-03-06T13:30:00Z"), "America/New_York", &h),
            Some(ms("2026-03-06T14:00:00Z"))
        );
    }

    #[test]
    fn zones_by_lead_country_and_workflow() {
        assert_eq!(lead_zone(Some("Europe/Paris"), Some("IN"), "UTC"), "Europe/Paris");
        assert_eq!(lead_zone(None, Some("IN"), "UTC"), "Asia/Kolkata");
        assert_eq!(lead_zone(None, Some("US"), "America/Chicago"), "America/Chicago");
        assert_eq!(lead_zone(Some("Not/AZone"), None, "UTC"), "UTC");
    }
}
