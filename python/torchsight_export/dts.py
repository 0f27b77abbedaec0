"""The module tree of an export as a TypeScript declaration file (``model.d.ts``).

``write_dts(manifest, path, name)`` writes one exported interface per distinct module description,
the root one named ``name``. torchsight's ``EnvoyOf<T>`` (src/trace/types.ts) maps such a description
to envoy types, so ``LanguageModel.load<GPT2LMHeadModel>(dir)`` completes ``m.transformer.h[0].mlp``.

A description is a plain object type:

    type: 'GPT2Block'                      the module's class
    inputs: ['tensor', 'tensor']           its positional tensor inputs
    output: ['tensor', 'none']             its output
    outputNames: ['logits']                the root only: names of the root output's items
    children: { ln_1: LayerNorm; ... }     named submodules
    list: GPT2Block; length: 12            a list (children 0..N-1) whose children share one class
    children: [Linear, GELU]               a list whose children differ

and a value is 'tensor' (a tensor with a hook site), 'none' (None), a tuple [a, b, ...], 'pruned'
(a tensor the export pruned: nothing reads it), 'other' (a value torchsight cannot read), or null
(the module never ran in the exporter's example forward).
"""
from __future__ import annotations

import json
import re
from typing import Dict, List, Optional

_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
# names an interface cannot have, or should not shadow inside the file
_RESERVED = {
    "any", "unknown", "never", "void", "null", "undefined", "object", "string", "number", "boolean",
    "symbol", "bigint", "this", "true", "false", "Array", "ReadonlyArray", "Object", "Function",
    "String", "Number", "Boolean", "Symbol", "Promise", "Record", "Partial", "Readonly", "Iterator",
}


def _value(s) -> str:
    """A manifest Struct as a description value."""
    if s is None:
        return "null"
    kind = s.get("kind")
    if kind == "tensor":
        if s.get("pruned"):
            return "'pruned'"
        return "'tensor'" if s.get("site") else "'other'"
    if kind == "none":
        return "'none'"
    if kind == "tuple":
        return "[" + ", ".join(_value(i) for i in s.get("items", [])) + "]"
    return "'other'"


def _str(text: str) -> str:
    """A single-quoted TypeScript string literal."""
    return "'" + json.dumps(text)[1:-1].replace('\\"', '"').replace("'", "\\'") + "'"


def _key(name: str) -> str:
    return name if _IDENT.match(name) else _str(name)


def _ident(text: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_$]", "_", text) or "Module"
    if out[0].isdigit():
        out = "_" + out
    if out in _RESERVED:
        out += "Module"
    return out


class _Node:
    def __init__(self, entry: dict):
        self.entry = entry
        self.path: str = entry["path"]
        self.children: Dict[str, "_Node"] = {}
        self.iface: Optional[str] = None

    @property
    def is_list(self) -> bool:
        return bool(self.children) and list(self.children) == [str(i) for i in range(len(self.children))]


def _tree(manifest: dict) -> _Node:
    by_path: Dict[str, _Node] = {}
    root = None
    for e in manifest["modules"]:
        node = _Node(e)
        by_path[e["path"]] = node
        if e["path"] == "":
            root = node
        else:
            parent = by_path.get(e["path"].rsplit(".", 1)[0] if "." in e["path"] else "")
            if parent is None:
                raise ValueError(f"torchsight.json: module '{e['path']}' comes before its parent")
            parent.children[e["path"].rsplit(".", 1)[-1]] = node
    if root is None:
        raise ValueError("torchsight.json: no root module (path \"\")")
    return root


def _body(node: _Node, root: bool, output_names: List[str]) -> List[str]:
    """The description's members, children already named."""
    e = node.entry
    lines = [f"type: {_str(e['type'])};",
             "inputs: [" + ", ".join(_value(s) for s in e.get("inputs", [])) + "];",
             f"output: {_value(e.get('output'))};"]
    if root and output_names:
        lines.append("outputNames: [" + ", ".join(_str(n) for n in output_names) + "];")
    kids = list(node.children.values())
    if node.is_list:
        if len({k.entry["type"] for k in kids}) == 1:
            lines += [f"list: {kids[0].iface};", f"length: {len(kids)};"]
        else:
            lines.append("children: [" + ", ".join(k.iface for k in kids) + "];")
    elif kids:
        lines.append("children: {")
        lines += [f"  {_key(k)}: {c.iface};" for k, c in node.children.items()]
        lines.append("};")
    return lines


def dts_text(manifest: dict, name: Optional[str] = None) -> str:
    """The text of model.d.ts for ``manifest`` (a torchsight.json dict); the root interface is ``name``
    (default: the architecture)."""
    name = _ident(name or manifest.get("architecture") or "Model")
    root = _tree(manifest)
    output_names = list(manifest.get("outputNames") or [])
    by_sig: Dict[str, str] = {}
    used = {name}
    paths: Dict[str, List[str]] = {}
    bodies: Dict[str, List[str]] = {}
    types: Dict[str, str] = {}

    def visit(node: _Node) -> None:
        kids = list(node.children.values())
        if node.is_list and len({k.entry["type"] for k in kids}) == 1:
            visit(kids[0])  # the list is described by its first child
            for k in kids[1:]:
                k.iface = kids[0].iface
                paths[k.iface].append(k.path)
        else:
            for k in kids:
                visit(k)
        is_root = node.path == ""
        body = _body(node, is_root, output_names)
        if is_root:
            node.iface = name
        else:
            sig = "\n".join(body)
            if sig not in by_sig:
                base = _ident(node.entry["type"])
                iface, n = base, 1
                while iface in used:
                    n += 1
                    iface = f"{base}_{n}"
                used.add(iface)
                by_sig[sig] = iface
            node.iface = by_sig[sig]
        paths.setdefault(node.iface, []).append(node.path)
        bodies.setdefault(node.iface, body)
        types.setdefault(node.iface, node.entry["type"])

    visit(root)

    # interfaces in the order a reader meets them: the root first, then depth first
    order: List[str] = []

    def walk(node: _Node) -> None:
        if node.iface not in order:
            order.append(node.iface)
        kids = list(node.children.values())
        if node.is_list and len({k.entry["type"] for k in kids}) == 1:
            kids = kids[:1]
        for k in kids:
            walk(k)

    walk(root)
    arch = manifest.get("architecture") or name
    out = [
        f"// The module tree of {arch}, written by torchsight_export. Use it as",
        f"//   import type {{ {name} }} from './model.js';",
        f"//   const model = await LanguageModel.load<{name}>(dir);",
        "// so that trace callbacks get typed envoys (torchsight's EnvoyOf<T> reads these descriptions).",
        "// Values: 'tensor', 'none', [tuple], 'pruned' (unused by the model), 'other' (not readable),",
        "// null (the module never ran in the example forward).",
        "",
    ]
    for iface in order:
        where = paths[iface]
        shown = ", ".join(p or "the root" for p in where[:3]) + (", ..." if len(where) > 3 else "")
        doc = f"{types[iface]}, as at {shown}".replace("*/", "*\\/")
        out.append(f"/** {doc} */")
        out.append(f"export interface {iface} {{")
        out += ["  " + line for line in bodies[iface]]
        out.append("}")
        out.append("")
    return "\n".join(out)


def write_dts(manifest: dict, path: str, name: Optional[str] = None) -> str:
    """Writes ``path`` (model.d.ts) describing ``manifest``'s module tree; returns the root interface name."""
    text = dts_text(manifest, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return _ident(name or manifest.get("architecture") or "Model")
