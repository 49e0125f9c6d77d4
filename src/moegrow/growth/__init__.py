"""Growth of a checkpoint: options, layer and expert maps, exactness rules, config edits, the plan,
its execution and verification."""
