//! Object identifiers: a type prefix plus 12 characters of `[0-9a-z]` from a CSPRNG.

use rand::Rng;

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const ID_LEN: usize = 12;

pub const ORGANIZATION: &str = "org_";
pub const WORKFLOW: &str = "wfl_";
pub const NODE: &str = "node_";
pub const EDGE: &str = "edge_";
pub const LEAD: &str = "wlead_";
pub const API_KEY: &str = "key_";
pub const CALL: &str = "call_";
pub const AGENT: &str = "agt_";
pub const PHONE_NUMBER: &str = "phn_";
pub const REQUEST: &str = "req_";

fn random_chars(len: usize) -> String {
    // `rand::rng()` is a CSPRNG seeded from the operating system.
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", random_chars(ID_LEN))
}

/// A random secret for API keys (32 characters, about 165 bits).
pub fn new_secret() -> String {
    random_chars(32)
}

/// Whether `value` has the shape of an id with this prefix.
pub fn is_id(prefix: &str, value: &str) -> bool {
    value
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == ID_LEN && rest.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_shape() {
        let id = new_id(WORKFLOW);
        assert!(is_id(WORKFLOW, &id), "{id}");
        assert!(!is_id(NODE, &id));
        assert!(!is_id(WORKFLOW, "wfl_ABC"));
    }
}
