# Switchboard: `make run` starts the local stack, `make test` runs every test.
GO      ?= go
BIN     ?= bin
PKGS    := ./ingress ./router-worker ./egress ./loadtest ./cmd/devbroker ./cmd/modelsim ./cmd/topics ./cmd/redrive ./cmd/stack
BROKERS ?= 127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094

# KAFKA: the Kafka of make run: devbroker (embedded, the default), apache (the
# local cluster of make kafka-up) or host:port,... of another cluster.
KAFKA   ?= devbroker
# KAFKA_SECURITY: the local cluster of make kafka-up (and make run KAFKA=apache):
# plaintext, or sasl_ssl (TLS, SASL, mTLS, ACLs; docs/OPERATIONS.md).
# KAFKA_PORT_OFFSET moves its ports, for a second checkout on the same machine.
KAFKA_SECURITY    ?= plaintext
KAFKA_PORT_OFFSET ?= 0

.PHONY: all build run test test-ui test-short test-integration test-kafka kafka-up kafka-down bench bench-go fuzz check check-deploy fmt-check vet lint tidy-check proto proto-check topics clean

all: build

## build: compile every binary into bin/
build:
	$(GO) build -o $(BIN)/ $(PKGS)

## run: build, then start Kafka (devbroker, or KAFKA=apache for make kafka-up's cluster), topics, modelsim,
## router-worker, ingress and egress (a crashed service is restarted; Ctrl-C stops all)
run: build
	$(BIN)/stack run --bin $(BIN) --kafka $(KAFKA) --kafka-security $(KAFKA_SECURITY) --kafka-port-offset $(KAFKA_PORT_OFFSET)

## kafka-up: fetch Apache Kafka's jars once (Maven), then start three KRaft nodes on 127.0.0.1:29092-29094 (data/kafka);
## KAFKA_SECURITY=sasl_ssl: the secured cluster (SASL_SSL on 29292-29294, mTLS on 29392-29394, ACLs, env files in data/kafka)
kafka-up:
	$(GO) build -o $(BIN)/ ./cmd/stack
	$(BIN)/stack kafka up --security $(KAFKA_SECURITY) --port-offset $(KAFKA_PORT_OFFSET)

## kafka-down: stop the local Kafka nodes (by the PIDs in data/kafka); data kept
kafka-down:
	$(GO) build -o $(BIN)/ ./cmd/stack
	$(BIN)/stack kafka down --security $(KAFKA_SECURITY) --port-offset $(KAFKA_PORT_OFFSET)

## test: unit tests with the race detector plus the end-to-end test of the real binaries; four packages
## at a time (TEST_P), since most of their time is spent waiting on processes and timers, not on the CPU
TEST_P ?= 4
## (the console's browser test is make test-ui's)
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -p $(TEST_P) -timeout 15m -skip '^TestConsoleUI$$' ./...

## test-ui: the console page (/console on egress's admin listener) in headless Chromium on a local stack: no console
## errors, numbers that move with traffic, a failing backend's breaker shown open. Needs Debian's chromium and
## chromium-driver; without them it skips, saying why (with CI set, that is a failure)
test-ui:
	$(GO) test -count=1 -timeout 5m -run '^TestConsoleUI$$' -v ./e2e/

## test-integration: the end-to-end and crash tests, and the 4 KiB commit-metadata limit, against Apache Kafka in Docker (testcontainers-go); each test skips, saying why, without a Docker engine
test-integration:
	$(GO) test -tags integration -race -count=1 -timeout 30m -run RealKafka -v ./e2e/

## test-kafka: the real-Kafka suite (e2e/realkafka_test.go) on Apache Kafka: SWITCHBOARD_TEST_BROKERS, else the local
## three-node cluster (make kafka-up), started and stopped again by the tests when it is not running; needs Java and
## Maven then. Without a cluster the tests skip, saying why; with CI=true that is a failure.
test-kafka:
	KAFKA_PORT_OFFSET=$(KAFKA_PORT_OFFSET) $(GO) test -tags kafka -count=1 -timeout 25m -run RealKafka -v ./e2e/

