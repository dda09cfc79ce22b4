"""Kubernetes plumbing shared by the components that talk to a cluster: a narrow raw-JSON client and Lease
leader election. No component logic lives here."""
