"""Writes the Kubernetes JSON schemas of kubernetes-validate in a form
kubeconform reads offline: each schema with the shared definitions it uses
put into its own $defs, and its $refs pointing there. Strict schemas (no
unknown fields) of one Kubernetes release.

    python deploy/tools/inline-schemas.py VENV OUT_DIR [RELEASE]
"""
import copy
import glob
import json
import os
import sys

venv, out = sys.argv[1], sys.argv[2]
release = sys.argv[3] if len(sys.argv) > 3 else "v1.35.0"
src = glob.glob(os.path.join(venv, "lib", "python*", "site-packages", "kubernetes_validate",
                             "kubernetes-json-schema", release + "-local-strict"))[0]
PREFIX = "/api/_definitions.json#/$defs/"  # in a kind's schema
LOCAL = "#/$defs/"  # within the definitions
with open(os.path.join(src, "_definitions.json")) as f:
    definitions = json.load(f)["$defs"]


def refs(node, found):
    """Adds the names of the definitions node refers to, rewriting each
    reference to point into the document itself."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith((PREFIX, LOCAL)):
            name = ref.split("/")[-1]
            node["$ref"] = LOCAL + name
            if name not in found:
                found[name] = copy.deepcopy(definitions[name])
                refs(found[name], found)
        for v in node.values():
            refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


os.makedirs(out, exist_ok=True)
for path in sorted(glob.glob(os.path.join(src, "*.json"))):
    name = os.path.basename(path)
    if name.startswith("_"):
        continue
    with open(path) as f:
        schema = json.load(f)
    found = {}
    refs(schema, found)
    if found:
        schema["$defs"] = found
    with open(os.path.join(out, name), "w") as f:
        json.dump(schema, f, separators=(",", ":"))
