# One image for both processes:
#   web:    docker run ... classroom-sms            (gunicorn, the default command)
#   worker: docker run -e PROCESS_ROLE=worker ... classroom-sms python manage.py qcluster
# (PROCESS_ROLE=worker makes the HEALTHCHECK look at the worker heartbeat instead of HTTP.)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/app/.venv/bin:$PATH" \
    PORT=8000

WORKDIR /app
RUN useradd --create-home --uid 1000 app

# The same steps `make run` takes: a venv from requirements.txt, the translations of students'
# SMS compiled (`make messages`), then collectstatic.
COPY requirements.txt .
RUN python -m venv .venv \
    && .venv/bin/python -m pip install --no-cache-dir --upgrade pip \
    && .venv/bin/python -m pip install --no-cache-dir -r requirements.txt

COPY . .
RUN pybabel -q compile -d locale -D django \
    && SECRET_KEY=build-only ENV_FILE= python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p var && chown -R app:app /app/var

USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "scripts/healthcheck"]

# Run migrations once per deploy (e.g. `docker run ... python manage.py migrate`), not per process.
# gunicorn.conf.py: an access log without query strings (they may hold phone numbers).
CMD ["sh", "-c", "gunicorn classroom_sms.wsgi --bind 0.0.0.0:${PORT} --workers ${WEB_CONCURRENCY:-3} --threads ${WEB_THREADS:-4} --config gunicorn.conf.py --access-logfile -"]
