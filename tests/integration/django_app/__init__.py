# A tiny Django app for tests/integration/test_driver_django.py (one model).
