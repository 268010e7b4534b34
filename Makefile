# Countersign: `make demo` to try it, `make test` to test it.
SHELL := /bin/bash
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/countersign?sslmode=disable
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
BIN := bin/countersign

.PHONY: help generate build test examples test-short lint demo bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

generate: ## regenerate templ components and the sqlc queries
	go tool templ generate
	go tool sqlc generate

build: ## build bin/countersign
	go build -o $(BIN) ./cmd/countersign

test: examples ## run every test (PostgreSQL at TEST_DATABASE_URL; chromium for browser tests)
	go test -race -count=1 -timeout 20m ./...

examples: ## build and vet examples/embedded, a module of its own, offline from the module cache
	cd examples/embedded && GOPROXY=off go build -o /dev/null . && GOPROXY=off go vet ./...

test-short: ## the tests without the slow crash-recovery test
	go test -short -count=1 ./...

lint: ## go vet and staticcheck
	go vet ./...
	go tool staticcheck ./...

demo: build ## migrate, seed the demo, serve on :8080 and keep demo runs flowing
	$(BIN) demo

bench: build ## every benchmark (engine, console, audit, batch, recovery, approvals, policy); results go in docs/BENCHMARKS.md
	go test -run '^$$' -bench . -benchtime 2s ./policy/
	go test -run '^$$' -bench KeyboardReviewer -benchtime 1x -timeout 20m ./web/
	$(BIN) bench

clean: ## remove build output
	rm -rf bin
