# `make run` and `make test` set everything up on a fresh Debian machine, then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the project uses (installed when running as root): FluidSynth for audio,
# Chromium and its WebDriver for the browser test of the studio, g++ for the training kernels,
# abcmidi (abc2midi) for parsing ABC tunes.
APT_PACKAGES := fluidsynth chromium chromium-driver g++ abcmidi
INSTALLED := $(VENV)/.installed

.PHONY: setup run test lint bench clean checkpoints

setup: $(INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml Makefile
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
		if [ -n "$$missing" ]; then \
			echo "Installing Debian packages: $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m melodygen.nn.kernels
	@touch $@

run: $(INSTALLED)
	$(BIN)/streamlit run app.py --server.headless true

test: $(INSTALLED)
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

lint: $(INSTALLED)
	$(BIN)/ruff check app.py pages melodygen tests benchmarks docs

bench: $(INSTALLED)
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/dataset_speed.py --input ../shared/data/nottingham/melody
	$(BIN)/python benchmarks/generate_speed.py
	$(BIN)/python benchmarks/app_speed.py

clean:
	rm -rf $(VENV) build *.egg-info

# Reproduce the shipped checkpoints (hours on a CPU) from the public datasets under DATA.
DATA ?= ../shared/data
checkpoints: $(INSTALLED)
	$(BIN)/python -m melodygen.release --data-root $(DATA)
