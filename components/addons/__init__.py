"""Cluster add-ons: upstream Helm charts at pinned versions, and what the platform adds on top."""
