"""vCPUs, memory and GPUs of the ML instance types an inference component may run on (plain Python).

An inference component states what one copy of the model needs (``ComputeResourceRequirements``), and
SageMaker places copies on instances that have it. From the instance type pages
(https://aws.amazon.com/sagemaker/pricing/ lists the same vCPU/memory per ``ml.`` type;
https://aws.amazon.com/ec2/instance-types/g4/, /g5/, /g6/, /m5/, /c5/, /c6i/, /c7i/ the GPUs).
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
    **_family("c6i", {"large": (2, 4, 0), "xlarge": (4, 8, 0), "2xlarge": (8, 16, 0),
                      "4xlarge": (16, 32, 0)}),
    **_family("c7i", {"large": (2, 4, 0), "xlarge": (4, 8, 0), "2xlarge": (8, 16, 0),
                      "4xlarge": (16, 32, 0)}),
}
# fmt: on
# What one copy reserves on the scheduler (ComputeResourceRequirements is what SageMaker *allocates* to
# place copies, not a limit on the container). Its schedulable pool is well below the instance's size:
# asking for most of the memory leaves the copy unplaceable ("There is not enough hardware resources on
# the instances ... to create a copy", reported for 4 GiB on a 16 GiB ml.g5.xlarge; the SageMaker SDK
# defaults to 1024 MB for that reason, aws/sagemaker-python-sdk#5558). The GPU count is what keeps one
# copy per GPU instance.
COPY_CPU_CORES = 1.0
COPY_MEMORY_MB = 1024


@dataclass(frozen=True)
class CopyRequirements:
    """One copy of the model: every GPU of the instance, and a small CPU and memory reservation."""

    accelerators: int
    cpu_cores: float
    memory_mb: int


def copy_requirements(instance_type: str) -> CopyRequirements:
    spec = INSTANCE_SPECS[instance_type]
    return CopyRequirements(accelerators=spec.gpus, cpu_cores=COPY_CPU_CORES, memory_mb=COPY_MEMORY_MB)
