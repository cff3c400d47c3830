"""What the tests share: harnesses, builders, servers and brokers they start."""

import pytest

# Rewrite asserts in the log contract too, so its failures show the compared values. Done
# here because this runs before any module of the package is imported.
pytest.register_assert_rewrite("tests.support.log_contract")
