# The two commands a newcomer needs: `make run` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.example.yaml
# Debian packages the daemon needs at run time, and those the tests need on top (command:package).
RUN_PACKAGES := ffmpeg:ffmpeg ffprobe:ffmpeg
TEST_PACKAGES := $(RUN_PACKAGES) jq:jq wrk:wrk mosquitto:mosquitto openssl:openssl chromium:chromium strace:strace fusermount:fuse systemd-analyze:systemd

.PHONY: run test lint check-config demo addon clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstalled only when pyproject.toml changes; `make run` needs the runtime packages, `make test` the test tools too.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

# On a terminal the daemon runs as its own foreground job (set -m), so Ctrl-C reaches only the daemon: it stops
# cleanly and `make run` exits with the daemon's status (0) instead of make's "Interrupt" (130).
run: $(VENV)/.installed-run
	@scripts/ensure-debian-packages $(RUN_PACKAGES)
	@bash -c 'if [ -t 0 ]; then set -m; fi; $(BIN)/aniworld-daemon run -c "$(CONFIG)"; exit $$?'

# Optional try-out, offline (not a set-up step): the tests' fake aniworld.to, a demo config in a fresh temp folder,
# and the daemon downloading 11 episodes into a demo library; Ctrl-C stops both and lists the files. The fake site
# needs only the runtime packages (aiohttp, PyYAML) and ffmpeg. DEMO_ARGS: e.g. --bandwidth 2000000, --dir DIR.
demo: $(VENV)/.installed-run
	@scripts/ensure-debian-packages $(RUN_PACKAGES)
	@bash -c 'if [ -t 0 ]; then set -m; fi; $(BIN)/python scripts/demo $(DEMO_ARGS); exit $$?'

check-config: $(VENV)/.installed-run
	$(BIN)/aniworld-daemon check-config -c "$(CONFIG)"

# The Home Assistant add-on's daemon: a wheel of this repository in addon/ (ignored by git), which the add-on's
# Dockerfile installs when the Supervisor builds the image on the device. Not a set-up step: only for the add-on.
addon: | $(BIN)/activate
	rm -f addon/aniworld_daemon-*.whl
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir addon .

lint: $(VENV)/.installed-test
	$(BIN)/ruff check aniworld_daemon tests bench scripts/demo
	$(BIN)/ruff format --check aniworld_daemon tests bench scripts/demo
	$(BIN)/mypy

test: $(VENV)/.installed-test
	@scripts/ensure-debian-packages $(TEST_PACKAGES)
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
