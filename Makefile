# etcd-grpc-proxy: the two commands, `make demo` and `make test`, do all the set-up.

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := etcd-server etcd-client protobuf-compiler

.PHONY: all build deps deps-ha demo demo-ha test test-fast test-kubernetes test-ha test-deploy robustness etcd-versions bench bench-scale bench-ab clean

all: build

## deps: install real etcd (server and etcdctl) and protoc (needed by the etcd-client test crate) when missing
deps:
	@missing=""; \
	command -v etcd >/dev/null 2>&1 || missing="$$missing etcd-server"; \
	command -v etcdctl >/dev/null 2>&1 || missing="$$missing etcd-client"; \
	command -v protoc >/dev/null 2>&1 || missing="$$missing protobuf-compiler"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v tc >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v go >/dev/null 2>&1 || missing="$$missing golang-go"; \
	command -v python3 >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
	@$(MAKE) --no-print-directory deps-ha

## deps-ha: what the HA and deploy/ tests run: keepalived, HAProxy, promtool (Debian's prometheus), systemd-analyze, ip
deps-ha:
	@missing=""; \
	command -v keepalived >/dev/null 2>&1 || missing="$$missing keepalived"; \
	command -v haproxy >/dev/null 2>&1 || missing="$$missing haproxy"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

## build: the release binary at target/release/etcd-grpc-proxy
build:
	$(CARGO) build --release

## demo: a local 3-member cluster plus the proxy, replaying the add-a-member story
demo: deps build
	bash scripts/demo.sh

## demo-ha: three proxies in network namespaces behind a keepalived VIP and HAProxy,
## failover scenarios under load (root: it creates namespaces); prints the figures
demo-ha: deps build
	$(SUDO) env PROXY_BIN=$(CURDIR)/target/release/etcd-grpc-proxy CARGO=$(CARGO) PATH="$$PATH" bash scripts/demo-ha.sh

## test: unit tests, then the integration suite against real members of every etcd
## release in tests/etcd-versions/VERSIONS (3.4 from Debian, 3.5-3.7 built from etcd's Go modules),
## then Kubernetes' storage suites, robustness, deploy/ checks and HA. Each stage is announced with its usual time; a summary table (stage, result, time)
## ends the run (scripts/test-all.sh; TEST_STAGES="matrix ha" runs a subset)
test: deps
	CARGO=$(CARGO) bash scripts/test-all.sh

## robustness: traffic through the proxy under injected faults (member kill, rescale, blackhole,
## delay, compaction, proxy restart), checked for linearizability, watch and lease guarantees;
## also runs etcd's grpc-proxy for comparison; report in bench/results/robustness/latest.md
## (ROBUSTNESS_SECS, ROBUSTNESS_SEEDS, ROBUSTNESS_COMPARE: see scripts/robustness.sh)
robustness: deps
	CARGO=$(CARGO) ROBUSTNESS_SECS="$${ROBUSTNESS_SECS:-60}" ROBUSTNESS_SEEDS="$${ROBUSTNESS_SEEDS:-1 2 3}" bash scripts/robustness.sh

## test-ha: the high-availability scenarios alone (scripts/test-ha.sh; writes bench/results/ha/latest.md)
test-ha: deps
	$(SUDO) env CARGO=$(CARGO) PATH="$$PATH" bash scripts/test-ha.sh

## test-deploy: static checks of every file in deploy/ (scripts/test-deploy.sh)
test-deploy: deps
	CARGO=$(CARGO) bash scripts/test-deploy.sh

## test-kubernetes: Kubernetes' storage suites through the proxy and directly (tests/kubernetes)
test-kubernetes: deps
	CARGO=$(CARGO) bash scripts/test-kubernetes.sh

## test-fast: the same against one release only (ETCD=3.6 by default)
ETCD ?= 3.6
test-fast: deps
	CARGO=$(CARGO) bash scripts/test-matrix.sh $(ETCD)

## etcd-versions: build (or install) every pinned etcd release, cached under target/etcd/
etcd-versions:
	@for m in $$(awk '!/^#/ && NF {print $$1}' tests/etcd-versions/VERSIONS); do bash scripts/etcd-bin.sh $$m; done

## bench: side-by-side benchmark vs direct etcd, etcd's grpc-proxy and two L4 floors (HAProxy `mode tcp`,
## installed by deps via deps-ha, and `etcd gateway`); writes bench/results/latest.{md,svg}
## (BENCH_FULL=1 for 10k watchers / lease clients; BENCH_SECS, BENCH_ROUNDS, ... see benches/side_by_side/main.rs);
## then the hostile-client suite, longer, with etcd's grpc-proxy alongside: bench/results/hostile/latest.md (HOSTILE_SCALE)
## bench-scale (separate, ~30 min): scale curves vs etcd's grpc-proxy up to 1M watchers, 100k connections,
## 100k lease clients, 10k concurrent clients; bench/results/scale/latest.md and *.svg (SCALE_* knobs: benches/scale/main.rs)
bench: deps build
	$(CARGO) bench --bench side_by_side
	CARGO=$(CARGO) bash scripts/bench-hostile.sh

bench-scale: deps build
	$(CARGO) bench --bench scale

## bench-ab: instructions per call of commit AB_BASE against the working tree (scripts/bench-ab.sh)
bench-ab: deps
	CARGO=$(CARGO) bash scripts/bench-ab.sh $(AB_BASE)

clean:
	$(CARGO) clean
