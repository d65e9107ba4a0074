//! The workspace settings of browser writes (CONTRACT.md section 11) that
//! have rules of their own: identity verification's modes and the origin
//! patterns of `allowed_origins`, also as the origins CORS preflights are
//! answered for.

use std::sync::{Arc, RwLock};

use crate::domain::error::{Error, Reason};

/// Whether public-key writes must carry an identity signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentityVerification {
    /// No signature needed (the default).
    #[default]
    Off,
    /// Every public-key write needs a valid signature of its distinct_id.
    Required,
}

impl IdentityVerification {
    /// The setting's spelling (`off`, `required`).
    pub const fn as_str(self) -> &'static str {
        match self {
            IdentityVerification::Off => "off",
            IdentityVerification::Required => "required",
        }
    }

    /// The mode a spelling names; `None` for any other.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(IdentityVerification::Off),
            "required" => Some(IdentityVerification::Required),
            _ => None,
        }
    }
}

/// Checks an `allowed_origins` entry: `scheme://host[:port]` with scheme
/// http or https, a host of letters, digits, `-` and `.` (or `*.` first,
/// for every subdomain), no path; returns it in lower case, as browsers
/// send origins. Errors name the entry's index.
pub fn parse_origin_pattern(index: usize, pattern: &str) -> Result<String, Error> {
    let invalid = |why: &str| {
        Error::new_at(
            Reason::InvalidArgument,
            format!("settings.allowed_origins[{index}]"),
            format!(
                "{pattern:?} {why}; write scheme://host[:port], e.g. https://app.example.com or https://*.example.com."
            ),
        )
    };
    let lower = pattern.trim().to_ascii_lowercase();
    let (scheme, rest) = lower
        .split_once("://")
        .ok_or_else(|| invalid("has no scheme"))?;
    if scheme != "http" && scheme != "https" {
        return Err(invalid("is not http or https"));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    if port.is_some_and(|p| p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(invalid("has a bad port"));
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || !name.split('.').all(label_ok) {
        return Err(invalid(
            "has no valid host (a path, a query or a `*` elsewhere than `*.` first?)",
        ));
    }
    Ok(lower)
}

/// Whether `origin` (the request's `Origin`) is one that `patterns` (as
/// [`parse_origin_pattern`] returned them) allow; an empty list allows any
/// origin, even none. `*.example.com` allows every subdomain of
/// example.com, not example.com itself; ports must match as written.
pub fn origin_allowed(patterns: &[String], origin: Option<&str>) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let Some(origin) = origin else {
        return false;
    };
    let origin = origin.trim().to_ascii_lowercase();
    patterns
        .iter()
        .any(|pattern| match pattern.split_once("://*.") {
            None => *pattern == origin,
            Some((scheme, suffix)) => origin
                .strip_prefix(scheme)
                .and_then(|o| o.strip_prefix("://"))
                .and_then(|host| host.strip_suffix(suffix))
                .is_some_and(|sub| {
                    sub.len() > 1
                        && sub.ends_with('.')
                        && sub[..sub.len() - 1]
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                }),
        })
}

/// The origins a CORS preflight may be answered for. A preflight carries
/// no key, so its workspace is unknown: it is answered for any origin that
/// some workspace's `allowed_origins` allows, and for every origin once one
/// workspace allows any (an empty list) or there is no workspace at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PreflightOrigins {
    /// Every origin (the default, and what a server starts with).
    #[default]
    Any,
    /// Only origins these patterns (every workspace's lists together) allow.
    Only(Vec<String>),
}

impl PreflightOrigins {
    /// The origins of workspaces whose `allowed_origins` are `lists`.
    pub fn of_workspaces(lists: impl IntoIterator<Item = Vec<String>>) -> Self {
        let mut patterns = Vec::new();
        for list in lists {
            if list.is_empty() {
                return PreflightOrigins::Any;
            }
            patterns.extend(list);
        }
        if patterns.is_empty() {
            return PreflightOrigins::Any;
        }
        patterns.sort_unstable();
        patterns.dedup();
        PreflightOrigins::Only(patterns)
    }

