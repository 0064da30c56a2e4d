"""Fixtures of the Kubernetes runner's tests."""

from __future__ import annotations

from tests.extension.conftest import ip, shell  # noqa: F401 - the magics' real shell
