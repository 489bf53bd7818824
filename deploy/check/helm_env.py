#!/usr/bin/env python3
"""Every environment variable the rendered Helm chart sets is a setting the binaries accept.

Usage: helm_env.py REPO RENDERED.yaml...   (output of `helm template`, one file per values set)

The settings a binary accepts are read from the sources it is built from, the way clap reads
them: each binary's argument struct (`ParserArgs`, `SenderArgs`, `ApiArgs`, `GatewayArgs`,
pushctl's `Cli` and the subcommand a container runs) with every `#[command(flatten)]` struct
and `#[command(subcommand)]` variant in it, collecting the `env = "KEY"` of each `#[arg]`;
plus the variables crates/config reads itself (`std::env::var("RUST_LOG")`,
`PUSHSERVICE_ENV_FILE`), which every binary goes through. This is the same source
`pushctl config check` trusts: it parses these structs from the environment. A variable must
also be documented in .env.example, the settings reference.

For every container of every Deployment, Job, StatefulSet, DaemonSet and CronJob rendered:
the binary it runs (`command`, else `args`, else the image's default: sender), then each
variable it gets:
- `env` entries, set for that container alone: the binary it runs must accept each;
- every key of the ConfigMaps and Secrets named by `envFrom` (those rendered by the chart;
  one that is not, such as credentials.existingSecret, is reported as not checked). These are
  shared by every daemon, as one .env file is (SENDER_GROUP reaches the parser too, which
  ignores it): some pushservice binary must accept each.
Fails naming the variable, the container and the values file when a variable is not accepted
or not documented, or when a value is empty (the daemons take an empty variable as given, and
some refuse it: "a value is required for --sender-extra-ca-file"; leaving it unset means the
default).
"""

import base64
import pathlib
import re
import sys

from ruamel.yaml import YAML

# Binary -> (crate directory, root argument struct). Checked against the binary's main.rs, so
# a renamed struct fails here instead of silently accepting nothing.
BINARIES = {
    "parser": ("parser", "ParserArgs"),
    "sender": ("sender", "SenderArgs"),
    "pushapi": ("pushapi", "ApiArgs"),
    "gateway": ("gateway", "GatewayArgs"),
    "pushctl": ("cli", "Cli"),
}
# deploy/Dockerfile: CMD ["sender"].
IMAGE_DEFAULT_COMMAND = ["sender"]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"}


# --- what the binaries accept ------------------------------------------------------------------


def strip_tests(text):
    """Source without its `#[cfg(test)] mod tests { ... }` (test-only structs reuse names like `Cli`)."""
    match = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)
    return text[: match.start()] if match else text


def block(text, start):
    """The text between the `{` at or after `start` and its matching `}`."""
    open_at = text.index("{", start)
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    raise ValueError("unbalanced braces")


def items(body):
    """Fields or variants of a struct/enum body: (attributes, item text) at depth 0."""
    out, attrs, i, n = [], [], 0, len(body)
    while i < n:
        c = body[i]
        if c.isspace() or c == ",":
            i += 1
        elif body.startswith("//", i):
            i = body.find("\n", i) + 1 or n
        elif body.startswith("#[", i):
            depth, j = 0, i + 1
            while j < n:
                if body[j] == "[":
                    depth += 1
                elif body[j] == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            attrs.append(body[i + 2 : j])
            i = j + 1
        else:
            depth, j = 0, i
            while j < n:
                if body[j] in "([{<":
                    depth += 1
                elif body[j] in ")]}>":
                    depth -= 1
                elif body[j] == "," and depth == 0:
                    break
                j += 1
            out.append((attrs, body[i:j].strip()))
            attrs, i = [], j + 1
    return out


