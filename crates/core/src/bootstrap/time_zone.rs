//! Time zones: the IANA names a section may give, and the Windows zone id of each (Windows
//! nodes' `Set-TimeZone`).

/// IANA zone shape: `UTC`, `Europe/Berlin`, `America/Argentina/Buenos_Aires`.
/// A name in the IANA time zone database (chrono-tz's copy, the one schedules use), so
/// `Mars/Base` never reaches a node's cloud-init or `tzutil`.
pub(super) fn is_iana_zone(s: &str) -> bool {
    s.len() <= 64 && s.parse::<chrono_tz::Tz>().is_ok()
}

/// The Windows time zone id for an IANA zone (from the CLDR `windowsZones` table, the
/// zones render studios are in most).
pub fn windows_time_zone(iana: &str) -> Option<&'static str> {
    const TABLE: &[(&str, &str)] = &[
        ("UTC", "UTC"),
        ("Etc/UTC", "UTC"),
        ("Etc/GMT", "UTC"),
        ("Europe/London", "GMT Standard Time"),
        ("Europe/Dublin", "GMT Standard Time"),
        ("Europe/Lisbon", "GMT Standard Time"),
        ("Europe/Berlin", "W. Europe Standard Time"),
        ("Europe/Amsterdam", "W. Europe Standard Time"),
        ("Europe/Vienna", "W. Europe Standard Time"),
        ("Europe/Rome", "W. Europe Standard Time"),
        ("Europe/Stockholm", "W. Europe Standard Time"),
        ("Europe/Zurich", "W. Europe Standard Time"),
        ("Europe/Oslo", "W. Europe Standard Time"),
        ("Europe/Paris", "Romance Standard Time"),
        ("Europe/Brussels", "Romance Standard Time"),
        ("Europe/Madrid", "Romance Standard Time"),
        ("Europe/Copenhagen", "Romance Standard Time"),
        ("Europe/Warsaw", "Central European Standard Time"),
        ("Europe/Prague", "Central Europe Standard Time"),
        ("Europe/Budapest", "Central Europe Standard Time"),
        ("Europe/Helsinki", "FLE Standard Time"),
        ("Europe/Kiev", "FLE Standard Time"),
        ("Europe/Kyiv", "FLE Standard Time"),
        ("Europe/Athens", "GTB Standard Time"),
        ("Europe/Bucharest", "GTB Standard Time"),
        ("Europe/Istanbul", "Turkey Standard Time"),
        ("Europe/Moscow", "Russian Standard Time"),
        ("America/New_York", "Eastern Standard Time"),
        ("America/Toronto", "Eastern Standard Time"),
        ("America/Chicago", "Central Standard Time"),
        ("America/Denver", "Mountain Standard Time"),
        ("America/Phoenix", "US Mountain Standard Time"),
        ("America/Los_Angeles", "Pacific Standard Time"),
        ("America/Vancouver", "Pacific Standard Time"),
        ("America/Anchorage", "Alaskan Standard Time"),
        ("America/Mexico_City", "Central Standard Time (Mexico)"),
        ("America/Bogota", "SA Pacific Standard Time"),
        ("America/Sao_Paulo", "E. South America Standard Time"),
        ("America/Argentina/Buenos_Aires", "Argentina Standard Time"),
        ("Pacific/Honolulu", "Hawaiian Standard Time"),
        ("Pacific/Auckland", "New Zealand Standard Time"),
        ("Asia/Tokyo", "Tokyo Standard Time"),
        ("Asia/Seoul", "Korea Standard Time"),
        ("Asia/Shanghai", "China Standard Time"),
        ("Asia/Hong_Kong", "China Standard Time"),
        ("Asia/Taipei", "Taipei Standard Time"),
        ("Asia/Singapore", "Singapore Standard Time"),
        ("Asia/Kolkata", "India Standard Time"),
        ("Asia/Dubai", "Arabian Standard Time"),
        ("Australia/Sydney", "AUS Eastern Standard Time"),
        ("Australia/Melbourne", "AUS Eastern Standard Time"),
        ("Australia/Brisbane", "E. Australia Standard Time"),
        ("Australia/Perth", "W. Australia Standard Time"),
        ("Africa/Johannesburg", "South Africa Standard Time"),
    ];
    TABLE.iter().find(|(k, _)| *k == iana).map(|(_, v)| *v)
}
