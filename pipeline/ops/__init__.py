"""What operators watch: heartbeats, the figures snapshot, the Prometheus exporter."""
