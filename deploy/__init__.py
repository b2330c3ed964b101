"""plait.deploy: renders Dockerfile, Kubernetes, Compose and systemd files."""
