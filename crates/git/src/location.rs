//! Where a repository lives: parsing a caller's URL or path, keeping its credentials
//! apart, redacting it for display and naming its cache directory.

use sha2::{Digest, Sha256};

use crate::error::GitError;

/// Shown in place of the `user:password@` part of a URL.
const REDACTED: &str = "***";

/// Returns `url` with any credentials replaced by `***`, for logs and messages.
///
/// `https://user:token@github.com/org/repo` becomes `https://***@github.com/org/repo`.
/// HTTP(S) URLs lose a bare user name too (GitHub accepts a token as the user name);
/// other schemes keep a user name without a password (`ssh://git@host/…`). Strings
/// that are not URLs are returned unchanged unless they look like `user:pw@host:path`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
            if http || userinfo.contains(':') {
                return format!("{scheme}://{REDACTED}@{}", &rest[at + 1..]);
            }
        }
        return url.to_owned();
    }
    // scp-like `user@host:path`: a password would need a ':' before the '@'.
    if let Some(at) = url.rfind('@')
        && url[..at].contains(':')
        && !url[..at].contains('/')
    {
        return format!("{REDACTED}@{}", &url[at + 1..]);
    }
    url.to_owned()
}

/// Credentials taken out of an HTTP(S) URL, handed to git through its environment.
#[derive(Clone)]
pub(crate) struct Credentials {
    /// `host[:port]` the credentials are for; the helper answers no other host.
    pub host: String,
    pub username: String,
    pub password: String,
}

/// A parsed repository location. Its `Debug` shows only the redacted form.
#[derive(Clone)]
pub(crate) struct Location {
    /// What git fetches from: the URL without HTTP(S) credentials, or the local path.
    pub fetch_url: String,
    /// What is shown: [`redact_url`] of the input.
    pub display: String,
    /// Identity of the repository for the cache: no credentials, normalised.
    key: String,
    pub credentials: Option<Credentials>,
    /// Strings that must never appear in a message (raw and decoded secrets).
    secrets: Vec<String>,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Location").field(&self.display).finish()
    }
}

impl Location {
    /// Parses an absolute local path, a `file://` URL, a `scheme://` URL or an
    /// scp-like `[user@]host:path`. Relative paths are refused: they would name a
    /// different repository depending on the current directory.
    pub fn parse(input: &str) -> Result<Location, GitError> {
        let display = redact_url(input);
        let invalid = |reason: &str| GitError::InvalidRepo {
            repo: display.clone(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(invalid("the repository location is empty"));
        }
        if input.chars().any(char::is_control) {
            return Err(invalid(
                "the repository location contains control characters",
            ));
        }
        if input.starts_with('-') {
            return Err(invalid("a repository location cannot start with '-'"));
        }

        if input.starts_with('/') {
            return Ok(Location {
                fetch_url: input.to_owned(),
                display,
                key: trim_trailing_slashes(input).to_owned(),
                credentials: None,
                secrets: Vec::new(),
            });
        }

        if let Some((scheme, rest)) = input.split_once("://") {
            if scheme.is_empty()
                || !scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            {
                return Err(invalid("the URL scheme is malformed"));
            }
            let scheme_lower = scheme.to_ascii_lowercase();
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let (userinfo, host) = match authority.rfind('@') {
                Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
                None => (None, authority),
            };

            if scheme_lower == "file" {
                if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                    return Err(invalid("a file:// URL must name a local path"));
                }
                if path.is_empty() {
                    return Err(invalid("the file:// URL has no path"));
                }
                return Ok(Location {
                    fetch_url: format!("file://{path}"),
                    display,
                    key: trim_trailing_slashes(path).to_owned(),
                    credentials: None,
                    secrets: userinfo.map(secrets_of).unwrap_or_default(),
                });
            }

            if host.is_empty() {
                return Err(invalid("the URL has no host"));
            }
            let key = format!(
                "{scheme_lower}://{}{}",
                host.to_ascii_lowercase(),
                trim_git_suffix(trim_trailing_slashes(path))
            );
            let http = scheme_lower == "http" || scheme_lower == "https";
            let (fetch_url, credentials) = match userinfo {
                Some(userinfo) if http => {
                    let (user, password) = match userinfo.split_once(':') {
                        Some((u, p)) => (u, p),
                        None => (userinfo, ""),
                    };
                    let credentials = Credentials {
                        host: host.to_owned(),
                        username: percent_decode(user),
                        password: percent_decode(password),
                    };
                    (format!("{scheme}://{host}{path}"), Some(credentials))
                }
                _ => (input.to_owned(), None),
            };
            let secrets = match userinfo {
                Some(u) if http || u.contains(':') => secrets_of(u),
                _ => Vec::new(),
            };
            return Ok(Location {
                fetch_url,
                display,
                key,
                credentials,
                secrets,
            });
        }

        // scp-like syntax, as git defines it: a ':' before any '/'.
        match (input.find(':'), input.find('/')) {
            (Some(colon), slash) if colon > 0 && slash.is_none_or(|s| colon < s) => {
                let (userhost, path) = input.split_at(colon);
                let host = userhost.rsplit_once('@').map_or(userhost, |(_, h)| h);
                Ok(Location {
                    fetch_url: input.to_owned(),
                    display,
                    key: format!(
                        "ssh://{}/{}",
                        host.to_ascii_lowercase(),
                        trim_git_suffix(trim_trailing_slashes(path[1..].trim_start_matches('/')))
                    ),
                    credentials: None,
                    secrets: Vec::new(),
                })
            }
            _ => Err(invalid(
                "a local repository must be given as an absolute path or a file:// URL",
            )),
        }
    }

