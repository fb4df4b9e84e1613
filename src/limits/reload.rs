//! The limits file, followed while the proxy runs: read again when it
//! changes (polled every second); a file that does not parse is logged and
//! the limits in force stay.

use std::sync::Arc;
use std::time::Duration;

use super::{ClientLimits, LimitSettings};

/// How often the limits file is looked at.
pub const POLL: Duration = Duration::from_secs(1);

/// Follows `limits.config.file` until the task is aborted.
pub async fn follow(limits: Arc<ClientLimits>) {
    let Some(path) = limits.config.file.clone() else {
        return;
    };
    let mut last = std::fs::read(&path).ok();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Small files, read whole: no mtime granularity to miss an edit by.
        let now = match tokio::fs::read(&path).await {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                if last.is_some() {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read the limits file; the limits in force stay");
                }
                None
            }
        };
        if now.is_none() || now == last {
            last = now.or(last);
            continue;
        }
        let text = String::from_utf8_lossy(now.as_deref().unwrap_or_default()).into_owned();
        last = now;
        match LimitSettings::parse(limits.config.defaults, &text) {
            Ok(settings) => {
                tracing::info!(path = %path.display(), clients = settings.clients.len(), "limits file reloaded");
                limits.replace(settings);
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "limits file not taken; the limits in force stay");
            }
        }
    }
}
