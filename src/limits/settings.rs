//! What the limits are: a [`LimitSet`] for every client, and overrides per
//! client, from the `--limit-*` flags and the `--limits-file`.
//!
//! The file is a small `key = value` format, read by hand (no new crate):
//!
//! ```text
//! # Keys before any section change the defaults the flags set.
//! read_rps = 200
//! write_rps = 50
//! concurrent_calls = 64
//!
//! # A section names one client (user:, cn: or ip:); its keys override
//! # the defaults for that client only. 0 means unlimited.
//! [user:kube-apiserver]
//! read_rps = 0
//! write_rps = 0
//! ```

use std::collections::HashMap;

/// One client's limits; 0 in any field means "no limit".
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LimitSet {
    /// Read calls per second (Range, RangeStream, lease and election reads).
    pub read_rps: f64,
    /// Reads allowed at once after an idle spell (0: the rate, at least 1).
    pub read_burst: u32,
    /// Write calls per second (Put, DeleteRange, Txn, Compact, lease grants
    /// and revokes, locks, elections).
    pub write_rps: f64,
    /// Writes allowed at once after an idle spell (0: the rate, at least 1).
    pub write_burst: u32,
    /// Unary calls in flight at once.
    pub concurrent_calls: u32,
    /// Watchers open at once, over all the client's watch streams.
    pub watchers: u32,
    /// Lease keep-alive streams open at once.
    pub keepalive_streams: u32,
}

impl LimitSet {
    /// Whether this set limits nothing.
    pub fn is_unlimited(&self) -> bool {
        *self == LimitSet::default()
    }

    /// Sets `key` (a file key) to `value`.
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let count = || {
            value
                .parse::<u32>()
                .map_err(|e| format!("{key} wants a whole number >= 0, got {value:?}: {e}"))
        };
        let rate = || match value.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(format!("{key} wants a number >= 0, got {value:?}")),
        };
        match key {
            "read_rps" => self.read_rps = rate()?,
            "read_burst" => self.read_burst = count()?,
            "write_rps" => self.write_rps = rate()?,
            "write_burst" => self.write_burst = count()?,
            "concurrent_calls" => self.concurrent_calls = count()?,
            "watchers" => self.watchers = count()?,
            "keepalive_streams" => self.keepalive_streams = count()?,
            _ => return Err(format!("unknown key {key:?} (known: {})", KEYS.join(", "))),
        }
        Ok(())
    }
}

/// The keys of the limits file.
pub const KEYS: [&str; 7] = [
    "read_rps",
    "read_burst",
    "write_rps",
    "write_burst",
    "concurrent_calls",
    "watchers",
    "keepalive_streams",
];

/// The kinds of client a section may name.
const CLIENT_KINDS: [&str; 3] = ["user:", "cn:", "ip:"];

/// The limits of every client: a default and per-client overrides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimitSettings {
    /// Limits of every client not named below.
    pub default: LimitSet,
    /// Limits of named clients (`user:alice`), each the default with its
    /// section's keys applied.
    pub clients: HashMap<String, LimitSet>,
}

impl LimitSettings {
    /// The limits of client `name`.
    pub fn of(&self, name: &str) -> LimitSet {
        self.clients.get(name).copied().unwrap_or(self.default)
    }

