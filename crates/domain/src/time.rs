//! Instants are integer Unix milliseconds everywhere inside; RFC 3339 with milliseconds at the edges.

use jiff::Timestamp;

pub fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

pub fn format_ms(ms: i64) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => String::from("1970-01-01T00:00:00.000Z"),
    }
}

/// Serde helpers so records can keep `i64` milliseconds and still print RFC 3339.
pub mod rfc3339 {
    pub fn serialize<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_ms(*ms))
    }

    pub mod option {
        pub fn serialize<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_str(&crate::time::format_ms(*ms)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_with_milliseconds() {
        assert_eq!(super::format_ms(1_709_283_600_000), "2024-03-01T09:00:00.000Z");
        assert_eq!(super::format_ms(1_709_283_600_123), "2024-03-01T09:00:00.123Z");
    }
}
