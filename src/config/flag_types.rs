//! Value types of etcd's flags, parsed by clap as etcd (Go) parses them:
//! durations as `time.ParseDuration`, booleans as `strconv.ParseBool`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::duration::parse_go_duration;

/// A duration flag (`5s`, `1m30s`, `500ms`, `0`), shown as Go prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// The duration, or `None` when it is zero (etcd's "off").
    pub fn non_zero(self) -> Option<Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }
}

impl FromStr for GoDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_go_duration(s).map(GoDuration)
    }
}

impl fmt::Display for GoDuration {
    /// Go's `Duration.String()`: `0s`, `500ms`, `20s`, `1m30s`, `2h0m0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d < Duration::from_secs(1) {
            let ns = d.as_nanos();
            let (value, unit) = if ns < 1_000 {
                (ns as f64, "ns")
            } else if ns < 1_000_000 {
                (ns as f64 / 1e3, "µs")
            } else {
                (ns as f64 / 1e6, "ms")
            };
            return write!(f, "{value}{unit}");
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let frac = d.subsec_nanos();
        let seconds = if frac == 0 {
            format!("{s}s")
        } else {
            let text = format!("{:.9}", s as f64 + f64::from(frac) / 1e9);
            format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
        };
        match (h, m) {
            (0, 0) => f.write_str(&seconds),
            (0, m) => write!(f, "{m}m{seconds}"),
            (h, m) => write!(f, "{h}h{m}m{seconds}"),
        }
    }
}

/// A boolean flag as Go's `strconv.ParseBool` reads it (an empty value is
/// false, as etcd's flags treat it).
pub fn go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        let show = |s: &str| s.parse::<GoDuration>().unwrap().to_string();
        assert_eq!(show("0"), "0s");
        assert_eq!(show("500ms"), "500ms");
        assert_eq!(show("20s"), "20s");
        assert_eq!(show("90s"), "1m30s");
        assert_eq!(show("2h"), "2h0m0s");
        assert_eq!(show("1.5s"), "1.5s");
        assert!("5".parse::<GoDuration>().is_err());
    }

    #[test]
    fn booleans_read_as_strconv_parse_bool() {
        assert_eq!(go_bool("T"), Ok(true));
        assert_eq!(go_bool("0"), Ok(false));
        assert!(go_bool("yes").is_err());
    }
}