    /// `text` (a limits file) applied over the flags' `defaults`.
    pub fn parse(defaults: LimitSet, text: &str) -> Result<LimitSettings, LimitsFileError> {
        let mut default = defaults;
        // Sections in order: (name, line, key/value pairs).
        let mut sections: Vec<(String, Vec<Assignment>)> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let bad = |reason: String| LimitsFileError::Syntax {
                line: line_no,
                reason,
            };
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                let name = name
                    .strip_suffix(']')
                    .ok_or_else(|| bad(format!("a section is [kind:name], got {line:?}")))?
                    .trim();
                if name != "default" {
                    let named = CLIENT_KINDS
                        .iter()
                        .any(|k| name.strip_prefix(k).is_some_and(|rest| !rest.is_empty()));
                    if !named {
                        return Err(bad(format!(
                            "a section names a client as user:<name>, cn:<name> or ip:<address> (or is [default]), got [{name}]"
                        )));
                    }
                    if sections.iter().any(|(s, _)| s == name) {
                        return Err(bad(format!("section [{name}] appears twice")));
                    }
                }
                sections.push((name.to_string(), Vec::new()));
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| bad(format!("expected key = value, got {line:?}")))?;
            let (key, value) = (key.trim(), value.trim().trim_matches('"'));
            match sections.last_mut() {
                Some((name, pairs)) if name != "default" => {
                    pairs.push((line_no, key.to_string(), value.to_string()))
                }
                _ => default.set(key, value).map_err(bad)?,
            }
        }
        let mut clients = HashMap::new();
        for (name, pairs) in sections {
            if name == "default" {
                continue;
            }
            let mut set = default;
            for (line, key, value) in pairs {
                set.set(&key, &value)
                    .map_err(|reason| LimitsFileError::Syntax { line, reason })?;
            }
            clients.insert(canonical_name(&name), set);
        }
        Ok(LimitSettings { default, clients })
    }
}

/// A section's client name as [`crate::limits::ClientId`] spells it (an
/// IP address written in any of its forms).
fn canonical_name(name: &str) -> String {
    match name.strip_prefix("ip:").map(str::parse::<std::net::IpAddr>) {
        Some(Ok(ip)) => format!("ip:{ip}"),
        _ => name.to_string(),
    }
}

/// One `key = value` line of a section: (line number, key, value).
type Assignment = (usize, String, String);

/// Why a limits file was not taken (at start: the proxy does not start; on
/// a reload: the limits in force stay).
#[derive(Debug, thiserror::Error)]
pub enum LimitsFileError {
    /// The file could not be read.
    #[error("cannot read the limits file: {0}")]
    Read(#[from] std::io::Error),
    /// A line is not understood.
    #[error("limits file, line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_overrides_the_flags_and_sections_override_the_default() {
        let flags = LimitSet {
            read_rps: 10.0,
            watchers: 5,
            ..Default::default()
        };
        let text = "# fleet\nwrite_rps = 2.5 # trailing\n\n[user:kube-apiserver]\nread_rps = 0\nwatchers=0\n[ip:::ffff:10.0.0.1]\nconcurrent_calls = 3\n[default]\nkeepalive_streams = 4\n";
        let s = LimitSettings::parse(flags, text).expect("parses");
        assert_eq!(s.default.read_rps, 10.0);
        assert_eq!(s.default.write_rps, 2.5);
        assert_eq!(s.default.keepalive_streams, 4);
        let kube = s.of("user:kube-apiserver");
        assert_eq!(
            (kube.read_rps, kube.watchers, kube.write_rps),
            (0.0, 0, 2.5)
        );
        assert_eq!(s.of("ip:::ffff:10.0.0.1").concurrent_calls, 3);
        assert_eq!(s.of("user:other"), s.default);
    }

    #[test]
    fn bad_files_name_the_line() {
        for (text, line, words) in [
            ("read_rps = fast", 1, "read_rps wants a number"),
            ("\nwatchers = -1", 2, "whole number"),
            ("nope = 1", 1, "unknown key"),
            ("[alice]", 1, "user:<name>"),
            ("[user:a]\n[user:a]", 2, "twice"),
            ("[user:a", 1, "[kind:name]"),
            ("read_rps 3", 1, "key = value"),
            ("[user:a]\nwatchers = x", 2, "whole number"),
        ] {
            match LimitSettings::parse(LimitSet::default(), text) {
                Err(LimitsFileError::Syntax { line: l, reason }) => {
                    assert_eq!(l, line, "{text:?}: {reason}");
                    assert!(reason.contains(words), "{text:?}: {reason}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
