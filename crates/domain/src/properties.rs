//! Property tests: lead-file reading and phone normalisation never panic, and valid input round-trips.

use crate::leadfile::{RawLead, csv_rows};
use crate::phone::normalize;
use proptest::prelude::*;

fn read(bytes: &[u8]) -> Result<Vec<RawLead>, crate::Invalid> {
    csv_rows(bytes)?.collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_csv_reader(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read(&bytes);
    }

    #[test]
    fn arbitrary_text_never_panics_the_csv_reader(text in "(phone_number|name|[a-z ]{0,6})([,;\t][a-z ]{0,6}){0,4}\n([0-9+a-z ,;\t\"'\n-]{0,40}\n){0,8}") {
        let _ = read(text.as_bytes());
    }

    #[test]
    fn valid_rows_round_trip(rows in proptest::collection::vec(("[0-9]{7}", "[A-Za-z][A-Za-z ]{0,10}[A-Za-z]", "[a-z]{1,8}"), 1..30),
                             delimiter in prop::sample::select(vec![',', ';', '\t'])) {
        let d = delimiter.to_string();
        let mut file = format!("phone_number{d}name{d}city\n");
        for (digits, name, city) in &rows {
            file.push_str(&format!("+1201{digits}{d}{name}{d}{city}\n"));
        }
        let leads = read(file.as_bytes()).unwrap();
        prop_assert_eq!(leads.len(), rows.len());
        for (i, (lead, (digits, name, city))) in leads.iter().zip(&rows).enumerate() {
            prop_assert_eq!(lead.position, i + 1);
            prop_assert_eq!(lead.phone_number.clone(), Some(format!("+1201{digits}")));
            prop_assert_eq!(lead.variables["name"].as_str(), Some(name.trim()));
            prop_assert_eq!(lead.variables["city"].as_str(), Some(city.as_str()));
        }
    }

    #[test]
    fn arbitrary_text_never_panics_normalisation(text in "\\PC{0,40}", country in prop::option::of("[A-Z]{2}")) {
        if let Some(number) = normalize(&text, country.as_deref()) {
            prop_assert!(number.number.starts_with('+'));
            prop_assert!(number.number[1..].bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn normalised_numbers_are_fixed_points(national in "[2-9][0-9]{2}[2-9][0-9]{6}") {
        // Whatever a US national number reads as, reading its E.164 form again gives the same number.
        if let Some(first) = normalize(&national, Some("US")) {
            let again = normalize(&first.number, None).expect("an E.164 result reads back");
            prop_assert_eq!(again, first);
        }
    }

    #[test]
    fn formatting_noise_does_not_change_the_number(digits in "[2-9][0-9]{9}") {
        let plain = normalize(&format!("+91{digits}"), None);
        let noisy = normalize(&format!("'+91 ({}) {}-{}", &digits[..3], &digits[3..6], &digits[6..]), None);
        prop_assert_eq!(plain, noisy);
    }
}
