"""Rule modules, one concern each. ``policies.pack.ALL_RULES`` lists every rule of the pack."""
