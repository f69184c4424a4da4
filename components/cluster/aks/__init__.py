"""AKS: `settings` (no SDK import, read by config validation) and `cluster` (pulumi_azure_native, imported
only when the stack's cloud is aks)."""
