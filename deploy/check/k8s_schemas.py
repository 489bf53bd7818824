#!/usr/bin/env python3
"""JSON schemas for kubeconform, made offline (scripts/deploy-check helm).

kubeconform downloads its schemas from GitHub, which this project cannot reach. This builds
the same kinds of files from packages the registries serve:

  kubernetes  The Kubernetes API's schemas as the PyPI package kubernetes-validate vendors
              them (generated from each release's OpenAPI document, one file per kind, the
              `-local-strict` variant: additionalProperties false, as kubeconform's
              `-strict` schemas). Its files refer to one shared `_definitions.json` by the
              absolute path `/api/_definitions.json` under an `https://kubernetes.io` `$id`,
              which a validator would try to fetch; they are rewritten to refer to the
              `_definitions.json` beside them, so kubeconform loads it from disk.
              Output: DIR/v<version>/<kind>-<group>-<version>.json, the names kubeconform's
              `{{.ResourceKind}}{{.KindSuffix}}` template asks for.
  crds        CustomResourceDefinitions (KEDA's, the Prometheus Operator's) converted with
              kubeconform's own scripts/openapi2jsonschema.py (from the kubeconform module
              the check builds), root additional properties denied too.
              Output: DIR/<kind>-<group>-<version>.json.

Usage:
  k8s_schemas.py kubernetes WHEEL OUT_DIR VERSION...
  k8s_schemas.py crds CONVERTER OUT_DIR CRD_YAML...
"""

import json
import os
import pathlib
import subprocess
import sys
import zipfile

PREFIX = "kubernetes_validate/kubernetes-json-schema/"
ABSOLUTE_DEFINITIONS = "/api/_definitions.json"


def relocate(node, target):
    """`node` with every `$id` dropped and `$ref`s to the shared definitions pointed at `target`."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$id":
                continue
            if key == "$ref" and isinstance(value, str) and value.startswith(ABSOLUTE_DEFINITIONS):
                value = target + value[len(ABSOLUTE_DEFINITIONS):]
            out[key] = relocate(value, target)
        return out
    if isinstance(node, list):
        return [relocate(item, target) for item in node]
    return node


def kubernetes(wheel, out, versions):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        for version in versions:
            source = f"{PREFIX}v{version}-local-strict/"
            members = [n for n in names if n.startswith(source) and n.endswith(".json")]
            if not members:
                available = sorted({n[len(PREFIX):].split("/")[0] for n in names if n.startswith(PREFIX)})
                sys.exit(f"k8s_schemas: {wheel} has no schemas for Kubernetes {version} "
                         f"(it has: {', '.join(available)})")
            target = out / f"v{version}"
            target.mkdir(parents=True, exist_ok=True)
            for member in members:
                name = member[len(source):]
                if "/" in name or name == "all.json":
                    continue
                schema = json.loads(archive.read(member))
                # "/api/_definitions.json#/$defs/X" becomes "#/$defs/X" inside the definitions
                # file, "_definitions.json#/$defs/X" (the file beside it) everywhere else.
                schema = relocate(schema, "" if name == "_definitions.json" else "_definitions.json")
                (target / name).write_text(json.dumps(schema))
            print(f"k8s_schemas: Kubernetes {version}: {len(members)} schemas in {target}", file=sys.stderr)


def crds(converter, out, files):
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, FILENAME_FORMAT="{kind}-{group}-{version}", DENY_ROOT_ADDITIONAL_PROPERTIES="1")
    result = subprocess.run([sys.executable, str(converter), *[str(pathlib.Path(f).resolve()) for f in files]],
                            cwd=out, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"k8s_schemas: {converter} failed:\n{result.stdout}{result.stderr}")
    written = [line for line in result.stdout.splitlines() if line.startswith("JSON schema written")]
    print(f"k8s_schemas: {len(written)} CRD schemas in {out}", file=sys.stderr)


def main(argv):
    if len(argv) < 4 or argv[0] not in ("kubernetes", "crds"):
        sys.exit(__doc__)
    if argv[0] == "kubernetes":
        kubernetes(pathlib.Path(argv[1]), pathlib.Path(argv[2]), argv[3:])
    else:
        crds(pathlib.Path(argv[1]), pathlib.Path(argv[2]), argv[3:])


if __name__ == "__main__":
    main(sys.argv[1:])
