"""Trace a Llama-family decoder into an OpenVINO model that decodes with a KV cache and LoRA slots.

The torch module below computes exactly what loracle's lean step computes (same modules, same rotary tables),
written so that OpenVINO's CPU plugin recognises its fused patterns: a stateful KV cache (ReadValue -> Concat
-> ScaledDotProductAttention -> Assign) and LoRA subgraphs whose A, alpha and B are state variables (each fused
into one "LoRA" node). Projections that read the same input (q/k/v, gate/up) are one matrix product, so a layer
has four LoRA slots, not seven: each LoRA node costs about the same whatever its rank. Adapters are set as state
values per request, so switching adapters needs no recompilation. Slots an adapter set does not use still cost
decode time, so the model is traced once with every slot and `keep_slots` removes the unused ones before it is
compiled. Only the logits of the last position are computed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from loracle.model.lean import _decoder_stack, _rotate

#: the projections of each decoder layer that can carry a LoRA, by the attribute holding them
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
#: LoRA slots per layer: (slot, the projections traced as one matrix product in it, in output order)
GROUPS = (
    ("self_attn.qkv", ("q_proj", "k_proj", "v_proj")),
    ("self_attn.o", ("o_proj",)),
    ("mlp.gate_up", ("gate_proj", "up_proj")),
    ("mlp.down", ("down_proj",)),
)
INPUTS = ("input_ids", "attention_mask", "position_ids", "beam_idx")
LORA_PARTS = ("A", "alpha", "B")
_PREFIX = "lora."


@dataclass(frozen=True)
class SlotPart:
    """Where one projection's output lies in its slot's fused output: columns [start, stop)."""

    slot: str
    start: int
    stop: int


def slot_paths(model: nn.Module) -> list[str]:
    """Module paths (as in the model's named_modules, PEFT wrapper looked through) that can carry a LoRA."""
    return list(slot_parts(model))


def slot_parts(model: nn.Module) -> dict[str, SlotPart]:
    """Each projection that can carry a LoRA (module path) -> its slot and columns in the slot's output."""
    stack = _decoder_stack(model)
    parts = {}
    for index, layer in enumerate(stack.layers if stack is not None else []):
        for slot, names in GROUPS:
            block, _ = slot.split(".")
            start = 0
            for name in names:
                width = _plain(getattr(getattr(layer, block), name)).out_features
                parts[f"model.layers.{index}.{block}.{name}"] = SlotPart(
                    f"model.layers.{index}.{slot}", start, start + width
                )
                start += width
    return parts


def slot_names(model: nn.Module) -> list[str]:
    """Every LoRA slot of the traced model, in graph order."""
    return list(dict.fromkeys(part.slot for part in slot_parts(model).values()))


def lora_state_name(slot: str, part: str) -> str:
    return f"{_PREFIX}{slot}.{part}"


def _plain(module: nn.Module) -> nn.Module:
    return getattr(module, "base_layer", module)


def _fused(modules: Iterable[nn.Module]) -> nn.Linear:
    """One linear computing the outputs of `modules` (plain linears, same input) side by side."""
    linears = [_plain(m) for m in modules]
    if len(linears) == 1:
        return linears[0]
    weight = torch.cat([m.weight for m in linears], dim=0)
    fused = nn.Linear(weight.shape[1], weight.shape[0], bias=any(m.bias is not None for m in linears))
    fused = fused.to(weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(weight)
        if fused.bias is not None:
            fused.bias.copy_(
                torch.cat([m.bias if m.bias is not None else weight.new_zeros(m.out_features) for m in linears])
            )
    return fused


class _DecoderGraph(nn.Module):
    """forward(input_ids, attention_mask, position_ids, beam_idx, *past, *lora) -> (logits, *present).

    `lora` holds (A, alpha, B) per slot, layer by layer in GROUPS order.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        config = model.config
        self.stack = _decoder_stack(model)
        self.lm_head = model.get_output_embeddings()
        self.heads = config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.scale = getattr(self.stack.layers[0].self_attn, "scaling", self.head_dim**-0.5)
        self.layers = len(self.stack.layers)
        self.qk_norm = hasattr(self.stack.layers[0].self_attn, "q_norm")
        self.fused = nn.ModuleList(
            nn.ModuleDict(
                {
                    slot.replace(".", "_"): _fused(getattr(getattr(layer, slot.split(".")[0]), n) for n in names)
                    for slot, names in GROUPS
                }
            )
            for layer in self.stack.layers
        )
        self.widths = (self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim)

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
            attn = layer.self_attn

            def project(slot: str, x: torch.Tensor, index: int = index) -> torch.Tensor:
                a, alpha, b = next(lora), next(lora), next(lora)
                return self.fused[index][slot.replace(".", "_")](x) + ((x @ a) * alpha) @ b  # as OpenVINO fuses it

            x = layer.input_layernorm(hidden)
            q, k, v = project("self_attn.qkv", x).split(self.widths, dim=-1)
            q = q.reshape(1, -1, self.heads, self.head_dim)
            k = k.reshape(1, -1, self.kv_heads, self.head_dim)
            if self.qk_norm:
                q, k = attn.q_norm(q), attn.k_norm(k)
            q = _rotate(q.transpose(1, 2), cos, sin)
            k = _rotate(k.transpose(1, 2), cos, sin)
            v = v.reshape(1, -1, self.kv_heads, self.head_dim).transpose(1, 2)
            k = torch.cat([past[2 * index].index_select(0, beam_idx), k], dim=2)
            v = torch.cat([past[2 * index + 1].index_select(0, beam_idx), v], dim=2)
            presents += [k, v]
            out = F.scaled_dot_product_attention(q, self._repeat(k), self._repeat(v), attn_mask=mask, scale=self.scale)
            out = out.transpose(1, 2).reshape(1, -1, self.heads * self.head_dim)
            hidden = hidden + project("self_attn.o", out)
            x = layer.post_attention_layernorm(hidden)
            gate, up = project("mlp.gate_up", x).chunk(2, dim=-1)
            hidden = hidden + project("mlp.down", F.silu(gate) * up)
        last = self.stack.norm(hidden[:, -1:, :])
        return (self.lm_head(last), *presents)

    def _repeat(self, x: torch.Tensor) -> torch.Tensor:
        """Grouped-query attention: each key/value head serves heads / kv_heads query heads (as transformers)."""
        groups = self.heads // self.kv_heads
        if groups == 1:
            return x
        batch, kv_heads, length, dim = x.shape
        return x[:, :, None].expand(batch, kv_heads, groups, length, dim).reshape(batch, kv_heads * groups, length, dim)


def trace(model: nn.Module):
    """The model as a stateful OpenVINO model: inputs INPUTS, output "logits", KV cache and LoRA slots as states."""
    import openvino as ov
    from openvino._offline_transformations import apply_make_stateful_transformation

    graph = _DecoderGraph(model).eval()
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
    lora_names = []
    for index, fused in enumerate(graph.fused):
        for slot, _ in GROUPS:
            linear = fused[slot.replace(".", "_")]
            dims = {"A": [linear.in_features, 1], "alpha": [1, 1], "B": [1, linear.out_features]}
            for part in LORA_PARTS:
                lora_names.append(lora_state_name(f"model.layers.{index}.{slot}", part))
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


def keep_slots(model, keep: set[str]):
    """`model` (traced with every slot) without the LoRA slots not in `keep`, in place; returns it.

    A slot's A, alpha and B states, its LoRA product and the Add that joins it to the projection go: what is
    left is the projection alone, as if traced without the slot.
    """
    removed = set()
    for op in model.get_ops():
        if op.get_type_name() != "ReadValue":
            continue
        name = op.get_attributes()["variable_id"]
        if not name.startswith(_PREFIX) or not name.endswith(".B") or name[len(_PREFIX) : -2] in keep:
            continue
        (product,) = _consumers(op, "MatMul")
        (joined,) = _consumers(product, "Add")
        base = next(value for value in joined.input_values() if value.get_node() is not product)
        for target in list(joined.output(0).get_target_inputs()):
            target.replace_source_output(base)
        removed.update(lora_state_name(name[len(_PREFIX) : -2], part) for part in LORA_PARTS)
    for sink in list(model.get_sinks()):
        if sink.get_attributes()["variable_id"] in removed:
            model.remove_sink(sink)
    for variable in list(model.get_variables()):
        if variable.info.variable_id in removed:
            model.remove_variable(variable)
    model.validate_nodes_and_infer_types()
    return model


def _consumers(node, kind: str) -> list:
    """The nodes of type `kind` that read `node`'s output."""
    targets = (target.get_node() for target in node.output(0).get_target_inputs())
    return [target for target in targets if target.get_type_name() == kind]


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
