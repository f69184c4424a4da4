# Clipper platform. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
LINT_VENV := .venv-lint
STATE := $(CURDIR)/.state
STACK ?= local

# Local stacks keep state in the repo's ignored .state/ folder. The passphrase protects the
# secrets of local stacks only; real stacks use Pulumi Cloud or a KMS secrets provider.
export PULUMI_BACKEND_URL ?= file://$(STATE)/backend
export PULUMI_CONFIG_PASSPHRASE ?= clipper-local
export PULUMI_SKIP_UPDATE_CHECK := true

# A Pulumi CLI the user installed wins; otherwise toolchain/ builds one from Go modules.
USER_PULUMI := $(shell command -v pulumi 2>/dev/null)
ifeq ($(USER_PULUMI),)
TOOLCHAIN_BUILD := bash toolchain/build.sh
# Our plugins are on PATH; never fall back to downloading one.
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION := true
else
TOOLCHAIN_BUILD := bash toolchain/build.sh --only cluster
endif
# Evaluated when a recipe runs, i.e. after the toolchain target has built it. A user's own
# pulumi stays first on PATH; the local cluster binaries are found after it.
TOOLCHAIN_BIN = $(shell bash toolchain/build.sh --print-bin $(if $(USER_PULUMI),--only cluster) 2>/dev/null)
WITH_TOOLCHAIN = PATH="$(if $(USER_PULUMI),$$PATH:$(TOOLCHAIN_BIN),$(TOOLCHAIN_BIN):$$PATH)" VIRTUAL_ENV=$(CURDIR)/$(VENV)

.PHONY: help venv checkov lint-tools toolchain test test-fast up preview destroy ops render cluster-up cluster-down bench docs

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

venv: $(VENV)/.installed ## Python virtualenv from requirements.txt

$(CHECKOV_VENV)/.installed: tests/requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements-checkov.txt
	@touch $@

checkov: $(CHECKOV_VENV)/.installed ## checkov in its own virtualenv (its pins clash with Pulumi's)

$(LINT_VENV)/.installed: tests/requirements-lint.txt
	@test -x $(LINT_VENV)/bin/python || $(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements-lint.txt
	sed -n 's/^# go install //p' tests/requirements-lint.txt | xargs -n1 env GOBIN=$(CURDIR)/$(LINT_VENV)/bin go install
	@touch $@

lint-tools: $(LINT_VENV)/.installed ## pipeline linters (actionlint, shellcheck, check-jsonschema) and promtool in .venv-lint

toolchain: ## Pulumi engine + local Kubernetes API from Go modules (cached outside the repo)
	@$(TOOLCHAIN_BUILD) >/dev/null

test: venv checkov lint-tools toolchain ## the whole suite: unit (mocks), policy, engine (real Pulumi + local API)
	$(WITH_TOOLCHAIN) CLIPPER_REQUIRE_ENGINE=1 $(PY) -m pytest

test-fast: venv ## unit and policy tests only: no engine, no checkov
	$(PY) -m pytest tests/unit tests/policy -m "not slow"

$(STATE)/backend:
	@mkdir -p $@

up: venv toolchain | $(STATE)/backend ## the main job: `pulumi up` of the local stack (render mode: manifests, no cluster)
	@$(WITH_TOOLCHAIN) pulumi stack select --create $(STACK) >/dev/null
	$(WITH_TOOLCHAIN) pulumi up --stack $(STACK) --yes --skip-preview
	@$(PY) -m infra.rendered .state/render/$(STACK)

preview: venv toolchain | $(STATE)/backend ## `pulumi preview` of the local stack
	@$(WITH_TOOLCHAIN) pulumi stack select --create $(STACK) >/dev/null
	$(WITH_TOOLCHAIN) pulumi preview --stack $(STACK)

destroy: venv toolchain | $(STATE)/backend ## `pulumi destroy` of the local stack
	$(WITH_TOOLCHAIN) pulumi destroy --stack $(STACK) --yes

ops: venv toolchain | $(STATE)/backend ## the ops CLI with the local settings: make ops ARGS="history --stack local-staging"
	$(WITH_TOOLCHAIN) $(PY) -m infra.ops $(ARGS)

render: venv ## write the objects a stack declares as YAML, under mocks (STACK=production)
	$(PY) -m infra.simulate --stack $(STACK) --out .state/$(STACK).yaml

cluster-up: toolchain ## start a local Kubernetes API (etcd, apiserver, controllers, kwok) on loopback
	bash toolchain/cluster.sh up

cluster-down: ## stop the local Kubernetes API and remove its data
	bash toolchain/cluster.sh down

bench: venv toolchain ## benchmarks: program cost vs floor (N=1,10,50), engine vs kubectl apply (JSON in .state/bench)
	$(WITH_TOOLCHAIN) CLIPPER_REQUIRE_ENGINE=1 $(PY) -m bench

docs: venv ## regenerate Pulumi.yaml's config block and docs/configuration.md from the models
	$(PY) -m infra.config_reference --write