class Sources:
    """Struct and enum definitions of every crate, by crate and by name."""

    def __init__(self, repo):
        self.types = {}  # name -> list of (crate, kind, body)
        for path in sorted((repo / "crates").glob("*/src/**/*.rs")):
            crate = path.relative_to(repo / "crates").parts[0]
            text = strip_tests(path.read_text())
            for match in re.finditer(r"\b(struct|enum)\s+(\w+)(?:<[^>{]*>)?\s*\{", text):
                kind, name = match.groups()
                self.types.setdefault(name, []).append((crate, kind, block(text, match.start())))

    def find(self, name, crate):
        """The definition of `name` (last path segment), preferring `crate`'s, or the crate the path names."""
        path = name.split("::")
        name = path[-1]
        found = self.types.get(name, [])
        if len(path) > 1 and path[0].startswith("pushservice_"):
            crate = path[0][len("pushservice_") :].replace("_", "-")
        own = [d for d in found if d[0] == crate]
        if own:
            return own[0]
        if len(found) == 1:
            return found[0]
        raise LookupError(f"type {name!r} not found unambiguously (used from crates/{crate})")

    def accepted(self, crate, name, subcommands, seen=None):
        """Environment keys of argument struct `name`, following flatten and the given subcommand path."""
        seen = set() if seen is None else seen
        if (crate, name) in seen:
            return set()
        seen.add((crate, name))
        crate, kind, body = self.find(name, crate)
        keys = set()
        if kind == "enum":
            # A subcommand enum: only the variant the container runs (every one when unknown).
            wanted = subcommands[0] if subcommands else None
            for attrs, item in items(body):
                variant = re.match(r"(\w+)\s*(\((.*)\)|\{(.*)\})?", item, re.S)
                vname = variant.group(1)
                explicit = next((m.group(1) for a in attrs for m in [re.search(r'name\s*=\s*"([^"]+)"', a)] if m), None)
                cli_name = explicit or re.sub(r"(?<!^)(?=[A-Z])", "-", vname).lower()
                if wanted is not None and cli_name != wanted:
                    continue
                if variant.group(3):
                    keys |= self.accepted(crate, variant.group(3).strip(), subcommands[1:], seen)
                elif variant.group(4):
                    keys |= self.fields(crate, variant.group(4), subcommands[1:], seen)
            return keys
        return self.fields(crate, body, subcommands, seen)

    def fields(self, crate, body, subcommands, seen):
        keys = set()
        for attrs, item in items(body):
            if ":" not in item:
                continue
            ftype = item.split(":", 1)[1].strip()
            ftype = re.sub(r"^Option<(.*)>$", r"\1", ftype)
            joined = " ".join(attrs)
            if re.search(r"\b(command|clap)\s*\(\s*flatten\s*\)", joined):
                keys |= self.accepted(crate, ftype, subcommands, seen)
            elif re.search(r"\b(command|clap)\s*\(\s*subcommand\s*\)", joined):
                keys |= self.accepted(crate, ftype, subcommands, seen)
            for attr in attrs:
                if re.match(r"\s*(arg|clap)\s*\(", attr):
                    keys |= set(re.findall(r'\benv\s*=\s*"([A-Z0-9_]+)"', attr))
        return keys


def read_directly(repo):
    """Variables crates/config reads itself (every binary loads settings and logging through it)."""
    keys = set()
    for path in (repo / "crates" / "config" / "src").glob("**/*.rs"):
        text = strip_tests(path.read_text())
        keys |= set(re.findall(r'env::var(?:_os)?\(\s*"([A-Z0-9_]+)"\s*\)', text))
    return keys


