# classroom-sms: `make run` starts the app, `make test` runs the tests. Both set themselves up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
PYTEST_ARGS ?= -m "not drills"
PORT ?= 8000

.PHONY: run test venv superuser instructor lint drills bench fake-services clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

# A local-development .env on first run: DEBUG on and a generated SECRET_KEY.
.env:
	@echo "# Created by 'make run' for local development. See .env.example for every setting." > $@
	@echo "DEBUG=1" >> $@
	@echo "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" >> $@
	@echo "Wrote a development .env (DEBUG=1, fresh SECRET_KEY)."

run: $(STAMP) .env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py setup_schedules
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	PORT=$(PORT) exec scripts/run

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

drills: $(STAMP)
	$(BIN)/python -m pytest -m drills

superuser: $(STAMP) .env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py createsuperuser

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	bench/run

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
