//! Docker image references (SPEC §2.3): parsing with the grammar of
//! `distribution/reference` and normalisation the way the docker CLI does it
//! (`redis` → `docker.io/library/redis:latest`).

use std::fmt;

use thiserror::Error;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host, with port if any (`docker.io`, `localhost:5000`).
    pub domain: String,
    /// Repository path below the registry (`library/redis`).
    pub path: String,
    /// Tag; `latest` when neither tag nor digest was written.
    pub tag: Option<String>,
    /// `algorithm:hex`.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReferenceError {
    #[error("empty image reference")]
    Empty,
    #[error("invalid image reference `{0}`: {1}")]
    Invalid(String, &'static str),
}

const MAX_NAME: usize = 255;

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let bad = |why: &'static str| ReferenceError::Invalid(s.to_string(), why);
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                check_digest(d).map_err(bad)?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                check_tag(t).map_err(bad)?;
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(bad("missing repository name"));
        }
        if name.len() > MAX_NAME {
            return Err(bad("repository name longer than 255 characters"));
        }
        if name.len() == 64 && is_lower_hex(name) {
            // Docker reads a bare 64-hex string as an image ID, never as a repository.
            return Err(bad(
                "a 64-hex-digit string is an image ID, not a repository name",
            ));
        }
        let (domain, path) = split_domain(name);
        if let Some(d) = &domain {
            check_domain(d).map_err(bad)?;
        }
        for comp in path.split('/') {
            check_path_component(comp).map_err(bad)?;
        }
        let domain = domain.unwrap_or_else(|| "docker.io".to_string());
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path`, the repository without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// What to pass as the `tag` of a pull: the digest when there is one, else the tag.
    pub fn tag_or_digest(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's rule: the first component is a registry when it has a `.` or `:`, is
/// `localhost`, or has upper-case letters; otherwise the image is on Docker Hub.
fn split_domain(name: &str) -> (Option<String>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            let d = if first == "index.docker.io" {
                "docker.io"
            } else {
                first
            };
            (Some(d.to_string()), rest)
        }
        _ => (None, name),
    }
}

fn check_domain(d: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        // IPv6 literal
        let (h, after) = rest.split_once(']').ok_or("unterminated IPv6 address")?;
        if h.is_empty() || !h.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err("invalid IPv6 address");
        }
        (None, after.strip_prefix(':'))
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(host) = host {
        for comp in host.split('.') {
            let ok = !comp.is_empty()
                && comp.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !comp.starts_with('-')
                && !comp.ends_with('-');
            if !ok {
                return Err("invalid registry host");
            }
        }
    }
    if let Some(p) = port
        && (p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("invalid registry port");
    }
    Ok(())
}

fn check_path_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty path component");
    }
    if c.chars().any(|ch| ch.is_ascii_uppercase()) {
        return Err("repository name must be lowercase");
    }
    // alpha-numeric (separator alpha-numeric)*, separator = [_.] | __ | -+
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err("path components must start and end with a letter or digit");
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return Err("invalid characters in repository name");
        }
    }
    Ok(())
}

fn check_tag(t: &str) -> Result<(), &'static str> {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    if b.is_empty()
        || b.len() > 128
        || !word(b[0])
        || !b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
    {
        return Err("invalid tag");
    }
    Ok(())
}

/// Digits and `a`-`f` only (an image ID, the hex part of a sha256/sha512 digest).
fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_digest(d: &str) -> Result<(), &'static str> {
    let (alg, hex) = d.split_once(':').ok_or("invalid digest")?;
    let alg_ok = !alg.is_empty()
        && alg.split(['+', '.', '_', '-']).all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !alg_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("invalid digest");
    }
    let lower_hex = is_lower_hex(hex);
    match alg {
        "sha256" if hex.len() != 64 || !lower_hex => {
            Err("a sha256 digest has 64 lower-case hex digits")
        }
        "sha512" if hex.len() != 128 || !lower_hex => {
            Err("a sha512 digest has 128 lower-case hex digits")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(n("redis"), "docker.io/library/redis:latest");
        assert_eq!(n("org/x"), "docker.io/org/x:latest");
        assert_eq!(n("org/x:1.0"), "docker.io/org/x:1.0");
        assert_eq!(n("host:5000/x"), "host:5000/x:latest");
        assert_eq!(n("localhost/x:2"), "localhost/x:2");
        assert_eq!(n("127.0.0.1:5000/a/b/c:t"), "127.0.0.1:5000/a/b/c:t");
        assert_eq!(
            n("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            n(&format!("alpine@{d}")),
            format!("docker.io/library/alpine@{d}")
        );
        assert_eq!(
            n(&format!("alpine:3@{d}")),
            format!("docker.io/library/alpine:3@{d}")
        );
        assert_eq!(n("golden/base:1"), "docker.io/golden/base:1");
    }

    #[test]
    fn rejects_invalid() {
        for s in [
            "",
            "UPPER",
            "a//b",
            "a:",
            "-a",
            "a@sha256:12",
            ":tag",
            "a b",
            "x/y:t@",
            "a/B",
        ] {
            assert!(Reference::parse(s).is_err(), "{s} should be rejected");
        }
    }

    #[test]
    fn rejects_image_ids_and_bad_digests() {
        let id = "0123456789abcdef".repeat(4);
        assert!(Reference::parse(&id).is_err());
        assert!(Reference::parse(&format!("org/{id}")).is_ok());
        assert!(Reference::parse(&format!("a@sha256:{}", "A".repeat(64))).is_err());
        assert!(Reference::parse(&format!("a@sha512:{}", "a".repeat(64))).is_err());
        assert!(Reference::parse(&format!("a@sha512:{}", "a".repeat(128))).is_ok());
    }
}
