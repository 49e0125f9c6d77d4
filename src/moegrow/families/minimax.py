"""MiniMax-Text-01 (``minimax``): lightning (linear) attention or softmax attention per
``layer_types``, Mixtral-style experts per expert on disk; softmax, top-k, renormalised (width
growth is exact). The layers are post-norm: the residual is taken after the input norm
(``n(x) * alpha + f(n(x)) * beta``), so a zero-initialised depth copy still re-normalises (and
scales) the stream: depth growth is not function-preserving, ``--zero-init`` is refused and plain
copies are planned as not exact. The lightning layers' decay
buffers depend on the layer index; copies keep their source layer's buffers where the
checkpoint stores them."""

from dataclasses import replace

from moegrow.families import mixtral

FAMILY = replace(
    mixtral.FAMILY,
    name="minimax",
    model_types=("minimax",),
    residual=(*mixtral.FAMILY.residual, "self_attn.out_proj.*"),
    required_layer=("input_layernorm.weight", "post_attention_layernorm.weight"),
    buffers=(
        "self_attn.slope_rate",
        "self_attn.query_decay",
        "self_attn.key_decay",
        "self_attn.diagonal_decay",
    ),
    depth_not_exact=(
        "MiniMax takes the residual after each layer's input norm (n(x) * alpha + f(n(x)) * "
        "beta): even a zero-initialised copy re-normalises and scales the residual stream"
    ),
)
