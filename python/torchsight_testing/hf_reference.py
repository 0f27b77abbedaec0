"""What the Hugging Face family tests compare with, from eager transformers (its own masks and
cache, forward hooks for the interventions), for every family in one process.

    echo '{"families": {NAME: {"src": DIR, "out": EXPORT_DIR, "base": PATH, "layers": PATH,
           "attn": NAME, "tied": PATH|null}}, "prompts": [TEXT...], "steer": [...], "newTokens": N}' \
        | python -m torchsight_testing.hf_reference

Prints ``{NAME: {...}}`` with, for a left-padded batch of the prompts (each row's real positions
only): the logits, layer 1's output, its attention's output[0], its MLP's output, the decoder
stack's last_hidden_state, and the logits with ``steer`` added to layer 0's output; transformers'
``generate(do_sample=False)`` batched and alone; greedy uncached recomputation with and without
the steering hook; whether the export's lm_head shares the tied embedding's tensor.
"""
from __future__ import annotations

import json
import sys
import traceback

import torch

import torchsight_export  # noqa: F401  (the hook op, to load the exports)
from torchsight_export.export import padded_batch

from .oracle import to_jsonable


def _first(o):
    return o[0] if isinstance(o, tuple) else o


def reference(fam: dict, prompts, steer, new_tokens: int) -> dict:
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(fam["src"], attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(fam["src"])
    pad = tok.pad_token_id
    modules = dict(model.named_modules())
    layers = modules[fam["layers"]]
    ids_list = [tok.encode(p) for p in prompts]
    ids, mask, pos = padded_batch(ids_list, pad)
    offsets = [ids.shape[1] - len(p) for p in ids_list]

    def rows(t):
        return [t[r, o:] for r, o in enumerate(offsets)]

    def fwd(i, m, p):
        return model(input_ids=i, attention_mask=m, position_ids=p).logits

    acts = {}
    hooks = [
        layers[1].register_forward_hook(lambda m, i, o: acts.__setitem__("layer", _first(o).clone())),
        getattr(layers[1], fam["attn"]).register_forward_hook(lambda m, i, o: acts.__setitem__("attn", o[0].clone())),
        layers[1].mlp.register_forward_hook(lambda m, i, o: acts.__setitem__("mlp", o.clone())),
        modules[fam["base"]].register_forward_hook(lambda m, i, o: acts.__setitem__("base", o.last_hidden_state.clone())),
    ]
    logits = fwd(ids, mask, pos)
    for h in hooks:
        h.remove()

    s = torch.tensor(steer)

    def add(m, i, o):
        return (o[0] + s,) + tuple(o[1:]) if isinstance(o, tuple) else o + s

    def greedy(p):
        seq, out = list(p), []
        for _ in range(new_tokens):
            t = int(fwd(*padded_batch([seq], pad))[0, -1].argmax())
            out.append(t)
            seq.append(t)
        return out

    h = layers[0].register_forward_hook(add)
    patched = fwd(ids, mask, pos)
    steered = [greedy(p) for p in ids_list]
    h.remove()
    plain = [greedy(p) for p in ids_list]

    def generate(i, m):
        out = model.generate(input_ids=i, attention_mask=m, do_sample=False, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, pad_token_id=pad)
        return out[:, i.shape[1]:].tolist()

    tied = None
    if fam.get("tied"):
        ts = torch.jit.load(fam["out"] + "/model.pt")
        emb = dict(ts.named_modules())[fam["tied"]]
        tied = ts.lm_head.weight.data_ptr() == emb.weight.data_ptr()
    return {
        "prompts": ids_list, "logits": rows(logits), "patched": rows(patched), "layer": rows(acts["layer"]),
        "attn": rows(acts["attn"]), "mlp": rows(acts["mlp"]), "base": rows(acts["base"]),
        "generate": generate(ids, mask),
        "alone": [generate(torch.tensor([p]), torch.ones(1, len(p), dtype=torch.long))[0] for p in ids_list],
        "steered": steered, "plain": plain, "tied": tied,
        "classes": {"layer": type(layers[1]).__name__, "model": type(model).__name__},
    }


def main() -> int:
    try:
        req = json.loads(sys.stdin.read())
        with torch.no_grad():
            out = {name: reference(fam, req["prompts"], req["steer"], int(req["newTokens"]))
                   for name, fam in req["families"].items()}
        out = to_jsonable(out)
    except Exception:
        sys.stdout.write(json.dumps({"error": traceback.format_exc()}) + "\n")
        return 1
    sys.stdout.write(json.dumps(out, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
