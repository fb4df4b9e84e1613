//! CPU profiling for `--enable-pprof`: etcd serves Go's pprof under
//! `/debug/pprof/`; this proxy samples its own threads with the `pprof`
//! crate (SIGPROF, 99 Hz) and answers `GET /debug/pprof/profile?seconds=N`
//! with a flamegraph SVG. (Go's protobuf format would need `protoc` at
//! build time, which the product build must not require.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Sampling frequency, as Go's pprof uses by default (100 Hz, off by one
/// to avoid lock-step with periodic work).
pub const FREQUENCY_HZ: i32 = 99;
/// Default profile length, as Go's `/debug/pprof/profile`.
pub const DEFAULT_SECONDS: u64 = 30;
/// Longest profile accepted.
pub const MAX_SECONDS: u64 = 300;

/// Why no profile could be taken.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// `seconds` was not a whole number in 1..=[`MAX_SECONDS`].
    #[error("seconds must be a whole number from 1 to {MAX_SECONDS}, got {0:?}")]
    BadSeconds(String),
    /// Another profile is being taken (the sampler is process-wide).
    #[error("a CPU profile is already being taken; try again when it is done")]
    Busy,
    /// The sampler or the flamegraph failed.
    #[error("profiling failed: {0}")]
    Failed(String),
}

static BUSY: AtomicBool = AtomicBool::new(false);

/// The `seconds` query parameter of `query` (default [`DEFAULT_SECONDS`]).
pub fn seconds_from_query(query: Option<&str>) -> Result<Duration, ProfileError> {
    let raw = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("seconds="))
        .map(str::to_string);
    match raw {
        None => Ok(Duration::from_secs(DEFAULT_SECONDS)),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=MAX_SECONDS).contains(&n) => Ok(Duration::from_secs(n)),
            _ => Err(ProfileError::BadSeconds(v)),
        },
    }
}

/// Samples the whole process for `length` and renders a flamegraph SVG.
pub async fn cpu_flamegraph(length: Duration) -> Result<Vec<u8>, ProfileError> {
    if BUSY.swap(true, Ordering::AcqRel) {
        return Err(ProfileError::Busy);
    }
    // The profiler guard is not Send: take the profile on a blocking thread.
    let result = tokio::task::spawn_blocking(move || {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(FREQUENCY_HZ)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(|e| ProfileError::Failed(e.to_string()))?;
        std::thread::sleep(length);
        let report = guard
            .report()
            .build()
            .map_err(|e| ProfileError::Failed(e.to_string()))?;
        drop(guard);
        if report.data.is_empty() {
            // inferno refuses an empty profile; an idle proxy takes no samples.
            return Ok(idle_svg(length).into_bytes());
        }
        let mut svg = Vec::new();
        report
            .flamegraph(&mut svg)
            .map_err(|e| ProfileError::Failed(e.to_string()))?;
        Ok(svg)
    })
    .await
    .unwrap_or_else(|e| Err(ProfileError::Failed(e.to_string())));
    BUSY.store(false, Ordering::Release);
    result
}

/// The picture for a profile with no samples.
fn idle_svg(length: Duration) -> String {
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"40\">\
         <text x=\"10\" y=\"25\">No CPU samples in {length:?}: the proxy was idle.</text></svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parameter() {
        assert_eq!(seconds_from_query(None).unwrap(), Duration::from_secs(30));
        assert_eq!(
            seconds_from_query(Some("debug=1&seconds=5")).unwrap(),
            Duration::from_secs(5)
        );
        for bad in ["seconds=0", "seconds=-1", "seconds=x", "seconds=301"] {
            assert!(seconds_from_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
