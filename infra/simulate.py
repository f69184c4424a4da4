"""Run the program under Pulumi mocks and return everything it registers.

Used by the unit and policy tests, the benchmarks and `python -m infra.simulate` (which writes the
Kubernetes objects a stack declares as YAML, with no engine and no cluster). Mocks do not apply
`Pulumi.yaml` config defaults; our defaults live in the settings models, so none are lost.
"""
from __future__ import annotations

import argparse
import base64
import copy
import json
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pulumi
import yaml
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "infra" / "__main__.py"
DELETE = object()  # an override value that removes the key


@dataclass
class Registered:
    """One resource as the program registered it: type, name and inputs (wire names)."""

    type: str
    name: str
    urn: str
    inputs: dict
    custom: bool
    parent: str
    provider: str
    protect: bool
    dependencies: list[str]
    ignore_changes: list[str] = field(default_factory=list)
    delete_before_replace: bool = False

    @property
    def is_kubernetes_object(self) -> bool:
        return self.custom and self.type.startswith("kubernetes:") and self.type.count(":") == 2 and "helm.sh" not in self.type

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[1]

    def manifest(self) -> dict:
        """The Kubernetes object this resource declares, as `kubectl apply` would take it."""
        _, group_version, kind = self.type.split(":")
        group_version = group_version.removeprefix("core/")
        doc = {"apiVersion": group_version, "kind": kind}
        doc.update({k: v for k, v in self.inputs.items() if k not in ("apiVersion", "kind")})
        return doc


@dataclass
class Simulation:
    stack: str
    resources: list[Registered] = field(default_factory=list)

    def of_type(self, kind_or_type: str) -> list[Registered]:
        return [r for r in self.resources if r.type == kind_or_type or (r.custom and r.kind == kind_or_type)]

    def one(self, kind_or_type: str, name: str) -> Registered:
        found = [r for r in self.of_type(kind_or_type) if (r.inputs.get("metadata") or {}).get("name") == name or r.name == name]
        assert len(found) == 1, f"expected one {kind_or_type} {name!r}, found {[r.name for r in found]}"
        return found[0]

    def manifests(self) -> list[dict]:
        return [r.manifest() for r in self.resources if r.is_kubernetes_object]


class ProgramFailed(pulumi.RunError):
    """The program raised; `registered` is what it had registered by then (nothing, for bad config)."""

    def __init__(self, message: str, registered: list[Registered]):
        super().__init__(message)
        self.registered = registered


# A kubeconfig as AKS's listClusterUserCredential returns it (Entra ID exec format: no secret).
_AKS_USER_KUBECONFIG = base64.b64encode(
    b"apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: TU9DSy1DQQ==\n"
    b"    server: https://clipper-mock.hcp.westeurope.azmk8s.io:443\n  name: mock\n"
).decode()
# Load-balancer address the ingress Service reports (TEST-NET-3, never routed).
MOCK_INGRESS_IP = "203.0.113.10"


