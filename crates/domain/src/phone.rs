//! Phone numbers to E.164 (API.md section 5), using the libphonenumber port `phonenumber`.

use phonenumber::{Mode, country};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E164 {
    /// `+<country code><number>`.
    pub number: String,
    /// ISO 3166 alpha-2 region of the number, when it belongs to one.
    pub country: Option<String>,
}

/// Reads `raw` as a phone number: international with `+`/`00`, else national in `default_country`.
/// Returns `None` for anything that is not a valid number.
pub fn normalize(raw: &str, default_country: Option<&str>) -> Option<E164> {
    let trimmed = raw.trim().trim_start_matches('\'');
    if trimmed.contains(['e', 'E']) {
        // Exponent notation (`9.19876E+11`): the spreadsheet already lost digits.
        return None;
    }
    let cleaned: String = trimmed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}'))
        .collect();
    let international = if let Some(rest) = cleaned.strip_prefix("00") {
        Some(format!("+{rest}"))
    } else if cleaned.starts_with('+') {
        Some(cleaned.clone())
    } else {
        None
    };
    let digits = international.as_deref().unwrap_or(&cleaned);
    if digits.trim_start_matches('+').is_empty() || !digits.trim_start_matches('+').bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let parsed = match international {
        Some(text) => phonenumber::parse(None, text).ok().filter(phonenumber::is_valid)?,
        None => national(&cleaned, default_country?)?,
    };
    let country = parsed.country().id().map(|id| id.as_ref().to_string());
    Some(E164 {
        number: parsed.format().mode(Mode::E164).to_string(),
        country,
    })
}

/// Reads a national-format number in `region`. The number as dialled at home (its trunk prefix dropped)
/// wins; otherwise the library's reading, which also accepts a leading country code without `+`.
fn national(digits: &str, region: &str) -> Option<phonenumber::PhoneNumber> {
    let region_id: country::Id = region.parse().ok()?;
    let metadata = phonenumber::metadata::DATABASE.by_id(region)?;
    let local = metadata
        .national_prefix()
        .and_then(|prefix| digits.strip_prefix(prefix))
        .unwrap_or(digits);
    let as_dialled = format!("+{}{local}", metadata.country_code());
    phonenumber::parse(None, as_dialled)
        .ok()
        .filter(|n| phonenumber::is_valid(n) && n.country().id() == Some(region_id))
        .or_else(|| {
            phonenumber::parse(Some(region_id), digits)
                .ok()
                .filter(phonenumber::is_valid)
        })
}

/// The region of an E.164 number already normalised.
pub fn country_of(e164: &str) -> Option<String> {
    normalize(e164, None).and_then(|n| n.country)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_national_and_international() {
        assert_eq!(normalize("98765 43210", Some("IN")).unwrap().number, "+919876543210");
        assert_eq!(normalize("9123456789", Some("IN")).unwrap().number, "+919123456789");
        assert_eq!(normalize("098765 43211", Some("IN")).unwrap().number, "+919876543211");
        assert_eq!(
            normalize("(91) 98765-43212", Some("IN")).unwrap().number,
            "+919876543212"
        );
        assert_eq!(normalize("12015550113", Some("US")).unwrap().number, "+12015550113");
        assert_eq!(normalize("06 6982 1234", Some("IT")).unwrap().number, "+390669821234");
        assert_eq!(normalize("0091 98765-43210", None).unwrap().number, "+919876543210");
        let us = normalize("'(201) 555-0111", Some("US")).unwrap();
        assert_eq!(
            (us.number.as_str(), us.country.as_deref()),
            ("+12015550111", Some("US"))
        );
        assert_eq!(normalize("+447400123456", None).unwrap().country.as_deref(), Some("GB"));
    }

    #[test]
    fn rejects_bad_numbers() {
        assert!(normalize("9876543210", None).is_none(), "national without a country");
        assert!(normalize("1.20156E+10", Some("US")).is_none(), "exponent notation");
        assert!(normalize("98765", Some("IN")).is_none());
        assert!(normalize("", Some("IN")).is_none());
        assert!(normalize("call me", Some("IN")).is_none());
    }
}
