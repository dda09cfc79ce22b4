"""The kernel every component shares: database models and sessions, domain types and catalogs, settings,
Kubernetes client and leadership, retry, the Prometheus client, the health server and logging. It imports no
component."""
