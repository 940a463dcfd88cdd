# Kakehashi: `make demo` runs the service, `make test` runs the whole suite.
# Both set up everything they need on a fresh machine (a Python ≥ 3.11 is the only
# prerequisite; `make test` installs Debian packages when run as root).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
RP_PORT ?= 5001
PG_TEST_URL := postgresql+psycopg://postgres@127.0.0.1:5432/test
APT_PACKAGES := pcscd vsmartcard-vpcd libpcsclite-dev swig chromium fonts-ipafont-gothic
PYTEST_ARGS ?=

.PHONY: demo test lint test-sqlite test-postgresql install install-dev system-packages translations clean

demo: install
	$(BIN)/kakehashi migrate
	$(BIN)/kakehashi seed-demo --service-url http://$(HOST):$(PORT) --rp-url http://$(HOST):$(RP_PORT)
	@test -f instance/demo-card.json && $(BIN)/kakehashi sandbox check-card --card instance/demo-card.json \
		>/dev/null 2>&1 || $(BIN)/kakehashi sandbox issue-card \
		--out instance/demo-card.json --pin 1234 --password DEMO1234 --seed 1
	$(BIN)/kakehashi sandbox refresh
	$(BIN)/kakehashi sandbox register-corporation --card instance/demo-card.json \
		--name 株式会社架け橋デモ商事 --address 東京都千代田区霞が関１丁目１番１号
	@echo ""
	@echo "  Kakehashi is starting on http://$(HOST):$(PORT)/"
	@echo "  (demo tenant: http://$(HOST):$(PORT)/t/demo/)"
	@echo "  The console: http://$(HOST):$(PORT)/console/  (demo@kakehashi.example / demo bridge over the kamo river)"
	@echo "  The bridge agent runs beside it with a virtual sandbox card: PIN 1234, password DEMO1234."
	@echo "  The demo relying party: http://$(HOST):$(RP_PORT)/  (click \"log in with My Number Card\")"
	@echo "  A reception kiosk: http://$(HOST):$(RP_PORT)/kiosk"
	@echo "  The demo card's holder represents 株式会社架け橋デモ商事 (法人番号 above): prepare a power of"
	@echo "  attorney in the console and sign it with the card."
	@echo ""
	@$(BIN)/kakehashi-bridge serve --origin http://$(HOST):$(PORT) --origin http://$(HOST):$(RP_PORT) \
		--virtual-card instance/demo-card.json & \
		agent=$$!; $(BIN)/python -m examples.demo_rp.app --config instance/demo-rp.json \
		--host $(HOST) --port $(RP_PORT) & rp=$$!; \
		trap 'kill $$agent $$rp 2>/dev/null' EXIT INT TERM; \
		$(BIN)/kakehashi serve --host $(HOST) --port $(PORT)

test: system-packages install-dev lint
	$(MAKE) --no-print-directory test-sqlite
	@if [ -n "$$TEST_DATABASE_URL" ] || [ "$$CI" = "true" ]; then \
		$(MAKE) --no-print-directory test-postgresql; \
	else \
		echo "PostgreSQL run skipped: set TEST_DATABASE_URL (CI=true runs it always)"; \
	fi

lint: install-dev
	$(BIN)/ruff check saas tests bench bridge-agent examples migrations/env.py

test-sqlite:
	@echo "== tests on SQLite =="
	env -u TEST_DATABASE_URL $(BIN)/pytest -n 2 --dist loadfile $(PYTEST_ARGS)

test-postgresql:
	@echo "== tests on PostgreSQL =="
	TEST_DATABASE_URL="$${TEST_DATABASE_URL:-$(PG_TEST_URL)}" $(BIN)/pytest -n 2 --dist loadfile $(PYTEST_ARGS)

install: $(VENV)/.installed translations
install-dev: $(VENV)/.installed-dev translations

$(VENV)/bin/python:
	$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is needed" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml bridge-agent/pyproject.toml
	$(BIN)/pip install --quiet -e . -e bridge-agent
	touch $@

$(VENV)/.installed-dev: $(VENV)/bin/python pyproject.toml bridge-agent/pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]' -e bridge-agent
	touch $@ $(VENV)/.installed

translations: $(VENV)/.installed
	@$(BIN)/pybabel compile --statistics -d saas/translations 2>&1 | grep -v '^compiling' || true

# Debian packages the tests need (PC/SC daemon and virtual reader, Chromium), installed
# only when missing and only when running as root.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = "0" ]; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing Debian packages (run as root to install):$$missing"; \
		fi; \
	fi
	@# vpcd listens on 35963-35964; keep the kernel from handing them out as the local port of
	@# an outgoing connection (the PostgreSQL pass opens many), or pcscd's reader cannot bind.
	@if [ "$$(id -u)" = "0" ] && [ -w /proc/sys/net/ipv4/ip_local_reserved_ports ]; then \
		reserved=$$(cat /proc/sys/net/ipv4/ip_local_reserved_ports); \
		case ",$$reserved," in *,35963-35964,*) ;; \
		*) echo "$${reserved:+$$reserved,}35963-35964" > /proc/sys/net/ipv4/ip_local_reserved_ports;; esac; \
	fi

clean:
	rm -rf $(VENV) instance *.egg-info .pytest_cache tests/artifacts
