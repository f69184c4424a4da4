"""Clusters behind one interface: GKE, EKS, AKS, or an existing cluster (kubeconfig)."""
