"""Every MoE model type of the installed transformers, checked: tiny random instances built from
their own config classes, discovery of the MoE types, the growth check, draft declarations and
the generated docs/FAMILIES.md."""
