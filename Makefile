# classroom-sms: `make run` starts the app, `make test` runs the tests. Both set themselves up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
PYTEST_ARGS ?= -m "not drills"
PORT ?= 8000
# Ports of the fake Coder and fake Twilio of `make fake-services`.
CODER_PORT ?= 7080
TWILIO_PORT ?= 7090
# A variable given on make's command line (USERNAME=ada), never one inherited from the
# environment (many shells export USERNAME).
cli = $(if $(filter command line,$(origin $(1))),$($(1)))

.PHONY: run test venv messages superuser instructor lint drills bench fake-services clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

# The translations of students' SMS: locale/<lang>/LC_MESSAGES/django.po compiled to .mo (not
# committed). Babel, not Django's compilemessages: that needs GNU gettext's msgfmt, which a
# fresh machine with only Python lacks.
messages: $(STAMP)
	$(BIN)/pybabel -q compile -d locale -D django

# A local-development .env on first run: DEBUG on and a generated SECRET_KEY.
.env:
	@echo "# Created by 'make run' for local development. See .env.example for every setting." > $@
	@echo "DEBUG=1" >> $@
	@echo "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" >> $@
	@echo "Wrote a development .env (DEBUG=1, fresh SECRET_KEY)."

run: $(STAMP) .env messages
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py setup_schedules
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	PORT=$(PORT) exec scripts/run

test: $(STAMP) messages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

drills: $(STAMP) messages
	$(BIN)/python -m pytest -m drills

superuser: $(STAMP) .env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py createsuperuser

# An instructor (a staff user in the Instructors group). `make instructor USERNAME=ada
# EMAIL=ada@example.edu` asks only for the password; add PASSWORD=... to ask nothing.
instructor: $(STAMP) .env
	$(BIN)/python manage.py migrate --noinput --verbosity 0
	$(BIN)/python manage.py createinstructor \
	    $(if $(call cli,USERNAME),--username '$(call cli,USERNAME)') \
	    $(if $(call cli,EMAIL),--email '$(call cli,EMAIL)') \
	    $(if $(call cli,PASSWORD),--password '$(call cli,PASSWORD)')

# Try the app without Twilio or Coder: a fake of each in the foreground (Ctrl-C stops them);
# prints the settings that point `make run` at them and writes var/fake-services.env.
fake-services: $(STAMP)
	$(BIN)/python -m tests.fakes.services --coder-port $(CODER_PORT) \
	    --twilio-port $(TWILIO_PORT) --app-url http://127.0.0.1:$(PORT)

# ruff, then mypy --strict with django-stubs over registrations/ and classroom_sms/ (the plugin
# reads the settings, hence a throwaway SECRET_KEY and no .env).
lint: $(STAMP)
	$(BIN)/ruff check .
	SECRET_KEY=lint ENV_FILE= $(BIN)/mypy

bench: $(STAMP)
	bench/run

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
