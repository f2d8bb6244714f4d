# Settings for Django's own test suite (the sdist's tests/runtests.py) against
# MySQL/MariaDB, as scripts/django-compat.py runs it: once straight to the
# server, once through the proxy. Modelled on tests/test_sqlite.py from the
# sdist and on the MySQL settings of Django's own CI: two databases, 'default'
# and 'other' (multiple_database and others need both), test databases in
# utf8mb4. Where to connect comes from the environment, so that the two runs
# differ only in HOST/PORT and the database names:
#   DJANGO_COMPAT_HOST, DJANGO_COMPAT_PORT, DJANGO_COMPAT_USER,
#   DJANGO_COMPAT_PASSWORD, DJANGO_COMPAT_DB_PREFIX (the databases are
#   <prefix>_default and <prefix>_other; Django's test databases get "test_"
#   in front, and its --parallel clones "_1", "_2" behind).
import os


def database(alias: str) -> dict:
    prefix = os.environ.get("DJANGO_COMPAT_DB_PREFIX", "django")
    return {
        "ENGINE": "django.db.backends.mysql",
        "HOST": os.environ.get("DJANGO_COMPAT_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DJANGO_COMPAT_PORT", "3306"),
        "USER": os.environ.get("DJANGO_COMPAT_USER", "django"),
        "PASSWORD": os.environ.get("DJANGO_COMPAT_PASSWORD", ""),
        "NAME": f"{prefix}_{alias}",
        "OPTIONS": {"charset": "utf8mb4"},
        "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_general_ci"},
    }


DATABASES = {"default": database("default"), "other": database("other")}

SECRET_KEY = "django_tests_secret_key"

# A fast hasher, as in the sdist's own test settings.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

USE_TZ = False

TEST_RUNNER = "compat_runner.RecordingRunner"
