"""Engine-test fixtures live in tests/conftest.py; helpers in tests/engine_support.py."""