## test-short: unit tests only (skips the process-level tests)
test-short:
	$(GO) test -race -short -count=1 ./...

## bench: build, then run the standard short load-test suite (about 5 minutes on 2 cores) on local
## stacks the load test starts itself; reports (JSON, HTML, summary) go to BENCH_OUT
BENCH_OUT   ?= bench/$(shell date -u +%Y%m%dT%H%M%SZ)
BENCH_FLAGS ?=
bench: build
	$(BIN)/loadtest --stack --bin $(BIN) --scenarios all --out $(BENCH_OUT) $(BENCH_FLAGS)

## bench-go: the Go benchmarks of the hot paths (keyorder scheduling and commit bookkeeping, record
## encoding, ingress's handler, router-worker's handling, egress's hub and SSE events), BENCH_COUNT
## times each with allocations; raw output in BENCH_GO_OUT, then benchstat's table of it (medians)
BENCH_COUNT  ?= 6
BENCH_GO_OUT ?= bench/go-$(shell date -u +%Y%m%dT%H%M%SZ).txt
BENCH_GO     ?= Benchmark(Schedule|Tracker|Metadata|CommitSnapshot|EncodeRequest|DecodeRequest|DecodeRequestJSON|EncodeResult|DecodeResult|ResultJSON|HandleMessage|Process|HubPublish|SSEEvent)$$
bench-go: $(BIN)/benchstat
	@mkdir -p $(dir $(BENCH_GO_OUT))
	$(GO) test -run '^$$' -bench '$(BENCH_GO)' -benchmem -count $(BENCH_COUNT) \
		./internal/keyorder ./internal/envelope ./internal/ingress ./internal/router ./internal/egress \
		> $(BENCH_GO_OUT); status=$$?; cat $(BENCH_GO_OUT); exit $$status
	$(BIN)/benchstat $(BENCH_GO_OUT)

## fuzz: run every fuzz target (decoders, ingress and egress HTTP handlers) for FUZZTIME each (default 10s; CI: 5s); failing inputs are kept in testdata/fuzz/ as regression tests
FUZZTIME ?= 10s
fuzz:
	./scripts/fuzz-all.sh $(FUZZTIME)

## check: formatting, vet, golangci-lint, go.mod tidiness, generated-code drift and the deployment files (CI runs it)
check: fmt-check vet lint tidy-check proto-check check-deploy

## lint: golangci-lint v2 (pinned in tools/go.mod) with the linters of .golangci.yml
lint: $(BIN)/golangci-lint
	$(BIN)/golangci-lint run --timeout 10m ./...

## check-deploy: promtool checks and rule tests of deploy/prometheus; docker-compose's own validation of docker-compose.yml
check-deploy:
	promtool check config deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts_test.yml
	docker-compose -f docker-compose.yml config -q

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./e2e/
	$(GO) vet -tags kafka ./e2e/

tidy-check:
	$(GO) mod tidy -diff
	cd tools && $(GO) mod tidy -diff

## proto: regenerate proto/switchboard/v1/*.pb.go with the pinned generators
proto: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc
	$(BIN)/buf lint
	$(BIN)/buf generate

## proto-check: fail when the committed generated code differs from a fresh generation
proto-check: proto
	@git diff --exit-code -- proto/ || (echo "generated code is stale: run make proto and commit"; exit 1)
	@test -z "$$(git status --porcelain -- proto/)" || (echo "untracked generated files:"; git status --porcelain -- proto/; exit 1)

$(BIN)/buf: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o ../$(BIN)/buf github.com/bufbuild/buf/cmd/buf

$(BIN)/benchstat: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o ../$(BIN)/benchstat golang.org/x/perf/cmd/benchstat

$(BIN)/golangci-lint: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o ../$(BIN)/golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint

$(BIN)/protoc-gen-go: go.mod go.sum
	$(GO) build -o $(BIN)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go

$(BIN)/protoc-gen-go-grpc: go.mod go.sum
	$(GO) build -o $(BIN)/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc

## topics: create or grow the topics of topics.yaml on BROKERS (nothing else)
topics:
	$(GO) run ./cmd/topics --brokers $(BROKERS)

clean:
	rm -rf $(BIN)
