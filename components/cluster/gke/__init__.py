"""GKE: `settings` (no SDK import, read by config validation) and `cluster` (pulumi_gcp, imported
only when the stack's cloud is gke)."""
