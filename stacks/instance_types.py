"""vCPUs, memory and GPUs of the ML instance types an inference component may run on (plain Python).

An inference component states what one copy of the model needs (``ComputeResourceRequirements``), and
SageMaker places copies on instances that have it. From the instance type pages
(https://aws.amazon.com/sagemaker/pricing/ lists the same vCPU/memory per ``ml.`` type;
https://aws.amazon.com/ec2/instance-types/g4/, /g5/, /g6/, /m5/, /c5/ the GPUs).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceSpec:
    vcpus: int
    memory_gib: int
    gpus: int


def _family(prefix: str, sizes: dict[str, tuple[int, int, int]]) -> dict[str, InstanceSpec]:
    return {f"ml.{prefix}.{size}": InstanceSpec(*spec) for size, spec in sizes.items()}


# fmt: off
_GPU_SIZES = {"xlarge": (4, 16, 1), "2xlarge": (8, 32, 1), "4xlarge": (16, 64, 1), "8xlarge": (32, 128, 1),
              "12xlarge": (48, 192, 4), "16xlarge": (64, 256, 1)}
INSTANCE_SPECS: dict[str, InstanceSpec] = {
    **_family("g4dn", _GPU_SIZES),
    **_family("g5", {**_GPU_SIZES, "24xlarge": (96, 384, 4), "48xlarge": (192, 768, 8)}),
    **_family("g6", {**_GPU_SIZES, "24xlarge": (96, 384, 4), "48xlarge": (192, 768, 8)}),
    **_family("m5", {"large": (2, 8, 0), "xlarge": (4, 16, 0), "2xlarge": (8, 32, 0),
                     "4xlarge": (16, 64, 0)}),
    **_family("c5", {"large": (2, 4, 0), "xlarge": (4, 8, 0), "2xlarge": (8, 16, 0),
                     "4xlarge": (16, 32, 0)}),
}
# fmt: on
# Left to SageMaker's own processes on the instance when one copy takes the rest: a copy that asks for
# every vCPU or byte would find no instance to be placed on. Not published by AWS; to measure on a deploy.
RESERVED_VCPUS = 1
RESERVED_MEMORY_GIB = 2


@dataclass(frozen=True)
class CopyRequirements:
    """One copy of the model per instance: all its GPUs, and its CPUs and memory less the reserve."""

    accelerators: int
    cpu_cores: float
    memory_mb: int


def copy_requirements(instance_type: str) -> CopyRequirements:
    spec = INSTANCE_SPECS[instance_type]
    return CopyRequirements(
        accelerators=spec.gpus,
        cpu_cores=float(max(1, spec.vcpus - RESERVED_VCPUS)),
        memory_mb=max(1024, (spec.memory_gib - RESERVED_MEMORY_GIB) * 1024),
    )
