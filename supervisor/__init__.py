"""plait.supervisor: binds listeners and runs the workers; the ``plait`` command."""