def documented(repo):
    """Keys .env.example sets (`KEY=`) and names in its comments (RUST_LOG, PUSHSERVICE_ENV_FILE)."""
    text = (repo / ".env.example").read_text()
    keys = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.M))
    words = set(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", text))
    return keys, words


# --- what the chart sets -----------------------------------------------------------------------


def pod_spec(doc):
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Pod":
        return spec
    if doc.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def data_keys(doc):
    """Keys and values of a ConfigMap or Secret (Secret data decoded)."""
    out = {}
    for key, value in (doc.get("data") or {}).items():
        if doc.get("kind") == "Secret":
            try:
                value = base64.b64decode(str(value)).decode()
            except Exception:
                pass
        out[str(key)] = "" if value is None else str(value)
    for key, value in (doc.get("stringData") or {}).items():
        out[str(key)] = "" if value is None else str(value)
    return out


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    repo = pathlib.Path(argv[0]).resolve()
    sources = Sources(repo)
    direct = read_directly(repo)
    doc_keys, doc_words = documented(repo)
    for binary, (crate, root) in BINARIES.items():
        main_rs = (repo / "crates" / crate / "src" / "main.rs").read_text()
        if not re.search(rf"\b{root}\b", main_rs):
            sys.exit(f"helm_env: crates/{crate}/src/main.rs no longer names {root}: update BINARIES in {__file__}")
    accepted_cache = {}

    def accepted(command):
        binary = pathlib.PurePosixPath(command[0]).name
        if binary not in BINARIES:
            return binary, None
        subcommands = [a for a in command[1:] if not a.startswith("-")][:2] if binary == "pushctl" else []
        key = (binary, tuple(subcommands))
        if key not in accepted_cache:
            crate, root = BINARIES[binary]
            accepted_cache[key] = sources.accepted(crate, root, subcommands) | direct
        label = " ".join([binary, *subcommands])
        return label, accepted_cache[key]

    # What a shared source may hold: a setting of any binary (pushctl with all its commands).
    any_binary = set().union(*(accepted([binary])[1] for binary in BINARIES))
    yaml = YAML(typ="safe")
    problems, notes, checked = [], [], 0
    for rendered in argv[1:]:
        docs = [d for d in yaml.load_all(pathlib.Path(rendered).read_text()) if isinstance(d, dict)]
        sources_by_name = {(d.get("kind"), (d.get("metadata") or {}).get("name")): d
                           for d in docs if d.get("kind") in ("ConfigMap", "Secret")}
        for doc in docs:
            if doc.get("kind") not in WORKLOADS:
                continue
            spec = pod_spec(doc)
            for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
                where = f"{rendered}: {doc['kind']} {doc['metadata']['name']}, container {container.get('name')}"
                command = list(container.get("command") or []) + list(container.get("args") or []) \
                    if container.get("command") else list(container.get("args") or IMAGE_DEFAULT_COMMAND)
                label, keys = accepted(command)
                if keys is None:
                    problems.append(f"{where}: runs {label!r}, not one of the binaries ({', '.join(BINARIES)})")
                    continue
                variables = []  # (name, value or None when from a reference, origin, shared)
                for entry in container.get("env") or []:
                    value = entry.get("value")
                    variables.append((entry["name"], None if "valueFrom" in entry else ("" if value is None else str(value)), "env", False))
                for source in container.get("envFrom") or []:
                    prefix = source.get("prefix", "")
                    for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                        if ref not in source:
                            continue
                        name = source[ref]["name"]
                        target = sources_by_name.get((kind, name))
                        if target is None:
                            notes.append(f"{where}: envFrom {kind} {name} is not part of the chart; its keys are not checked")
                            continue
                        for key, value in data_keys(target).items():
                            variables.append((prefix + key, value, f"envFrom {kind} {name}", True))
                for name, value, origin, shared in variables:
                    checked += 1
                    # A shared source's problem is said once per rendering, not per container.
                    at = f"{rendered}: {origin}" if shared else where
                    if shared and name not in any_binary:
                        problems.append(f"{at}: {name} is not a setting any of {', '.join(BINARIES)} accepts")
                    elif not shared and name not in keys:
                        problems.append(f"{at}: {name} ({origin}) is not a setting `{label}` accepts")
                    elif name not in doc_keys and name not in doc_words:
                        problems.append(f"{at}: {name} is not documented in .env.example")
                    if value == "":
                        problems.append(f"{at}: {name} is set to an empty value; leave it unset for the default")
    for note in sorted(set(notes)):
        print(f"helm_env: note: {note}", file=sys.stderr)
    problems = list(dict.fromkeys(problems))
    for problem in problems:
        print(f"helm_env: FAILED: {problem}", file=sys.stderr)
    binaries = ", ".join(f"{' '.join(k[0:1] + k[1])} {len(v)}" for k, v in sorted(accepted_cache.items()))
    print(f"helm_env: {checked} variables in {len(argv) - 1} renderings checked against the settings "
          f"each binary accepts ({binaries}) and .env.example: {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
