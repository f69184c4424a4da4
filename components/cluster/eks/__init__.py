"""EKS: `settings` (no SDK import, read by config validation) and `cluster` (pulumi_aws, imported
only when the stack's cloud is eks)."""
