"""Offline checks of the deployment kit, run by tests/deploy_kit.rs with the test venv's Python.

    python deploy/check.py parse      every YAML and JSON file parses; collector pipelines name
                                      only components they define
    python deploy/check.py env        the environment of each container, as JSON on stdout
    python deploy/check.py dashboard  the metric names the dashboard's queries select, as JSON

Schema validation is `kubernetes-validate`, run by the test itself.
"""

import json
import pathlib
import re
import sys

import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent


def yaml_files():
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def json_files():
    return sorted(DEPLOY.rglob("*.json"))


def documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def collector_configs():
    """Every OpenTelemetry Collector configuration in the kit: the compose file's and the one
    embedded in the DaemonSet's ConfigMap."""
    yield DEPLOY / "compose" / "otel-collector.yaml", documents(DEPLOY / "compose" / "otel-collector.yaml")[0]
    for doc in documents(DEPLOY / "kubernetes" / "otel-collector-daemonset.yaml"):
        if doc.get("kind") == "ConfigMap":
            yield "ConfigMap otel-collector", yaml.safe_load(doc["data"]["config.yaml"])


def check_collector(name, config):
    problems = []
    service = config.get("service", {})
    for pipeline, spec in service.get("pipelines", {}).items():
        for section in ("receivers", "processors", "exporters"):
            defined = config.get(section) or {}
            for component in spec.get(section, []):
                if component not in defined:
                    problems.append(f"{name}: pipeline {pipeline} names {section[:-1]} {component}, which is not defined")
        if not spec.get("receivers") or not spec.get("exporters"):
            problems.append(f"{name}: pipeline {pipeline} needs a receiver and an exporter")
    for extension in service.get("extensions", []):
        if extension not in (config.get("extensions") or {}):
            problems.append(f"{name}: extension {extension} is not defined")
    return problems


def parse():
    problems = []
    for path in yaml_files():
        try:
            documents(path)
        except yaml.YAMLError as e:
            problems.append(f"{path}: {e}")
    for path in json_files():
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            problems.append(f"{path}: {e}")
    for name, config in collector_configs():
        problems.extend(check_collector(name, config))
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(yaml_files())} YAML and {len(json_files())} JSON files parsed")
    return 1 if problems else 0


def kubernetes_containers():
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in documents(path):
            spec = (doc.get("spec") or {}).get("template", {}).get("spec")
            if not spec:
                continue
            for container in spec.get("containers", []):
                yield {
                    "file": str(path.relative_to(DEPLOY)),
                    "workload": doc["metadata"]["name"],
                    "container": container["name"],
                    "env": [
                        {
                            "name": e["name"],
                            "value": e.get("value"),
                            "field_ref": (e.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath"),
                        }
                        for e in container.get("env", [])
                    ],
                }


def ecs_containers():
    for path in sorted((DEPLOY / "ecs").glob("*.json")):
        task = json.loads(path.read_text(encoding="utf-8"))
        for container in task["containerDefinitions"]:
            yield {
                "file": str(path.relative_to(DEPLOY)),
                "workload": task["family"],
                "container": container["name"],
                "stop_timeout": container.get("stopTimeout"),
                "env": [{"name": e["name"], "value": e["value"], "field_ref": None} for e in container.get("environment", [])],
            }


def env():
    print(json.dumps(list(kubernetes_containers()) + list(ecs_containers()), indent=1))
    return 0


# A metric selector in PromQL: a name followed by `{` or `[`. The dashboard writes every
# selector with `{}` so that each one is found.
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]")


def dashboard():
    names = set()
    for path in sorted((DEPLOY / "compose" / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
            for target in panel.get("targets", []):
                names.update(SELECTOR.findall(target["expr"]))
    print(json.dumps(sorted(names)))
    return 0


if __name__ == "__main__":
    commands = {"parse": parse, "env": env, "dashboard": dashboard}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(commands[sys.argv[1]]())
