"""Dense decoders (Llama, Mistral, Qwen2, Qwen3): depth growth only."""

from moegrow.families.base import Family

LLAMA = Family(
    name="llama",
    model_types=("llama", "mistral"),
    residual=("self_attn.o_proj.*", "mlp.down_proj.*"),
)

QWEN = Family(
    name="qwen",
    model_types=("qwen2", "qwen3"),
    residual=("self_attn.o_proj.*", "mlp.down_proj.*"),
    index_rules=("max_window_layers",),
)
