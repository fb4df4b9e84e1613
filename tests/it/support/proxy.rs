//! The proxy under test, run in-process on a port-0 listener.

use std::net::SocketAddr;
use std::time::Duration;

use etcd_grpc_proxy::upstream::EndpointUrl;
use etcd_grpc_proxy::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running proxy; stops when dropped.
pub struct TestProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// A config for `endpoints` (comma separated) with a fast 1 s membership
/// refresh and no drain grace period (tests that drain set their own).
pub fn config(endpoints: &str) -> Config {
    let urls = endpoints
        .split(',')
        .map(|e| EndpointUrl::parse(e, false).expect("endpoint"))
        .collect();
    let mut c = Config::new(urls);
    c.auto_sync_interval = Some(Duration::from_secs(1));
    c.drain_grace_period = Duration::ZERO;
    c.drain_timeout = Duration::from_secs(5);
    c
}

impl TestProxy {
    /// Starts a proxy with default settings towards `endpoints`.
    pub async fn start(endpoints: &str) -> TestProxy {
        TestProxy::with_config(config(endpoints)).await
    }

    /// Starts a proxy with the given configuration.
    pub async fn with_config(config: Config) -> TestProxy {
        TestProxy::with_config_for(|_| config).await
    }

    /// Starts a proxy whose configuration depends on the address it listens on
    /// (e.g. `--advertise-client-url`).
    pub async fn with_config_for(config_for: impl FnOnce(SocketAddr) -> Config) -> TestProxy {
        // RUST_LOG=etcd_grpc_proxy=debug shows the proxy's logs in a test run.
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let config = config_for(addr);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            etcd_grpc_proxy::run(config, listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("proxy run");
        });
        TestProxy {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `127.0.0.1:<port>`, as etcdctl and etcd-client take it.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// A connected `etcd-client` client.
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None)
            .await
            .expect("connect etcd-client to proxy")
    }

    /// Starts the drain (as SIGTERM would) without waiting for it to end;
    /// [`TestProxy::finished`] then waits for `run` to return.
    pub fn begin_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Waits for `run` to return (after [`TestProxy::begin_shutdown`]).
    pub async fn finished(&mut self) {
        if let Some(t) = self.task.take() {
            t.await.expect("proxy task");
        }
    }

    /// Stops the proxy and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
