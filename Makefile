# Gatehouse: `make run` starts it, `make test` runs every test.
GO        ?= go
BIN       := bin/gatehouse
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
KUBE_VER  := $(shell $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
KUBE_MAJ  := $(word 1,$(subst ., ,$(patsubst v%,%,$(KUBE_VER))))
KUBE_MIN  := $(word 2,$(subst ., ,$(patsubst v%,%,$(KUBE_VER))))
# Upstream reads its version from ldflags; without them /version says
# v0.0.0-master and clients warn about skew.
VERSION_PKG := k8s.io/component-base/version
LDFLAGS   := -X main.gatehouseVersion=$(VERSION) \
	-X $(VERSION_PKG).gitVersion=$(KUBE_VER) \
	-X $(VERSION_PKG).gitMajor=$(KUBE_MAJ) \
	-X $(VERSION_PKG).gitMinor=$(KUBE_MIN) \
	-X $(VERSION_PKG).gitTreeState=clean
ARGS      ?=

.PHONY: build run test test-unit test-e2e test-examples deps bench clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/gatehouse

run: build
	./$(BIN) up $(ARGS)

# Installs what the tests need (as root, when missing), builds the binary
# once, then runs unit and end-to-end tests against that binary.
test: deps build test-examples
	GATEHOUSE_BIN=$(abspath $(BIN)) $(GO) test -count=1 -timeout 25m ./...

# The examples are Go modules of their own: ./... above does not reach them.
test-examples:
	cd examples/webhook && $(GO) test -count=1 ./...
	cd examples/external-data-provider && $(GO) test -count=1 ./...

test-unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/e2e)

test-e2e: build
	GATEHOUSE_BIN=$(abspath $(BIN)) $(GO) test -count=1 -timeout 25m -v ./test/e2e/

deps:
	./hack/install-test-deps.sh

bench: build
	GATEHOUSE_BIN=$(abspath $(BIN)) ./bench/run.sh

clean:
	rm -rf bin
