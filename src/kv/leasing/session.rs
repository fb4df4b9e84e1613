//! The leasing session: the lease this proxy's leasing keys are bound to,
//! kept alive through the keep-alive hub, and the watch beside it; losing
//! either drops every copy, revokes the lease and starts a new session.

use super::*;

impl Leasing {
    /// Keeps the session and the watch going until the task is dropped;
    /// any loss drops every copy and starts a new session.
    pub async fn run(self: Arc<Self>, hub: Arc<KeepAliveHub>) {
        let span = info_span!("leasing", prefix = %String::from_utf8_lossy(&self.prefix));
        async move {
            loop {
                let grant: Result<LeaseGrantResponse, _> = self
                    .upstream
                    .unary(
                        "/etcdserverpb.Lease/LeaseGrant",
                        RetryPolicy::UnlessApplied,
                        Credentials::Own,
                        LeaseGrantRequest { ttl: SESSION_TTL_SECS, id: 0 },
                    )
                    .await;
                let lease = match grant {
                    Ok(g) if g.error.is_empty() && g.id != 0 => g.id,
                    Ok(g) => {
                        warn!(error = %String::from_utf8_lossy(&g.error), "leasing session lease refused; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(e) => {
                        warn!(error = %e, "could not grant the leasing session lease; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let until = Instant::now() + Duration::from_secs(SESSION_TTL_SECS as u64) - SAFETY_MARGIN;
                lock(&self.state).session = Some((lease, until));
                info!(lease, "leasing session started");
                tokio::select! {
                    _ = self.keep_alive(&hub, lease) => {}
                    _ = self.watch(lease) => {}
                }
                self.reset();
                self.revoke_session(lease).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        .instrument(span)
        .await
    }

    /// Drops every copy and the session; nothing is served until a new one is up.
    pub fn reset(&self) {
        let mut st = lock(&self.state);
        let dropped = st.owned.len();
        st.owned.clear();
        st.lost.clear();
        st.session = None;
        st.watching = false;
        st.generation += 1;
        warn!(dropped, "leasing session lost: every leased copy dropped");
    }

    /// Revokes a lost session's lease so its leasing keys vanish at once.
    pub async fn revoke_session(&self, lease: i64) {
        let call = self.upstream.unary::<_, LeaseRevokeResponse>(
            "/etcdserverpb.Lease/LeaseRevoke",
            RetryPolicy::UnlessApplied,
            Credentials::Own,
            LeaseRevokeRequest { id: lease },
        );
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), call).await {
            debug!(lease, error = %e, "could not revoke the old leasing session; it expires");
        }
    }

    /// The current session lease, for revoking it on shutdown.
    pub fn session_lease(&self) -> Option<i64> {
        lock(&self.state).session.map(|(l, _)| l)
    }

    /// Returns when the session can no longer be shown alive.
    async fn keep_alive(&self, hub: &KeepAliveHub, lease: i64) {
        let tick = Duration::from_millis(SESSION_TTL_SECS as u64 * 1000 / 3);
        loop {
            tokio::time::sleep(tick).await;
            let sent = Instant::now();
            match hub.keep_alive(self.pool.own_token().as_ref(), lease).await {
                Ok(resp) if resp.ttl > 0 => {
                    let life = Duration::from_secs(resp.ttl as u64)
                        .saturating_sub(SAFETY_MARGIN + crate::keepalive::FRESH);
                    if let Some(s) = lock(&self.state).session.as_mut() {
                        s.1 = s.1.max(sent + life);
                    }
                }
                Ok(_) => {
                    warn!(lease, "leasing session lease expired");
                    return;
                }
                Err(status) => {
                    warn!(lease, error = %status.message(), "leasing keep-alive failed");
                    let expired = lock(&self.state)
                        .session
                        .is_none_or(|(_, until)| Instant::now() >= until);
                    if expired {
                        return;
                    }
                }
            }
        }
    }
}
