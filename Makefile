# depth_node without a ROS distro: everything installs from PyPI into .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt setup.py | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

ROS2_SRC   ?= ../shared/vendor/ros2
ROS2_BUILD := build/ros2

BROWSER_STAMP := build/.browser

.PHONY: help venv ros2 browser test demo bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.txt setup.py
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)  ## create .venv with ROS 2 Kilted wheels, torch (CPU), onnxruntime, ... (pinned)

$(ROS2_BUILD)/.built: $(STAMP) requirements-ros2.txt scripts/ros2_tools.sh
	@if [ -d $(ROS2_SRC)/launch ]; then scripts/ros2_tools.sh $(VENV) $(ROS2_SRC) $(ROS2_BUILD); \
	else echo "no ROS 2 sources at $(ROS2_SRC): the ros2 CLI is not installed and its tests skip"; fi

ros2: $(ROS2_BUILD)/.built  ## ros2 launch / param / topic / lifecycle from source into .venv; then: . build/ros2/setup.bash

$(BROWSER_STAMP):
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends chromium >/dev/null; } || \
	  echo "chromium is not installed (needs root and apt-get): the report's browser test skips"
	@mkdir -p build && touch $@

browser: $(BROWSER_STAMP)  ## headless chromium (apt-get, as root) for the test that opens the evaluation report

test: $(STAMP) $(ROS2_BUILD)/.built $(BROWSER_STAMP)  ## run the whole test suite (installs first if needed)
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)  ## the main job: the node on the embedded default model, a synthetic + the real RGB-D bag, scored
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(VENV)/bin/depth-node demo --out demo_out

bench: $(STAMP)  ## node overhead benchmark at 640x480 (see docs/benchmarks.md)
	$(PY) benchmarks/bench_overhead.py --outputs all
	$(PY) benchmarks/bench_overhead.py --outputs nav

clean:  ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache build *.egg-info
