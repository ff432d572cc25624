"""Which SageMaker job ``training.launch`` starts by default: a step's compute against its all-reduce.

A DDP step runs the batch on every GPU, then all-reduces the gradients. A ring all-reduce over N ranks
sends and receives ``2 (N - 1) / N`` times the gradient bytes per rank, at the speed of the ring's slowest
link. DDP starts each bucket's all-reduce while the backward pass is still running, so a step takes
between ``compute + all-reduce`` (no overlap) and ``max(compute, forward + all-reduce)`` (all of it
hidden behind the backward pass). The input pipeline (JPEG decode and augmentation in the DataLoader
workers) caps what the GPUs can be fed. Every number below is a published figure or
a labelled estimate; docs/training.md ("The default job") has the table and the choice, and
``python -m training.job_sizing`` prints the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# ResNet-50 with dogImages' 133-class head: 23,780,549 parameters (torchvision; 25,557,032 with the
# 1000-class head). Gradients are fp32 under autocast (the parameters stay fp32): 4 bytes each.
GRADIENT_BYTES = 23_780_549 * 4
TRAIN_IMAGES = 6_680  # dogImages train/
# NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "Inference
# performance: NVIDIA T4", mixed precision: 1128 img/s at batch 32, 1165 at batch 64. NVIDIA publishes no
# T4 training table; a training step is about three forward passes of work (the backward pass computes
# gradients for activations and for weights, each about one forward), so a third of it.
T4_FORWARD_AMP_IMAGES_PER_S = {32: 1128.0, 64: 1165.0}
FORWARD_SHARE_OF_STEP = 1 / 3
# A10G (g5) against T4 (g4dn): NVIDIA's data sheets give 125 vs 65 dense FP16 tensor TFLOPS and 600 vs
# 320 GB/s of memory bandwidth, both about 1.9x. A spec-sheet ratio, not a measurement: an upper bound.
A10G_OVER_T4 = 1.9
# The training preset (training.data.train_transform: decode, RandomResizedCrop 224, flip, normalise) of
# a 500x375, 109 KB JPEG, one thread: 8.4 ms per image on the 2-core development VM. A rough per-worker
# rate; the instances' Xeon/EPYC cores are not slower.
LOADER_IMAGES_PER_S_PER_WORKER = 1000 / 8.4
# Links, GB/s. Two hosts: 5 Gbps. g4dn.xlarge's baseline is 5 Gbps ("up to 25" is a burst that lasts
# 5-60 minutes), and with inter-container traffic encryption all traffic between two hosts is one IPsec
# flow (EC2 counts IPsec flows by source, destination and protocol), which EC2 caps at 5 Gbps outside a
# cluster placement group (EC2 User Guide, "Amazon EC2 instance network bandwidth"); the IPsec itself
# costs CPU on 4 vCPUs on top. Inside g4dn.12xlarge the four T4s share PCIe 3.0 x16 links (15.75 GB/s
# each way, no NVLink) through the host; half of that is assumed for NCCL's ring.
TWO_HOSTS_GB_PER_S = 5 / 8
PCIE3_X16_GB_PER_S = 15.75 * 0.5


@dataclass(frozen=True)
class Candidate:
    """A job shape: hosts x instance type, the GPUs' speed relative to a T4 and the ring's slowest link."""

    instance_type: str
    hosts: int
    gpus_per_host: int
    vcpus_per_host: int
    gpu_speed: float = 1.0  # x T4
    link_gb_per_s: float = math.inf  # slowest link of the all-reduce ring; inf with one GPU

    @property
    def gpus(self) -> int:
        return self.hosts * self.gpus_per_host

    @property
    def label(self) -> str:
        return f"{self.hosts} x {self.instance_type}"


@dataclass(frozen=True)
class StepEstimate:
    """One DDP step of ``batch`` images per GPU on ``candidate``; times in seconds."""

    candidate: Candidate
    batch: int
    compute_s: float
    allreduce_s: float
    loader_images_per_s: float

    @property
    def step_s_no_overlap(self) -> float:
        return self.compute_s + self.allreduce_s

    @property
    def step_s_full_overlap(self) -> float:
        return max(self.compute_s, self.compute_s * FORWARD_SHARE_OF_STEP + self.allreduce_s)

    def images_per_s(self, overlap: bool) -> float:
        """Whole-job throughput: the GPUs' step rate, or the input pipeline where it is slower."""
        step = self.step_s_full_overlap if overlap else self.step_s_no_overlap
        return min(self.candidate.gpus * self.batch / step, self.loader_images_per_s)

    def epoch_s(self, overlap: bool) -> float:
        return TRAIN_IMAGES / self.images_per_s(overlap)


