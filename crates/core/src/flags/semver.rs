//! Semantic versions for the `sem_ver` operator, with the semantics flagd gets
//! from Go's `golang.org/x/mod/semver`: an optional `v`/`V` prefix, partial
//! versions (`1`, `1.2`) completed with zeros, no leading zeros in numeric
//! parts, pre-release ordering per semver.org, build metadata ignored.
//! Parsing borrows from the input: no allocation.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Version<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    /// Pre-release including its leading `-`, or empty.
    pre: &'a str,
}

/// Leading run of ASCII digits without a leading zero (except "0" itself).
fn parse_int(v: &str) -> Option<(&str, &str)> {
    let n = v.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 || (n > 1 && v.as_bytes()[0] == b'0') {
        return None;
    }
    Some(v.split_at(n))
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

fn is_bad_num(id: &str) -> bool {
    id.len() > 1 && id.as_bytes()[0] == b'0' && id.bytes().all(|b| b.is_ascii_digit())
}

/// Dot-separated non-empty identifiers of `[0-9A-Za-z-]`; `check_nums` also
/// rejects numeric identifiers with leading zeros (pre-release rule).
fn valid_idents(s: &str, check_nums: bool) -> bool {
    s.split('.').all(|id| {
        !id.is_empty() && id.bytes().all(is_ident_char) && !(check_nums && is_bad_num(id))
    })
}

impl<'a> Version<'a> {
    /// Parses `[vV]MAJOR[.MINOR[.PATCH[-PRE][+BUILD]]]`.
    pub(crate) fn parse(s: &'a str) -> Option<Version<'a>> {
        let s = s
            .strip_prefix('v')
            .or_else(|| s.strip_prefix('V'))
            .unwrap_or(s);
        let (major, rest) = parse_int(s)?;
        if rest.is_empty() {
            return Some(Version {
                major,
                minor: "0",
                patch: "0",
                pre: "",
            });
        }
        let (minor, rest) = parse_int(rest.strip_prefix('.')?)?;
        if rest.is_empty() {
            return Some(Version {
                major,
                minor,
                patch: "0",
                pre: "",
            });
        }
        let (patch, mut rest) = parse_int(rest.strip_prefix('.')?)?;
        let mut pre = "";
        if rest.starts_with('-') {
            let end = rest.find('+').unwrap_or(rest.len());
            pre = &rest[..end];
            if !valid_idents(&pre[1..], true) {
                return None;
            }
            rest = &rest[end..];
        }
        if let Some(build) = rest.strip_prefix('+') {
            if !valid_idents(build, false) {
                return None;
            }
            rest = "";
        }
        if !rest.is_empty() {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
            pre,
        })
    }
}

fn cmp_int(x: &str, y: &str) -> Ordering {
    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
}

fn cmp_pre(x: &str, y: &str) -> Ordering {
    if x == y {
        return Ordering::Equal;
    }
    if x.is_empty() {
        return Ordering::Greater;
    }
    if y.is_empty() {
        return Ordering::Less;
    }
    let mut xs = x[1..].split('.');
    let mut ys = y[1..].split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(dx), Some(dy)) => {
                if dx == dy {
                    continue;
                }
                let nx = dx.bytes().all(|b| b.is_ascii_digit());
                let ny = dy.bytes().all(|b| b.is_ascii_digit());
                return match (nx, ny) {
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (true, true) => cmp_int(dx, dy),
                    (false, false) => dx.cmp(dy),
                };
            }
        }
    }
}

pub(crate) fn compare(a: &Version<'_>, b: &Version<'_>) -> Ordering {
    cmp_int(a.major, b.major)
        .then_with(|| cmp_int(a.minor, b.minor))
        .then_with(|| cmp_int(a.patch, b.patch))
        .then_with(|| cmp_pre(a.pre, b.pre))
}

/// Whether `op` is one of the operators `sem_ver` understands.
pub(crate) fn is_operator(op: &str) -> bool {
    matches!(op, "=" | "!=" | "<" | "<=" | ">" | ">=" | "^" | "~")
}

/// `a OP b`; `None` for an unknown operator.
pub(crate) fn apply(a: &Version<'_>, op: &str, b: &Version<'_>) -> Option<bool> {
    let ord = compare(a, b);
    Some(match op {
        "=" => ord == Ordering::Equal,
        "!=" => ord != Ordering::Equal,
        "<" => ord == Ordering::Less,
        "<=" => ord != Ordering::Greater,
        ">" => ord == Ordering::Greater,
        ">=" => ord != Ordering::Less,
        "^" => cmp_int(a.major, b.major) == Ordering::Equal,
        "~" => {
            cmp_int(a.major, b.major) == Ordering::Equal
                && cmp_int(a.minor, b.minor) == Ordering::Equal
        }
        _ => return None,
    })
}