    /// Whether a preflight from `origin` is answered for: the one matcher
    /// of [`origin_allowed`].
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            PreflightOrigins::Any => true,
            PreflightOrigins::Only(patterns) => origin_allowed(patterns, Some(origin)),
        }
    }
}

/// [`PreflightOrigins`] shared between the CORS layer, which reads them on
/// every preflight, and whoever refreshes them. A std `RwLock` around an
/// `Arc`: reads copy the `Arc` out and never hold the lock while matching,
/// and a refresh only swaps it, so neither waits on the other for long.
#[derive(Debug, Clone, Default)]
pub struct SharedPreflightOrigins(Arc<RwLock<Arc<PreflightOrigins>>>);

impl SharedPreflightOrigins {
    /// The origins as last set.
    pub fn get(&self) -> Arc<PreflightOrigins> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces them.
    pub fn set(&self, origins: PreflightOrigins) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(origins);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<String> {
        list.iter()
            .enumerate()
            .map(|(i, p)| parse_origin_pattern(i, p).unwrap())
            .collect()
    }

    #[test]
    fn origins_match_exactly_or_as_subdomains_of_a_wildcard() {
        let allowed = patterns(&[
            "https://App.example.com",
            "https://*.shop.io",
            "http://localhost:3000",
        ]);
        for origin in [
            "https://app.example.com",
            "https://a.shop.io",
            "https://a.b.shop.io",
            "http://localhost:3000",
        ] {
            assert!(origin_allowed(&allowed, Some(origin)), "{origin}");
        }
        for origin in [
            "https://shop.io",
            "https://evilshop.io",
            "http://a.shop.io",
            "https://app.example.com:8443",
            "http://localhost:3001",
            "https://app.example.com.evil.com",
            "null",
        ] {
            assert!(!origin_allowed(&allowed, Some(origin)), "{origin}");
        }
        assert!(!origin_allowed(&allowed, None), "no Origin");
        assert!(origin_allowed(&[], None), "an empty list allows any");
        assert!(origin_allowed(&[], Some("https://x.y")));
    }

    #[test]
    fn preflights_are_answered_for_the_origins_of_all_workspaces_together() {
        let two = PreflightOrigins::of_workspaces([
            patterns(&["https://app.example.com"]),
            patterns(&["https://*.shop.io", "https://app.example.com"]),
        ]);
        assert_eq!(
            two,
            PreflightOrigins::Only(patterns(&["https://*.shop.io", "https://app.example.com"]))
        );
        assert!(two.allows("https://app.example.com"));
        assert!(two.allows("https://a.shop.io"));
        assert!(!two.allows("https://shop.io"));
        assert!(!two.allows("https://evil.test"));
        // One workspace open to any origin opens preflights to any.
        let open = PreflightOrigins::of_workspaces([patterns(&["https://a.io"]), vec![]]);
        assert_eq!(open, PreflightOrigins::Any);
        assert!(open.allows("https://evil.test"));
        assert_eq!(PreflightOrigins::of_workspaces([]), PreflightOrigins::Any);

        let shared = SharedPreflightOrigins::default();
        assert!(shared.get().allows("https://evil.test"));
        shared.set(two);
        assert!(!shared.clone().get().allows("https://evil.test"));
    }

    #[test]
    fn bad_patterns_are_refused_naming_their_index() {
        for bad in [
            "example.com",
            "ftp://a.com",
            "https://a.com/path",
            "https://*",
            "https://a.*.com",
            "https://a.com:x",
            "https://",
        ] {
            let e = parse_origin_pattern(3, bad).unwrap_err();
            assert_eq!(e.field(), Some("settings.allowed_origins[3]"), "{bad}");
            assert_eq!(e.reason(), Reason::InvalidArgument);
        }
        assert_eq!(
            IdentityVerification::parse("required"),
            Some(IdentityVerification::Required)
        );
        assert_eq!(IdentityVerification::parse("on"), None);
        assert_eq!(IdentityVerification::default().as_str(), "off");
    }
}
