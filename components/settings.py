"""Typed settings shared by every component: the base model and value types.

Components declare their own settings models (with their secure defaults) on top of
`Settings`; `infra.config` composes them into one stack configuration.
"""
from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

_CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
_MEMORY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_IMAGE = re.compile(
    r"^(?P<repository>[a-z0-9][a-z0-9._\-/:]*?[a-z0-9])"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}))?"
    r"(@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


class Settings(BaseModel):
    """Base of every settings model: camelCase keys in stack files, unknown keys rejected."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


def _cpu(value: str) -> str:
    if not _CPU.match(value):
        raise ValueError(f"{value!r} is not a CPU quantity (examples: 250m, 1, 1.5)")
    return value


def _memory(value: str) -> str:
    if not _MEMORY.match(value):
        raise ValueError(f"{value!r} is not a memory quantity (examples: 128Mi, 1Gi, 512M)")
    return value


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError(f"{value!r} is not a DNS label (lowercase letters, digits, '-', at most 63)")
    return value


def _image(value: str) -> str:
    match = _IMAGE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not an image reference (repository:tag or repository@sha256:...)")
    if not match["tag"] and not match["digest"]:
        raise ValueError(f"image {value!r} has no tag or digest: pin a version, e.g. {value}:1.4.2")
    if match["tag"] == "latest" and not match["digest"]:
        raise ValueError(f"image {value!r} uses the mutable tag 'latest': pin a version or a digest")
    return value


CpuQuantity = Annotated[str, AfterValidator(_cpu)]
MemoryQuantity = Annotated[str, AfterValidator(_memory)]
DnsLabel = Annotated[str, AfterValidator(_dns_label)]
ImageRef = Annotated[str, AfterValidator(_image)]
Port = Annotated[int, Field(ge=1, le=65535)]


def deep_merge(base: dict, override: dict) -> dict:
    """`override` merged over `base`, recursively for nested mappings (config over defaults)."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def image_version(image: str) -> str:
    """The tag and/or digest of an image reference: what a release deploys."""
    match = _IMAGE.match(image)
    assert match, image
    return "@".join(part for part in (match["tag"], match["digest"]) if part)


class ComputeResources(Settings):
    cpu: CpuQuantity
    memory: MemoryQuantity


class ResourceRequirements(Settings):
    """Container requests and limits; both are required so the scheduler and quota can work."""

    requests: ComputeResources = ComputeResources(cpu="100m", memory="128Mi")
    limits: ComputeResources = ComputeResources(cpu="500m", memory="512Mi")

    def to_kubernetes(self) -> dict:
        return {"requests": self.requests.model_dump(), "limits": self.limits.model_dump()}