def allreduce_seconds(ranks: int, gradient_bytes: float, link_gb_per_s: float) -> float:
    """Ring all-reduce: each rank sends (and receives) 2 (N - 1) / N x the bytes over its slowest link."""
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * gradient_bytes / (link_gb_per_s * 1e9)


def estimate(candidate: Candidate, batch: int = 64, gradient_bytes: float = GRADIENT_BYTES) -> StepEstimate:
    """Compute, all-reduce and input-pipeline rates of one step of ResNet-50 with AMP on ``candidate``."""
    per_gpu = T4_FORWARD_AMP_IMAGES_PER_S[batch] * FORWARD_SHARE_OF_STEP * candidate.gpu_speed
    # training.config's SageMaker default: (CPUs - 1) / GPUs DataLoader workers per process, at most 8.
    workers = candidate.gpus * max(1, min(8, (candidate.vcpus_per_host - 1) // candidate.gpus_per_host))
    return StepEstimate(
        candidate=candidate,
        batch=batch,
        compute_s=batch / per_gpu,
        allreduce_s=allreduce_seconds(candidate.gpus, gradient_bytes, candidate.link_gb_per_s),
        loader_images_per_s=workers * LOADER_IMAGES_PER_S_PER_WORKER,
    )


CANDIDATES = (
    Candidate("ml.g4dn.xlarge", hosts=1, gpus_per_host=1, vcpus_per_host=4),
    Candidate("ml.g4dn.xlarge", 2, 1, 4, link_gb_per_s=TWO_HOSTS_GB_PER_S),
    Candidate("ml.g4dn.12xlarge", 1, 4, 48, link_gb_per_s=PCIE3_X16_GB_PER_S),
    Candidate("ml.g5.xlarge", 1, 1, 4, gpu_speed=A10G_OVER_T4),
)
# One T4 host. A second g4dn.xlarge spends about as long all-reducing as computing: at batch 64 it adds
# 13-73 % (less with IPsec's CPU cost, which is not modelled), at batch 32 nothing, for twice the
# instances and twice the chance of a spot interruption, which restarts the whole job. The 12xlarge's
# four T4s save about 5 of dogImages' 6 minutes of training at several times the hourly price; the
# g5.xlarge's A10G waits for the same 3 loader workers. docs/training.md has the numbers.
DEFAULT = CANDIDATES[0]


def table(batches: tuple[int, ...] = (32, 64)) -> str:
    """The comparison as a Markdown table (docs/training.md, "The default job")."""
    lines = [
        "| job | batch/GPU | compute ms | all-reduce ms | input img/s | img/s (no overlap - full) "
        "| vs 1 x g4dn.xlarge | epoch s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for batch in batches:
        base = estimate(DEFAULT, batch).images_per_s(overlap=True)
        for candidate in CANDIDATES:
            e = estimate(candidate, batch)
            slow, fast = e.images_per_s(overlap=False), e.images_per_s(overlap=True)
            lines.append(
                f"| {candidate.label} | {batch} | {e.compute_s * 1e3:.0f} | {e.allreduce_s * 1e3:.0f} "
                f"| {e.loader_images_per_s:.0f} | {slow:.0f} - {fast:.0f} "
                f"| {slow / base:.2f} - {fast / base:.2f} | {e.epoch_s(True):.0f} - {e.epoch_s(False):.0f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
