# Entry points for users and CI. `make setup` is idempotent; every other target runs it first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export BENTOML_DO_NOT_TRACK := true
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
MODELS_DIR ?= models
DEMO_MODEL := $(MODELS_DIR)/demo-llava

.PHONY: setup setup-system models serve demo test test-fast sweep bench proto lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch goes in first, from the pinned CPU build, so nothing later pulls a CUDA build.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,grpc-tools,loadtest,bench]'
	touch $@

setup: $(VENV)/.installed

# Debian packages that some tests drive for real: Prometheus, PostgreSQL, Chromium.
setup-system:
	bash scripts/setup-system.sh

$(DEMO_MODEL)/config.json: | setup
	$(BIN)/mllm-classify build-models --out $(MODELS_DIR)

models: $(DEMO_MODEL)/config.json

serve: models
	MLLM_CLASSIFY_MODEL__MODEL_ID=$(DEMO_MODEL) $(BIN)/bentoml serve service.service:Classifier --host 127.0.0.1 --port 3000

demo: models
	$(BIN)/python -m service.demo --model $(DEMO_MODEL)

test: models
	$(BIN)/python -m pytest -q

test-fast: models
	$(BIN)/python -m pytest -q -m 'not slow'

sweep: models
	$(BIN)/mllm-classify loadtest sweep

bench: models
	$(BIN)/mllm-classify bench serve

proto: setup
	$(BIN)/python -m service.grpc.codegen

clean:
	rm -rf $(VENV) $(MODELS_DIR) .pytest_cache
