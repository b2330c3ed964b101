"""plait.cluster.testing: fakes and helpers for testing Plait code.

The pytest plugin lives in ``plait.cluster.testing.pytest_plugin`` and is registered
through the ``pytest11`` entry point.
"""
