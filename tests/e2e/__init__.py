"""End-to-end tests: real Prometheus and Alertmanager in front of the receiver as a real process."""
