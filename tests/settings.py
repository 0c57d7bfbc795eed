"""Test settings: the real settings module, with a fixed key and plain static storage."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-secret")
# Tests never read a developer's .env: they must behave the same on every machine.
os.environ["ENV_FILE"] = ""

from classroom_sms.settings import *  # noqa: E402,F403

SECURE_SSL_REDIRECT = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
Q_CLUSTER = {**Q_CLUSTER, "sync": False}  # noqa: F405  (tests switch sync mode per test)
