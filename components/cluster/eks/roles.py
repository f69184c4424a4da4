"""IAM roles of an EKS cluster: each with its managed-policy attachments, which whatever assumes the
role waits for (EKS checks them on create, and needs them again on destroy)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.cluster.eks import iam


@dataclass
class Role:
    """An IAM role and its managed-policy attachments: whatever assumes the role must wait for them."""

    role: aws.iam.Role
    attachments: list[aws.iam.RolePolicyAttachment]


class Roles:
    """Makes the cluster's roles as children of the cluster component (`opts`)."""

    def __init__(self, partition: str, opts: pulumi.ResourceOptions):
        self._partition = partition
        self._opts = opts
        self._oidc: Optional[tuple[pulumi.Output[str], pulumi.Output[str]]] = None

    def make(self, name: str, assume_role_policy: pulumi.Input[str], managed: tuple[str, ...] = ()) -> Role:
        role = aws.iam.Role(name, assume_role_policy=assume_role_policy, opts=self._opts)
        # AWS managed policies by path under arn:<partition>:iam::aws:policy/ (e.g. service-role/...).
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-{policy.rsplit('/', 1)[-1]}",
                role=role.name,
                policy_arn=f"arn:{self._partition}:iam::aws:policy/{policy}",
                opts=self._opts,
            )
            for policy in managed
        ]
        return Role(role, attachments)

    def trust_oidc(self, provider_arn: pulumi.Output[str], issuer: pulumi.Output[str]) -> None:
        """The cluster's IAM OIDC provider, which IRSA roles trust."""
        self._oidc = (provider_arn, issuer.apply(lambda url: url.removeprefix("https://")))

    def irsa_trust(self, namespace: str, service_account: str) -> pulumi.Output[str]:
        assert self._oidc is not None, "trust_oidc first: IRSA roles trust the cluster's OIDC provider"
        provider_arn, issuer_host = self._oidc
        return pulumi.Output.all(provider_arn, issuer_host).apply(lambda a: iam.irsa_trust(a[0], a[1], namespace, service_account))

    def irsa(self, name: str, namespace: str, service_account: str, managed: tuple[str, ...] = ()) -> Role:
        """A role exactly one Kubernetes ServiceAccount may assume."""
        return self.make(name, self.irsa_trust(namespace, service_account), managed)

    def assuming(self, role: Optional[Role], depends_on: Optional[list[pulumi.Resource]] = None) -> pulumi.ResourceOptions:
        # EKS checks the role's policies when it creates the cluster, a node group or an add-on, and
        # needs them again to delete what it made (ENIs, instances) on destroy: attach first, detach last.
        attachments = role.attachments if role else []
        return pulumi.ResourceOptions.merge(self._opts, pulumi.ResourceOptions(depends_on=[*attachments, *(depends_on or [])]))
