# etcd-grpc-proxy: the two commands, `make demo` and `make test`, do all the set-up.

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := etcd-server etcd-client protobuf-compiler

.PHONY: all build deps demo test bench clean

all: build

## deps: install real etcd (server and etcdctl) and protoc (needed by the etcd-client test crate) when missing
deps:
	@missing=""; \
	command -v etcd >/dev/null 2>&1 || missing="$$missing etcd-server"; \
	command -v etcdctl >/dev/null 2>&1 || missing="$$missing etcd-client"; \
	command -v protoc >/dev/null 2>&1 || missing="$$missing protobuf-compiler"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (https://rustup.rs)"; exit 1; }

## build: the release binary at target/release/etcd-grpc-proxy
build:
	$(CARGO) build --release

## demo: a local 3-member cluster plus the proxy, replaying the add-a-member story
demo: deps build
	bash scripts/demo.sh

## test: unit tests and the integration suite against real etcd members
test: deps
	$(CARGO) test --all-targets -- --test-threads=3

## bench: side-by-side benchmark vs direct etcd and etcd's grpc-proxy; writes bench/results/latest.{md,svg}
## (BENCH_FULL=1 for 10k watchers / lease clients; BENCH_SECS, BENCH_ROUNDS, ... see benches/side_by_side/main.rs)
bench: deps build
	$(CARGO) bench --bench side_by_side

clean:
	$(CARGO) clean
