"""Regenerate this folder's schema extracts from the projects' published CRDs (needs git clones;
the tests never run this and never touch the network).

    python tests/data/crd-schemas/extract.py KUEUE_CLONE GMP_CLONE OPERATOR_CLONE

Each extract is the ``openAPIV3Schema`` of one CRD version, as the project ships it at the tag
named in PROJECTS, minus its ``description`` texts (the bulk of the files; no rule lives there).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent

KUEUE = ("kubernetes-sigs/kueue", "v0.19.2", "config/components/crd/bases/kueue.x-k8s.io_")
GMP = ("GoogleCloudPlatform/prometheus-engine", "v0.17.2", "charts/operator/crds/")
OPERATOR_CRDS = "example/prometheus-operator-crd/"
OPERATOR = ("prometheus-operator/prometheus-operator", "v0.93.0", OPERATOR_CRDS)
PROJECTS = (KUEUE, GMP, OPERATOR)
BOTH = ("v1beta1", "v1beta2")
#: output file -> (index in PROJECTS, CRD file under the project's folder, versions kept)
SOURCES: dict[str, tuple[int, str, tuple[str, ...]]] = {
    "kueue-localqueue.json": (0, "localqueues.yaml", BOTH),
    "kueue-clusterqueue.json": (0, "clusterqueues.yaml", BOTH),
    "kueue-resourceflavor.json": (0, "resourceflavors.yaml", BOTH),
    "gmp-podmonitoring.json": (1, "monitoring.googleapis.com_podmonitorings.yaml", ("v1",)),
    "gmp-rules.json": (1, "monitoring.googleapis.com_rules.yaml", ("v1",)),
    "operator-podmonitor.json": (2, "monitoring.coreos.com_podmonitors.yaml", ("v1",)),
    "operator-prometheusrule.json": (2, "monitoring.coreos.com_prometheusrules.yaml", ("v1",)),
}


def git(clone: str, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", clone, *args], check=True, capture_output=True, text=True
    ).stdout


def strip_descriptions(schema: Any) -> Any:
    """The schema without its ``description`` keywords (a *property* named description stays)."""
    if isinstance(schema, list):
        return [strip_descriptions(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description" and isinstance(value, str):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: strip_descriptions(sub) for name, sub in value.items()}
        else:
            out[key] = strip_descriptions(value)
    return out


def main(clones: list[str]) -> None:
    for output, (project, name, versions) in SOURCES.items():
        repo, tag, folder = PROJECTS[project]
        path = folder + name
        crd = yaml.safe_load(git(clones[project], "show", f"{tag}:{path}"))
        commit = git(clones[project], "rev-list", "-n1", tag).strip()
        extract = {
            "source": f"https://github.com/{repo}/blob/{tag}/{path}",
            "tag": tag,
            "commit": commit,
            "group": crd["spec"]["group"],
            "kind": crd["spec"]["names"]["kind"],
            "scope": crd["spec"]["scope"],
            "versions": {
                v["name"]: strip_descriptions(v["schema"]["openAPIV3Schema"])
                for v in crd["spec"]["versions"]
                if v["name"] in versions
            },
        }
        assert set(extract["versions"]) == set(versions), (output, list(extract["versions"]))
        text = json.dumps(extract, separators=(",", ":"), sort_keys=True)
        (HERE / output).write_text(text + "\n")
        print(output, tag, commit[:12], (HERE / output).stat().st_size, "bytes")


if __name__ == "__main__":
    main(sys.argv[1:4])
