"""Trace a Llama-family decoder into an OpenVINO model that decodes with a KV cache and LoRA slots.

The torch module below computes exactly what loracle's lean step computes (same modules, same rotary tables),
written so that OpenVINO's CPU plugin recognises its fused patterns: a stateful KV cache (ReadValue -> Concat
-> ScaledDotProductAttention -> Assign) and, on every projection, a LoRA subgraph whose A, alpha and B are
state variables (fused into one "LoRA" node). Adapters are set as state values per request, so switching
adapters needs no recompilation; an empty (rank 0) slot adds nothing to the result, but its nodes still cost
~10% of decode speed, so the model is also traced without slots for generations without adapters. Only the
logits of the last position are computed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from loracle.model.lean import _decoder_stack, _rotate

#: the projections of each decoder layer that get a LoRA slot, by the attribute holding them
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
INPUTS = ("input_ids", "attention_mask", "position_ids", "beam_idx")
LORA_PARTS = ("A", "alpha", "B")


def slot_paths(model: nn.Module) -> list[str]:
    """Module paths (as in the model's named_modules, PEFT wrapper looked through) that have a LoRA slot."""
    stack = _decoder_stack(model)
    layers = len(stack.layers) if stack is not None else 0
    return [
        f"model.layers.{i}.{'self_attn' if name in ATTENTION else 'mlp'}.{name}"
        for i in range(layers)
        for name in (*ATTENTION, *MLP)
    ]


def lora_state_name(path: str, part: str) -> str:
    return f"lora.{path}.{part}"


class _DecoderGraph(nn.Module):
    """forward(input_ids, attention_mask, position_ids, beam_idx, *past, *lora) -> (logits, *present).

    Without `lora`, there are no LoRA inputs and the projections are plain.
    """

    def __init__(self, model: nn.Module, lora: bool) -> None:
        super().__init__()
        self.lora = lora
        config = model.config
        self.stack = _decoder_stack(model)
        self.lm_head = model.get_output_embeddings()
        self.heads = config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.scale = getattr(self.stack.layers[0].self_attn, "scaling", self.head_dim**-0.5)
        self.layers = len(self.stack.layers)
        self.qk_norm = hasattr(self.stack.layers[0].self_attn, "q_norm")

    def forward(self, input_ids, attention_mask, position_ids, beam_idx, *rest):
        past, lora = rest[: 2 * self.layers], iter(rest[2 * self.layers :])
        hidden = self.stack.embed_tokens(input_ids)
        cos, sin = self.stack.rotary_emb(hidden, position_ids)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        keys = torch.arange(attention_mask.shape[1]).unsqueeze(0)
        visible = (keys <= position_ids.unsqueeze(-1)) & attention_mask.bool().unsqueeze(1)
        mask = torch.where(visible.unsqueeze(1), 0.0, torch.finfo(hidden.dtype).min).to(hidden.dtype)
        presents = []
        for index, layer in enumerate(self.stack.layers):
            attn, mlp = layer.self_attn, layer.mlp
            slots = {name: (next(lora), next(lora), next(lora)) for name in (*ATTENTION, *MLP)} if self.lora else {}
            x = layer.input_layernorm(hidden)
            q, k, v = (_lora_linear(getattr(attn, n), x, slots.get(n)) for n in ("q_proj", "k_proj", "v_proj"))
            q = q.view(1, -1, self.heads, self.head_dim)
            k = k.view(1, -1, self.kv_heads, self.head_dim)
            if self.qk_norm:
                q, k = attn.q_norm(q), attn.k_norm(k)
            q = _rotate(q.transpose(1, 2), cos, sin)
            k = _rotate(k.transpose(1, 2), cos, sin)
            v = v.view(1, -1, self.kv_heads, self.head_dim).transpose(1, 2)
            k = torch.cat([past[2 * index].index_select(0, beam_idx), k], dim=2)
            v = torch.cat([past[2 * index + 1].index_select(0, beam_idx), v], dim=2)
            presents += [k, v]
            out = F.scaled_dot_product_attention(q, self._repeat(k), self._repeat(v), attn_mask=mask, scale=self.scale)
            out = out.transpose(1, 2).reshape(1, -1, self.heads * self.head_dim)
            hidden = hidden + _lora_linear(attn.o_proj, out, slots.get("o_proj"))
            x = layer.post_attention_layernorm(hidden)
            gate = _lora_linear(mlp.gate_proj, x, slots.get("gate_proj"))
            up = _lora_linear(mlp.up_proj, x, slots.get("up_proj"))
            hidden = hidden + _lora_linear(mlp.down_proj, F.silu(gate) * up, slots.get("down_proj"))
        last = self.stack.norm(hidden[:, -1:, :])
        return (self.lm_head(last), *presents)

    def _repeat(self, x: torch.Tensor) -> torch.Tensor:
        """Grouped-query attention: each key/value head serves heads / kv_heads query heads (as transformers)."""
        groups = self.heads // self.kv_heads
        if groups == 1:
            return x
        batch, kv_heads, length, dim = x.shape
        return x[:, :, None].expand(batch, kv_heads, groups, length, dim).reshape(batch, kv_heads * groups, length, dim)


def _lora_linear(module: nn.Module, x: torch.Tensor, slot: tuple[torch.Tensor, ...] | None) -> torch.Tensor:
    """module(x) (its base layer, if PEFT wrapped it) plus the slot's ((x A) * alpha) B.

    Written in the order OpenVINO's LoRA fusion expects.
    """
    out = getattr(module, "base_layer", module)(x)
    if slot is None:
        return out
    a, alpha, b = slot
    return out + ((x @ a) * alpha) @ b


def trace(model: nn.Module, *, lora: bool = True):
    """The model as a stateful OpenVINO model: inputs INPUTS, output "logits", KV cache (and LoRA slots) as states."""
    import openvino as ov
    from openvino._offline_transformations import apply_make_stateful_transformation

    graph = _DecoderGraph(model, lora).eval()
    stack = graph.stack
    names, examples, shapes, types = list(INPUTS), [], [[1, -1], [1, -1], [1, -1], [-1]], [ov.Type.i64] * 3
    types.append(ov.Type.i32)
    examples += [torch.tensor([[1, 2]]), torch.ones(1, 3, dtype=torch.long), torch.tensor([[1, 2]])]
    examples.append(torch.zeros(1, dtype=torch.int32))
    dtype = stack.embed_tokens.weight.dtype
    kv_names = []
    for index in range(graph.layers):
        for part in ("key", "value"):
            kv_names.append(f"past.{index}.{part}")
            examples.append(torch.zeros(1, graph.kv_heads, 1, graph.head_dim, dtype=dtype))
            shapes.append([1, graph.kv_heads, -1, graph.head_dim])
            types.append(ov.Type.f32)
    names += kv_names
    modules = dict(model.named_modules())
    lora_names = []
    for path in slot_paths(model) if lora else []:
        linear = _linear_at(modules, path)
        dims = {"A": [linear.in_features, 1], "alpha": [1, 1], "B": [1, linear.out_features]}
        for part in LORA_PARTS:
            lora_names.append(lora_state_name(path, part))
            examples.append(torch.zeros(*dims[part], dtype=dtype))
            shapes.append([-1 if d == 1 else d for d in dims[part]])
            types.append(ov.Type.f32)
    names += lora_names
    with torch.no_grad():
        converted = ov.convert_model(
            graph,
            example_input=tuple(examples),
            input=[(ov.PartialShape(s), t) for s, t in zip(shapes, types, strict=True)],
        )
    for port, name in zip(converted.inputs, names, strict=True):
        port.get_tensor().set_names({name})
    outputs = ["logits"] + [n.replace("past.", "present.") for n in kv_names]
    for port, name in zip(converted.outputs, outputs, strict=True):
        port.get_tensor().set_names({name})
    apply_make_stateful_transformation(converted, {n: n.replace("past.", "present.") for n in kv_names})
    _zero_initial_cache(converted)
    _lora_as_states(converted, set(lora_names))
    return converted


def _linear_at(modules: dict[str, nn.Module], path: str) -> nn.Module:
    module = modules.get(path) or modules.get(f"base_model.model.{path}")
    return getattr(module, "base_layer", module)


def _zero_initial_cache(model) -> None:
    """An empty KV cache at the start of a generation: CPU's fused attention needs an explicit initial value."""
    import openvino.opset13 as ops

    batch = ops.gather(
        ops.shape_of(model.input("input_ids"), output_type="i64"), ops.constant(np.array([0])), ops.constant(0)
    )
    for op in model.get_ops():
        if op.get_type_name() == "ReadValue":
            dims = [d.min_length for d in op.get_output_partial_shape(0)]
            shape = ops.concat([batch, *(ops.constant(np.array([d], np.int64)) for d in dims[1:])], 0)
            op.set_arguments([ops.broadcast(ops.constant(np.float32(0.0)), shape)])
    model.validate_nodes_and_infer_types()


def _lora_as_states(model, names: set[str]) -> None:
    """Turn the LoRA inputs into state variables (empty until set), the form the CPU plugin fuses."""
    import openvino as ov
    import openvino.opset6 as ops6
    from openvino.op import assign
    from openvino.op.util import Variable, VariableInfo

    for parameter in list(model.get_parameters()):
        name = parameter.get_output_tensor(0).get_any_name()
        if name not in names:
            continue
        info = VariableInfo()
        info.variable_id, info.data_type, info.data_shape = name, ov.Type.f32, parameter.get_partial_shape()
        variable = Variable(info)
        read = ops6.read_value(variable)
        parameter.output(0).replace(read.output(0))
        model.remove_parameter(parameter)
        model.add_variables([variable])
        model.add_sinks([assign(read, variable)])  # the CPU plugin needs each variable to have an Assign
    model.validate_nodes_and_infer_types()
