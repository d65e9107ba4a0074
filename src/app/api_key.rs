//! The API key format: `sk_live_`, `pk_live_`, `sk_test_` or `pk_test_`,
//! then 32 random base62 characters (190 bits from the OS CSPRNG), then a
//! 6-character base62 CRC32 of everything before it, as GitHub's tokens do.
//! The checksum lets a mistyped or truncated key be refused without a
//! database look-up, and lets secret scanners recognise leaked keys.

use sha2::{Digest, Sha256};

use crate::domain::{KeyKind, Mode};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PREFIX_LEN: usize = 8;
const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// The length of every well-formed key.
pub(crate) const KEY_LEN: usize = PREFIX_LEN + RANDOM_LEN + CHECKSUM_LEN;

/// A well-formed key (right prefix, length, alphabet and checksum). Whether
/// it exists is for the key store to say.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    text: String,
    kind: KeyKind,
    mode: Mode,
}

impl std::fmt::Debug for ApiKey {
    /// Only the prefix: keys must never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({}…)", self.display_prefix())
    }
}

impl ApiKey {
    /// A new random key of `kind` and `mode`.
    pub fn generate(kind: KeyKind, mode: Mode) -> Result<Self, getrandom::Error> {
        let mut text = String::with_capacity(KEY_LEN);
        text.push_str(prefix(kind, mode));
        while text.len() < PREFIX_LEN + RANDOM_LEN {
            let mut bytes = [0u8; 64];
            getrandom::fill(&mut bytes)?;
            // Rejection sampling keeps every character uniform: 248 = 4 * 62.
            for b in bytes.into_iter().filter(|b| *b < 248) {
                if text.len() == PREFIX_LEN + RANDOM_LEN {
                    break;
                }
                text.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
        let checksum = checksum(&text);
        text.push_str(&checksum);
        Ok(Self { text, kind, mode })
    }

    /// Checks the form of `text` without any look-up; `None` if it can't be a key.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != KEY_LEN || !text.is_ascii() {
            return None;
        }
        let (kind, mode) = match &text[..PREFIX_LEN] {
            "sk_live_" => (KeyKind::Secret, Mode::Live),
            "pk_live_" => (KeyKind::Public, Mode::Live),
            "sk_test_" => (KeyKind::Secret, Mode::Test),
            "pk_test_" => (KeyKind::Public, Mode::Test),
            _ => return None,
        };
        let (body, sum) = text.split_at(PREFIX_LEN + RANDOM_LEN);
        if !body[PREFIX_LEN..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
            || checksum(body) != sum
        {
            return None;
        }
        Some(Self {
            text: text.to_owned(),
            kind,
            mode,
        })
    }

    /// Secret or public.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Live or test.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The whole key; show it once, when created.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// SHA-256 of the key: the only form that is stored. Keys carry 190
    /// random bits, so a fast hash is enough (no password stretching needed).
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.text.as_bytes()).into()
    }

    /// The prefix and first 4 random characters, to tell keys apart in lists.
    pub fn display_prefix(&self) -> String {
        self.text[..PREFIX_LEN + 4].to_owned()
    }
}

fn prefix(kind: KeyKind, mode: Mode) -> &'static str {
    match (kind, mode) {
        (KeyKind::Secret, Mode::Live) => "sk_live_",
        (KeyKind::Public, Mode::Live) => "pk_live_",
        (KeyKind::Secret, Mode::Test) => "sk_test_",
        (KeyKind::Public, Mode::Test) => "pk_test_",
    }
}

/// CRC32 of `body` in 6 base62 digits (62^6 > 2^32), most significant first.
fn checksum(body: &str) -> String {
    let mut n = u64::from(crc32fast::hash(body.as_bytes()));
    let mut digits = [b'0'; CHECKSUM_LEN];
    for d in digits.iter_mut().rev() {
        *d = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(digits.to_vec()).expect("base62 digits are ASCII")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn generated_keys_parse_back_with_their_kind_and_mode() {
        for kind in [KeyKind::Secret, KeyKind::Public] {
            for mode in [Mode::Live, Mode::Test] {
                let key = ApiKey::generate(kind, mode).unwrap();
                assert_eq!(key.expose().len(), KEY_LEN);
                let parsed = ApiKey::parse(key.expose()).expect("well-formed");
                assert_eq!((parsed.kind(), parsed.mode()), (kind, mode));
                assert_eq!(parsed.hash(), key.hash());
            }
        }
    }

    #[test]
    fn two_generated_keys_differ() {
        let a = ApiKey::generate(KeyKind::Secret, Mode::Live).unwrap();
        let b = ApiKey::generate(KeyKind::Secret, Mode::Live).unwrap();
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn malformed_keys_are_refused() {
        let key = ApiKey::generate(KeyKind::Secret, Mode::Live).unwrap();
        let text = key.expose();
        let wrong_prefix = format!("xk_live_{}", &text[PREFIX_LEN..]);
        let truncated = &text[..KEY_LEN - 1];
        let longer = format!("{text}0");
        let mut typo = text.as_bytes().to_vec();
        typo[12] = if typo[12] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        let mode_swapped = text.replacen("sk_live_", "sk_test_", 1);
        for bad in [
            "",
            wrong_prefix.as_str(),
            truncated,
            longer.as_str(),
            typo.as_str(),
            mode_swapped.as_str(),
        ] {
            assert!(ApiKey::parse(bad).is_none(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = ApiKey::generate(KeyKind::Public, Mode::Test).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&key.expose()[PREFIX_LEN + 4..]), "{shown}");
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,60}") {
            let _ = ApiKey::parse(&text);
        }

        #[test]
        fn any_single_character_change_is_caught(position in 8usize..KEY_LEN, replacement in "[0-9A-Za-z]") {
            let key = ApiKey::generate(KeyKind::Secret, Mode::Live).unwrap();
            let mut bytes = key.expose().as_bytes().to_vec();
            let new = replacement.as_bytes()[0];
            prop_assume!(bytes[position] != new);
            bytes[position] = new;
            prop_assert!(ApiKey::parse(std::str::from_utf8(&bytes).unwrap()).is_none());
        }
    }
}
