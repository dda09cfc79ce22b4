"""Labels Dais puts on every object it owns in a cluster. Objects are found by these, never by their names."""

ENDPOINT_ID = "dais.dev/endpoint-id"
MANAGED_BY = "dais-controller"
SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
