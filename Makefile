# Conveniences over ./run (which needs only bash on a fresh machine).
.PHONY: setup repro test test-fast bench ui
setup:
	@bash scripts/setup.sh
repro:
	./run repro
test:
	./run test
test-fast:
	./run test -m "not slow"
bench:
	./run bench
ui:
	./run ui