    /// The cache entry's file name without extension: `<safe last segment>-<hash>`.
    pub fn cache_name(&self) -> String {
        let last = self
            .key
            .rsplit(['/', ':'])
            .find(|s| !s.is_empty())
            .unwrap_or("");
        let last = last.strip_suffix(".git").unwrap_or(last);
        let mut name: String = last
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .take(48)
            .collect();
        name = name.trim_start_matches(['.', '-']).to_owned();
        if name.is_empty() {
            name = "repo".to_owned();
        }
        let digest = Sha256::digest(self.key.as_bytes());
        let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("{name}-{hash}")
    }

    /// Removes every secret of this location from `text` (git's messages).
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            // Very short strings would blank out ordinary text and protect nothing.
            if secret.len() >= 4 {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }
}

/// The strings of a userinfo that must not be shown: whole, and its password part,
/// raw and percent-decoded. (A bare HTTP user name may be a token, so it counts.)
fn secrets_of(userinfo: &str) -> Vec<String> {
    let mut secrets = vec![userinfo.to_owned(), percent_decode(userinfo)];
    if let Some((_, password)) = userinfo.split_once(':') {
        secrets.push(password.to_owned());
        secrets.push(percent_decode(password));
    }
    // Longest first, so a password inside the whole userinfo is not replaced first.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

fn trim_trailing_slashes(s: &str) -> &str {
    let trimmed = s.trim_end_matches('/');
    if trimmed.is_empty() { s } else { trimmed }
}

fn trim_git_suffix(s: &str) -> &str {
    s.strip_suffix(".git").unwrap_or(s)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_url("https://user:s3cret@github.com/org/repo"),
            "https://***@github.com/org/repo"
        );
        assert_eq!(
            redact_url("https://ghp_token@github.com/org/repo"),
            "https://***@github.com/org/repo"
        );
        assert_eq!(
            redact_url("https://github.com/org/repo"),
            "https://github.com/org/repo"
        );
        assert_eq!(
            redact_url("ssh://git@github.com/org/repo"),
            "ssh://git@github.com/org/repo"
        );
        assert_eq!(
            redact_url("ssh://git:pw@github.com/org/repo"),
            "ssh://***@github.com/org/repo"
        );
        assert_eq!(
            redact_url("git@github.com:org/repo.git"),
            "git@github.com:org/repo.git"
        );
        assert_eq!(redact_url("u:pw@host:org/repo"), "***@host:org/repo");
        assert_eq!(redact_url("/srv/repos/a@b"), "/srv/repos/a@b");
        // An '@' in the path is not userinfo.
        assert_eq!(redact_url("https://host/org/a@b"), "https://host/org/a@b");
    }

    #[test]
    fn parses_http_credentials_out_of_the_url() {
        let loc =
            Location::parse("https://jobrunner:t%40ken@example.org:8443/org/repo.git").unwrap();
        assert_eq!(loc.fetch_url, "https://example.org:8443/org/repo.git");
        assert_eq!(loc.display, "https://***@example.org:8443/org/repo.git");
        let creds = loc.credentials.unwrap();
        assert_eq!(creds.host, "example.org:8443");
        assert_eq!(creds.username, "jobrunner");
        assert_eq!(creds.password, "t@ken");
        assert!(!format!("{:?}", loc.display).contains("ken"));
    }

    #[test]
    fn scrubs_raw_and_decoded_secrets() {
        let loc = Location::parse("https://me:p%40ssword@host/r").unwrap();
        let text = "failed for https://me:p%40ssword@host/r and p@ssword";
        let scrubbed = loc.scrub(text);
        assert!(!scrubbed.contains("ssword"), "{scrubbed}");
    }

    #[test]
    fn refuses_relative_and_odd_locations() {
        for bad in [
            "",
            "relative/path",
            "repo",
            "-upload-pack=evil",
            "a\nb",
            "https:///x",
        ] {
            let err = Location::parse(bad).unwrap_err();
            assert!(
                matches!(err, GitError::InvalidRepo { .. }),
                "{bad:?}: {err}"
            );
        }
        for good in [
            "/abs/path",
            "file:///abs/path",
            "https://github.com/org/repo",
            "git@github.com:org/repo.git",
            "ssh://git@host:22/org/repo",
        ] {
            Location::parse(good).unwrap();
        }
    }

    #[test]
    fn cache_names_are_safe_and_ignore_credentials() {
        let a = Location::parse("https://u:one@github.com/org/My%20Study.git").unwrap();
        let b = Location::parse("https://u:two@github.com/org/My%20Study/").unwrap();
        assert_eq!(a.cache_name(), b.cache_name());
        assert!(
            a.cache_name().starts_with("My_20Study-"),
            "{}",
            a.cache_name()
        );
        let local = Location::parse("/srv/x/study").unwrap();
        let file = Location::parse("file:///srv/x/study").unwrap();
        assert_eq!(local.cache_name(), file.cache_name());
        let other = Location::parse("/srv/y/study").unwrap();
        assert_ne!(local.cache_name(), other.cache_name());
        let dots = Location::parse("/srv/..").unwrap();
        assert!(!dots.cache_name().starts_with('.'));
        let name = a.cache_name();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
    }
}
