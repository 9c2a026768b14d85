"""The "restricted" Pod Security Standard, as rules on a pod spec, for the rendered manifests.

The rules are those of the Kubernetes documentation's "Pod Security Standards" page (the
Baseline controls, which Restricted includes, then Restricted's own), at the version the
namespace pins (``pod-security.kubernetes.io/enforce-version``, v1.30). The admission
controller applies them to every pod the API server is asked to create: a Job's, a
StatefulSet's, a KEDA ScaledJob's pods, a bare Pod. ``violations`` lists, in words, every rule a
pod breaks; an empty list means the pod is admitted in a namespace that enforces the profile.

Windows pods (``spec.os.name: windows``) have their own exemptions in the standard; batchml runs
none, so they are not modelled: such a pod is reported as a violation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Obj = dict[str, Any]

#: capabilities Baseline lets a container add
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})  # fmt: skip
#: the only capability Restricted lets a container add
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
#: volume sources Restricted allows (every other one, hostPath and nfs included, is refused)
RESTRICTED_VOLUMES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
})  # fmt: skip
#: sysctls Baseline allows ("safe" sysctls, as of v1.29)
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
})  # fmt: skip
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
#: the fields a volume has besides its source
_VOLUME_FIELDS = frozenset({"name"})


def _containers(spec: Obj) -> Iterator[tuple[str, Obj]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            yield f"{field}[{container.get('name')}]", container


def _seccomp_ok(profile: Obj | None, *, required: bool) -> bool:
    if profile is None:
        return not required
    return profile.get("type") in ("RuntimeDefault", "Localhost")


def violations(pod: Obj) -> list[str]:
    """Every rule of the restricted profile that a pod template ``{"metadata", "spec"}`` breaks."""
    spec: Obj = pod.get("spec") or {}
    annotations: Obj = (pod.get("metadata") or {}).get("annotations") or {}
    found = _pod_baseline(spec, annotations) + _pod_restricted(spec)
    pod_sc: Obj = spec.get("securityContext") or {}
    for where, container in _containers(spec):
        found += _container_baseline(where, container)
        found += _container_restricted(where, container, pod_sc)
    return found


def _pod_baseline(spec: Obj, annotations: Obj) -> list[str]:
    pod_sc: Obj = spec.get("securityContext") or {}
    found: list[str] = []
    if (spec.get("os") or {}).get("name") == "windows":
        found.append("spec.os.name: windows pods are not modelled here")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("spec.securityContext.windowsOptions.hostProcess must be false")
    found += [
        f"spec.{field} must be false (host namespaces)"
        for field in ("hostNetwork", "hostPID", "hostIPC")
        if spec.get(field)
    ]
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - _VOLUME_FIELDS
        if "hostPath" in kinds:
            found.append(f"volume {volume.get('name')}: hostPath volumes are forbidden")
        elif not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume.get('name')}: {sorted(kinds)} is not an allowed type")
    found += [
        f"annotation {name}: AppArmor must not be {value!r}"
        for name, value in annotations.items()
        if name.startswith(APPARMOR_ANNOTATION)
        and not (value == "runtime/default" or value.startswith("localhost/"))
    ]
    if not _apparmor_ok(pod_sc):
        found.append("spec.securityContext.appArmorProfile must not be Unconfined")
    found += _selinux("spec.securityContext", pod_sc.get("seLinuxOptions"))
    found += [
        f"sysctl {sysctl.get('name')} is not a safe sysctl"
        for sysctl in pod_sc.get("sysctls") or []
        if sysctl.get("name") not in SAFE_SYSCTLS
    ]
    return found


def _pod_restricted(spec: Obj) -> list[str]:
    pod_sc: Obj = spec.get("securityContext") or {}
    found: list[str] = []
    if pod_sc.get("runAsNonRoot") is False:
        found.append("spec.securityContext.runAsNonRoot must not be false")
    if pod_sc.get("runAsUser") == 0:
        found.append("spec.securityContext.runAsUser must not be 0")
    if not _seccomp_ok(pod_sc.get("seccompProfile"), required=False):
        found.append("spec.securityContext.seccompProfile must be RuntimeDefault or Localhost")
    return found


def _container_baseline(where: str, container: Obj) -> list[str]:
    sc: Obj = container.get("securityContext") or {}
    found: list[str] = []
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append(f"{where}: windowsOptions.hostProcess must be false")
    if sc.get("privileged"):
        found.append(f"{where}: privileged must be false")
    found += [
        f"{where}: hostPort {port['hostPort']} is forbidden"
        for port in container.get("ports") or []
        if port.get("hostPort")
    ]
    if not _apparmor_ok(sc):
        found.append(f"{where}: appArmorProfile must not be Unconfined")
    found += _selinux(f"{where}.securityContext", sc.get("seLinuxOptions"))
    if sc.get("procMount") not in (None, "Default"):
        found.append(f"{where}: procMount must be Default")
    added = set((sc.get("capabilities") or {}).get("add") or [])
    if not added <= BASELINE_CAPABILITIES:
        found.append(f"{where}: adds capabilities {sorted(added - BASELINE_CAPABILITIES)}")
    return found


def _container_restricted(where: str, container: Obj, pod_sc: Obj) -> list[str]:
    sc: Obj = container.get("securityContext") or {}
    capabilities: Obj = sc.get("capabilities") or {}
    found: list[str] = []
    if sc.get("allowPrivilegeEscalation") is not False:
        found.append(f"{where}: allowPrivilegeEscalation must be false")
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
        found.append(f"{where}: runAsNonRoot must be true (here or in the pod)")
    if sc.get("runAsUser") == 0:
        found.append(f"{where}: runAsUser must not be 0")
    seccomp = sc.get("seccompProfile")
    if not _seccomp_ok(seccomp, required=False) or (
        seccomp is None and pod_sc.get("seccompProfile") is None
    ):
        found.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost")
    if "ALL" not in (capabilities.get("drop") or []):
        found.append(f"{where}: capabilities must drop ALL")
    added = set(capabilities.get("add") or [])
    if not added <= RESTRICTED_CAPABILITIES:
        found.append(f"{where}: may add only NET_BIND_SERVICE, adds {sorted(added)}")
    return found


def _apparmor_ok(security_context: Obj) -> bool:
    kind = (security_context.get("appArmorProfile") or {}).get("type")
    return kind in (None, "RuntimeDefault", "Localhost")


def _selinux(where: str, options: Obj | None) -> list[str]:
    if not options:
        return []
    found = []
    if options.get("type", "") not in SELINUX_TYPES:
        found.append(f"{where}.seLinuxOptions.type {options['type']!r} is not allowed")
    for field in ("user", "role"):
        if options.get(field):
            found.append(f"{where}.seLinuxOptions.{field} must not be set")
    return found
