//! Permission checks of watch creates: a watcher joins a broadcast opened
//! under another client's token only once a member has said, under the
//! client's own token, that it may watch the range. The checks are bounded
//! over the whole proxy, so a burst of creates does not flood the members,
//! and in time, so a member that never answers stalls nobody.

use tonic::Status;

use crate::error::ProxyError;
use crate::proto::etcdserverpb::WatchCreateRequest;
use crate::watch::control::{ControlStream, CreateVerdict};

/// Permission checks of watch creates in flight at once, over all streams.
pub const PERMISSION_CHECKS: usize = 64;

static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PERMISSION_CHECKS);

/// How long a watch create waits for a member to answer its permission
/// check; past it the create is refused (`Unavailable`), and the permit it
/// held goes to the next create: one member that never answers cannot
/// stall every watch create on the proxy.
const PERMISSION_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A client may only join a shared upstream watch (opened under another
/// client's token) on a range it may read itself: its create is put to
/// a member first, on the client's own control stream, under its own
/// token; a refusal is the member's answer, word for word.
///
/// Never skipped on a view of "auth is off": auth may have been enabled
/// a moment ago, through another proxy or a member, and a watcher let in
/// then would see events it may not read. At most [`PERMISSION_CHECKS`]
/// run at once, so a burst of thousands of creates does not flood the members.
pub(super) async fn check(
    control: &ControlStream,
    create: &WatchCreateRequest,
    watch_id: i64,
) -> Result<CreateVerdict, Status> {
    let _permit = CHECKS
        .acquire()
        .await
        .map_err(|_| ProxyError::Lost("shutting down").status())?;
    let probe = WatchCreateRequest {
        watch_id,
        ..create.clone()
    };
    let check = control.check(&probe);
    tokio::time::timeout(PERMISSION_WAIT, check)
        .await
        .unwrap_or_else(|_| Err(ProxyError::Lost("permission check unanswered").status()))
}
