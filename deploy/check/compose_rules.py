#!/usr/bin/env python3
"""What docker-compose.yml, deploy/Dockerfile and .dockerignore must say, beyond the schema.

The Compose-spec JSON schema (checked before this by check-jsonschema) says whether the file
is well formed; it cannot say that a `depends_on` names a real service, that a bind-mounted
file exists, that `--scale sender=N` works or that a health check asks the port the daemon
listens on. This does, on the file as Compose reads it (YAML anchors and `<<` merges
resolved). deploy/Dockerfile is read with the `dockerfile` package (BuildKit's own Go parser):
a multi-stage build, a non-root runtime, every workspace member and every file the sources
include_str! copied into the build, the binaries built equal to those installed and to those
the services run. Fails naming every problem.

Usage: compose_rules.py [REPO_DIR]
"""

import pathlib
import re
import sys
import tomllib

import dockerfile
from ruamel.yaml import YAML

DAEMONS = ("parser", "sender", "pushapi")
PUSHSERVICE_SERVICES = ("setup",) + DAEMONS
MONITORING = ("prometheus", "grafana")
REQUIRED = ("mongo", "kafka") + PUSHSERVICE_SERVICES + MONITORING
DOCKERIGNORE_REQUIRED = (".git", ".cache", "target", ".env", "**/node_modules")

problems = []


def problem(text):
    problems.append(text)


def env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def healthcheck_port(service):
    test = (service.get("healthcheck") or {}).get("test")
    text = " ".join(test) if isinstance(test, list) else str(test or "")
    match = re.search(r"/dev/tcp/127\.0\.0\.1/(\d+)", text)
    return match.group(1) if match else None


def check_compose(repo, compose):
    services = compose.get("services") or {}
    for name in REQUIRED:
        if name not in services:
            problem(f"docker-compose.yml: service {name} is missing")
    declared_volumes = set((compose.get("volumes") or {}).keys())

    for name, service in services.items():
        for dep in service.get("depends_on") or {}:
            if dep not in services:
                problem(f"docker-compose.yml: {name} depends on {dep}, which is not a service")
        for volume in service.get("volumes") or []:
            spec = volume if isinstance(volume, str) else f"{volume.get('source', '')}:{volume.get('target', '')}"
            source = spec.split(":", 1)[0]
            if source.startswith((".", "/")):
                # .env is the user's file (cp .env.example .env), not part of the checkout.
                if source != "./.env" and not (repo / source).exists():
                    problem(f"docker-compose.yml: {name} mounts {source}, which does not exist")
            elif source and source not in declared_volumes:
                problem(f"docker-compose.yml: {name} uses volume {source}, not declared under volumes:")
        build = service.get("build")
        if isinstance(build, dict):
            dockerfile = repo / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problem(f"docker-compose.yml: {name} builds from {dockerfile.relative_to(repo)}, which does not exist")
        if name in MONITORING:
            if "monitoring" not in (service.get("profiles") or []):
                problem(f"docker-compose.yml: {name} belongs in the monitoring profile")
        elif service.get("profiles"):
            problem(f"docker-compose.yml: {name} must start without a profile")
        if "healthcheck" not in service and name != "setup":
            problem(f"docker-compose.yml: {name} has no health check")

    kafka = services.get("kafka") or {}
    if not str(kafka.get("image", "")).startswith("apache/kafka:"):
        problem("docker-compose.yml: kafka must run an official apache/kafka image")
    if "controller" not in env_of(kafka).get("KAFKA_PROCESS_ROLES", ""):
        problem("docker-compose.yml: kafka must run in KRaft mode (KAFKA_PROCESS_ROLES with controller)")

    setup = services.get("setup") or {}
    if setup.get("command") != ["pushctl", "setup"]:
        problem("docker-compose.yml: setup must run `pushctl setup`")
    if str(setup.get("restart", "no")) != "no":
        problem("docker-compose.yml: setup is one-shot: restart must be \"no\"")
    for dep in ("kafka", "mongo"):
        condition = ((setup.get("depends_on") or {}).get(dep) or {}).get("condition")
        if condition != "service_healthy":
            problem(f"docker-compose.yml: setup must wait for {dep} to be healthy (got {condition})")

    for name in DAEMONS:
        service = services.get(name) or {}
        condition = ((service.get("depends_on") or {}).get("setup") or {}).get("condition")
        if condition != "service_completed_successfully":
            problem(f"docker-compose.yml: {name} must start after setup completed successfully")
        # .env is mounted where the daemon reads it itself (its loader skips `KEY=` left
        # empty; env_file would pass them on as empty variables the daemons refuse).
        mounts = [v for v in service.get("volumes") or [] if isinstance(v, dict)]
        if not any(v.get("source") == "./.env" and v.get("target") == "/app/.env" and v.get("read_only") for v in mounts):
            problem(f"docker-compose.yml: {name} must mount ./.env read-only at /app/.env (its settings)")
        if service.get("env_file"):
            problem(f"docker-compose.yml: {name} must not use env_file: empty `KEY=` lines would reach the daemon as empty values")
        env = env_of(service)
        listen = env.get("API_LISTEN" if name == "pushapi" else "METRICS_ADDR", "")
        port = listen.rsplit(":", 1)[-1] if ":" in listen else None
        if not port:
            problem(f"docker-compose.yml: {name} sets no {'API_LISTEN' if name == 'pushapi' else 'METRICS_ADDR'}")
        elif healthcheck_port(service) != port:
            problem(f"docker-compose.yml: {name}'s health check asks port {healthcheck_port(service)}, the daemon listens on {port}")
        if not listen.startswith("0.0.0.0:"):
            problem(f"docker-compose.yml: {name} must listen on 0.0.0.0 to be reached from other containers (got {listen!r})")

    sender = services.get("sender") or {}
    for key in ("container_name", "ports", "hostname"):
        if key in sender:
            problem(f"docker-compose.yml: sender must not set {key}: `--scale sender=N` needs replicas that differ")
    return services


