"""plait.worker: the per-core worker of a reactor cluster."""
