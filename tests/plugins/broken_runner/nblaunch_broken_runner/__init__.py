"""Fails to import, as a plug-in with a missing dependency does."""

import nblaunch_dependency_that_is_not_installed  # noqa: F401
