"""Offline schema validation of rendered objects: Kubernetes' own kinds and KEDA's two.

Kubernetes kinds are checked with the schemas the ``kubernetes-validate`` package bundles, in
strict mode (an unknown field is an error, so a typo cannot pass). KEDA's CRDs are not among
them; their fields we use are described below after KEDA's CRDs (keda.sh/v1alpha1, ScaledJob
and TriggerAuthentication), closed to unknown fields, and a ScaledJob's ``jobTargetRef`` (a
batch/v1 JobSpec) is checked as the spec of a Job with Kubernetes' own schema.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate

#: the Kubernetes version whose schemas the manifests must satisfy (GKE's regular channel)
KUBERNETES_VERSION = "1.34"

_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name"],
    "additionalProperties": False,
}

_INT = {"type": "integer"}

SCALED_JOB: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledJob"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "properties": {
                "jobTargetRef": {"type": "object"},  # a JobSpec: checked separately
                "envSourceContainerName": {"type": "string"},
                "pollingInterval": _INT,
                "minReplicaCount": _INT,
                "maxReplicaCount": _INT,
                "successfulJobsHistoryLimit": _INT,
                "failedJobsHistoryLimit": _INT,
                "rollout": {
                    "type": "object",
                    "properties": {
                        "strategy": {"enum": ["default", "gradual"]},
                        "propagationPolicy": {"enum": ["background", "foreground"]},
                    },
                    "additionalProperties": False,
                },
                "scalingStrategy": {
                    "type": "object",
                    "properties": {
                        "strategy": {"enum": ["default", "custom", "accurate", "eager"]},
                        "customScalingQueueLengthDeduction": _INT,
                        "customScalingRunningJobPercentage": {"type": "string"},
                        "pendingPodConditions": {"type": "array", "items": {"type": "string"}},
                        "multipleScalersCalculation": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {
                                        "enum": [
                                            "TriggerAuthentication",
                                            "ClusterTriggerAuthentication",
                                        ]
                                    },
                                },
                                "required": ["name"],
                                "additionalProperties": False,
                            },
                            "metricType": {"enum": ["Value", "AverageValue", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                        },
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["jobTargetRef", "triggers"],
            "additionalProperties": False,
        },
    },
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
}

TRIGGER_AUTHENTICATION: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "parameter": {"type": "string"},
                            "name": {"type": "string"},
                            "key": {"type": "string"},
                        },
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                    },
                }
            },
            "additionalProperties": False,
        },
    },
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
}

_KEDA = {"ScaledJob": SCALED_JOB, "TriggerAuthentication": TRIGGER_AUTHENTICATION}


def validate(obj: dict[str, Any]) -> None:
    """Raise (jsonschema.ValidationError or kubernetes_validate's errors) if ``obj`` is invalid."""
    kind = obj["kind"]
    if obj["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(obj, _KEDA[kind])
        if kind == "ScaledJob":
            job = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": obj["metadata"]["name"]},
                "spec": obj["spec"]["jobTargetRef"],
            }
            kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
        return
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