class _Mocks(pulumi.runtime.Mocks):
    """Resources echo their inputs, plus the outputs clouds compute (endpoints, ARNs, client ids);
    cloud functions answer from `calls`, else with fixed fakes."""

    def __init__(self, calls: Optional[Callable[[pulumi.runtime.MockCallArgs], dict]] = None):
        self._calls = calls

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = self._over(self._computed_outputs(args), dict(args.inputs))
        if args.typ == "azure-native:containerservice:ManagedCluster" and "identity" in state:
            # Azure takes user-assigned identities as a list of ids and returns them as a map by id.
            identity = dict(state["identity"])
            identity["userAssignedIdentities"] = {i: {} for i in identity.get("userAssignedIdentities") or []}
            state["identity"] = identity
        return args.resource_id or f"{args.name}-id", state

    @classmethod
    def _over(cls, computed: dict, inputs: dict) -> dict:
        """Inputs win, but nested computed outputs (e.g. a vault's properties.vaultUri) survive."""
        merged = dict(computed)
        for key, value in inputs.items():
            both_dicts = isinstance(value, dict) and isinstance(merged.get(key), dict)
            merged[key] = cls._over(merged[key], value) if both_dicts else value
        return merged

    @staticmethod
    def _computed_outputs(args: pulumi.runtime.MockResourceArgs) -> dict:
        name, inputs = args.name, args.inputs
        if args.typ == "kubernetes:core/v1:Service" and args.resource_id:  # Service.get of the ingress controller
            return {"status": {"loadBalancer": {"ingress": [{"ip": MOCK_INGRESS_IP}]}}}
        if args.typ == "gcp:container/cluster:Cluster":
            return {
                "endpoint": "203.0.113.1",
                "masterAuth": {"clusterCaCertificate": "TU9DSy1DQQ=="},
                "controlPlaneEndpointsConfig": {"dnsEndpointConfig": {"endpoint": "gke-mock0123.europe-west4.gke.goog"}},
            }
        if args.typ == "gcp:serviceaccount/account:Account":
            email = f"{inputs.get('accountId', name)}@mock-project.iam.gserviceaccount.com"
            return {"email": email, "name": f"projects/mock-project/serviceAccounts/{email}"}
        if args.typ == "aws:eks/cluster:Cluster":
            return {
                "arn": f"arn:aws:eks:mock:123456789012:cluster/{inputs.get('name', name)}",
                "endpoint": "https://MOCK.gr7.mock.eks.amazonaws.com",
                "certificateAuthority": {"data": "TU9DSy1DQQ=="},
                "vpcConfig": {"clusterSecurityGroupId": "sg-0mockcluster"},
                "identities": [{"oidcs": [{"issuer": "https://oidc.eks.mock.amazonaws.com/id/MOCK0123456789"}]}],
            }
        if args.typ in ("aws:iam/role:Role", "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "aws:kms/key:Key"):
            kind = args.typ.rsplit(":", 1)[1].lower()
            return {"arn": f"arn:aws:{kind}::123456789012:{name}", "name": name}
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            return {"latestVersion": 1}
        if args.typ == "azure-native:containerservice:ManagedCluster":
            return {"name": inputs.get("resourceName", name), "oidcIssuerProfile": {"issuerURL": "https://westeurope.oic.prod-aks.azure.com/mock/"}}
        if args.typ == "azure-native:managedidentity:UserAssignedIdentity":
            return {"name": inputs.get("resourceName", name), "clientId": f"{name}-client-id", "principalId": f"{name}-principal-id"}
        if args.typ == "azure-native:keyvault:Vault":
            return {"name": inputs.get("vaultName", name), "properties": {"vaultUri": f"https://{inputs.get('vaultName', name)}.vault.azure.net/"}}
        if args.typ == "azure-native:keyvault:Key":
            key = inputs.get("keyName", name)
            return {"name": key, "keyUriWithVersion": f"https://mock.vault.azure.net/keys/{key}/0123"}
        return {}

    def call(self, args: pulumi.runtime.MockCallArgs):
        answer = self._calls(args) if self._calls else None
        return answer if answer else self._cloud_answer(args)

    @staticmethod
    def _cloud_answer(args: pulumi.runtime.MockCallArgs) -> dict:
        return {
            "gcp:organizations/getProject:getProject": {"number": "123456789012", "projectId": "mock-project"},
            "aws:index/getCallerIdentity:getCallerIdentity": {"accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/mock"},
            "aws:route53/getZone:getZone": {"zoneId": "Z0MOCKZONE", "name": args.args.get("name", "")},
            "aws:elb/getHostedZoneId:getHostedZoneId": {"id": "Z0MOCKELB"},
            "aws:lb/getHostedZoneId:getHostedZoneId": {"id": "Z0MOCKNLB"},
            "aws:ec2/getVpc:getVpc": {"id": args.args.get("id", ""), "cidrBlock": "10.0.0.0/16"},
            # The key's current version: Key Vault has rotated it since the cluster was created.
            "azure-native:keyvault:getKey": {
                "keyUriWithVersion": f"https://{args.args.get('vaultName')}.vault.azure.net/keys/{args.args.get('keyName')}/rotated456"
            },
            "azure-native:authorization:getClientConfig": {
                "subscriptionId": "00000000-0000-0000-0000-000000000001",
                "tenantId": "00000000-0000-0000-0000-000000000002",
                "objectId": "00000000-0000-0000-0000-000000000003",
                "clientId": "00000000-0000-0000-0000-000000000004",
            },
            "azure-native:containerservice:listManagedClusterUserCredentials": {
                "kubeconfigs": [{"name": "clusterUser", "value": _AKS_USER_KUBECONFIG}]
            },
        }.get(args.token, {})


def _wire_numbers(value: Any) -> Any:
    """Protobuf carries every number as a double; give integral ones back their int type."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _wire_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire_numbers(v) for v in value]
    return value


class _RecordingMonitor(mocks.MockMonitor):
    def __init__(self, mock: _Mocks):
        super().__init__(mock)
        self.recorded: list[Registered] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.recorded.append(
                Registered(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    inputs=_wire_numbers(rpc.deserialize_properties(request.object, keep_unknowns=False)),
                    custom=request.custom,
                    parent=request.parent,
                    provider=request.provider,
                    protect=bool(request.protect),
                    dependencies=list(request.dependencies),
                    ignore_changes=list(request.ignoreChanges),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                )
            )
        return response


def stack_config(stack: str) -> dict[str, Any]:
    """The `clipper:` keys of Pulumi.<stack>.yaml, without the namespace."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text()) or {}
    return {key.split(":", 1)[1]: value for key, value in (document.get("config") or {}).items() if key.startswith("clipper:")}


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set (or with DELETE remove) dotted keys, e.g. {"apps.backend.replicas": 0}."""
    config = copy.deepcopy(config)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return config


def simulate(
    stack: str,
    overrides: Optional[dict[str, Any]] = None,
    calls: Optional[Callable[[pulumi.runtime.MockCallArgs], dict]] = None,
    config: Optional[dict[str, Any]] = None,
) -> Simulation:
    """Run the program for `stack` (its stack file, plus overrides) and record every registration."""
    values = apply_overrides(config if config is not None else stack_config(stack), overrides or {})
    pulumi.runtime.set_all_config(
        {f"clipper:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}, []
    )
    settings.ROOT.set(None)
    monitor = _RecordingMonitor(_Mocks(calls))
    mocks.set_mocks(monitor.mocks, project="clipper", stack=stack, preview=False, monitor=monitor)
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(PROGRAM), run_name="__main__")))
    except Exception as error:  # noqa: BLE001 - reported with what was registered
        raise ProgramFailed(str(error), monitor.recorded) from error
    return Simulation(stack=stack, resources=monitor.recorded)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.simulate",
        description="Run the program for a stack under Pulumi mocks (no engine, no cloud, no cluster) "
        "and write the Kubernetes objects it declares as YAML.",
    )
    parser.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a config key, e.g. apps.backend.replicas=3 (repeatable)")
    parser.add_argument("--out", type=Path, help="write one YAML stream here (default: stdout)")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    try:
        sim = simulate(args.stack, overrides)
    except pulumi.RunError as error:
        print(error, file=sys.stderr)
        return 2
    text = yaml.safe_dump_all(sim.manifests(), sort_keys=False)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {len(sim.manifests())} objects to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