def check_dockerfile(repo, services):
    try:
        instructions = dockerfile.parse_file(str(repo / "deploy/Dockerfile"))
    except dockerfile.GoParseError as e:
        problem(f"deploy/Dockerfile does not parse: {e}")
        return
    stages = [i.value[0] for i in instructions if i.cmd == "FROM"]
    if len(stages) < 2:
        problem("deploy/Dockerfile: expected a multi-stage build (a builder and a runtime stage)")
    elif "slim" not in stages[-1] and "distroless" not in stages[-1]:
        problem(f"deploy/Dockerfile: the runtime stage should be a small image (got {stages[-1]})")
    users = [i.value[0] for i in instructions if i.cmd == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problem("deploy/Dockerfile: the runtime stage must run as a non-root USER")

    # What the build stage copies from the context must exist and hold every workspace member
    # and every file the sources include_str!, or the image build breaks on a fresh checkout.
    copied = []
    for i in instructions:
        if i.cmd == "COPY" and not any(f.startswith("--from") for f in i.flags):
            for source in i.value[:-1]:
                copied.append(source.rstrip("/"))
                if not (repo / source).exists():
                    problem(f"deploy/Dockerfile copies {source}, which is not in the repository")
    def is_copied(path):
        rel = path.relative_to(repo).as_posix()
        return any(rel == c or rel.startswith(c + "/") for c in copied)
    members = tomllib.loads((repo / "Cargo.toml").read_text())["workspace"]["members"]
    for member in members:
        for path in repo.glob(member):
            if (path / "Cargo.toml").is_file() and not is_copied(path):
                problem(f"deploy/Dockerfile does not copy workspace member {path.relative_to(repo)}")
    for source in repo.glob("crates/*/src/**/*.rs"):
        for included in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', source.read_text(encoding="utf-8")):
            target = (source.parent / included).resolve()
            if target.is_relative_to(repo) and not is_copied(target):
                problem(f"deploy/Dockerfile does not copy {target.relative_to(repo)}, which {source.relative_to(repo)} includes")

    build = " ".join(" ".join(i.value) for i in instructions if i.cmd == "RUN")
    built = set(re.findall(r"--bin ([\w-]+)", build))
    installed = set(re.findall(r"target/release/([\w-]+)", build))
    if built != installed:
        problem(f"deploy/Dockerfile builds {sorted(built)} but copies {sorted(installed)} into the image")
    for name, service in services.items():
        if service.get("image") == "pushservice":
            binary = (service.get("command") or ["sender"])[0]
            if binary not in installed:
                problem(f"deploy/Dockerfile: {name} runs {binary}, which the image does not contain")

    ignore_path = repo / ".dockerignore"
    if not ignore_path.is_file():
        problem(".dockerignore is missing: the whole checkout (target/, .env) would go into the build")
        return
    ignored = {line.strip() for line in ignore_path.read_text().splitlines()}
    for pattern in DOCKERIGNORE_REQUIRED:
        if pattern not in ignored:
            problem(f".dockerignore must exclude {pattern}")
    for source in copied:
        if source.split("/")[0] in ignored:
            problem(f".dockerignore excludes {source}, which deploy/Dockerfile copies")


def main():
    repo = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    compose = YAML(typ="safe").load((repo / "docker-compose.yml").read_text())
    services = check_compose(repo, compose)
    check_dockerfile(repo, services)
    for text in problems:
        print(f"compose check: {text}", file=sys.stderr)
    if problems:
        return 1
    print(f"compose check: {len(services)} services, references, health checks, scaling and the image's binaries consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
