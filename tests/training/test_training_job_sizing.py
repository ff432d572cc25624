"""training.job_sizing: the default SageMaker job follows from a step's compute against its all-reduce."""

from __future__ import annotations

from pathlib import Path

import pytest

from training import job_sizing, launch
from training.job_sizing import CANDIDATES, DEFAULT, Candidate, allreduce_seconds, estimate

DOCS = Path(__file__).resolve().parents[2] / "docs" / "training.md"
TWO_T4_HOSTS = next(c for c in CANDIDATES if c.hosts == 2)


def test_a_ring_all_reduce_moves_2_n_minus_1_over_n_times_the_gradients_per_rank():
    gigabyte = 1e9
    assert allreduce_seconds(1, gigabyte, 1.0) == 0  # one GPU: nothing to reduce
    assert allreduce_seconds(2, gigabyte, 1.0) == pytest.approx(1.0)
    assert allreduce_seconds(4, gigabyte, 1.0) == pytest.approx(1.5)
    # ResNet-50's 133-class gradients are 95 MB of fp32.
    gradient_bytes = job_sizing.GRADIENT_BYTES
    assert gradient_bytes == pytest.approx(95.1e6, rel=1e-3)


def test_a_second_t4_host_spends_about_as_long_all_reducing_as_computing():
    at_64 = estimate(TWO_T4_HOSTS, batch=64)
    at_32 = estimate(TWO_T4_HOSTS, batch=32)
    one_host = estimate(DEFAULT, batch=64).images_per_s(overlap=True)

    # 95 MB at 5 Gbps (one IPsec flow) against 64 images on a T4.
    assert at_64.allreduce_s == pytest.approx(0.152, abs=0.002)
    assert at_64.allreduce_s > 0.9 * at_64.compute_s
    # Twice the instances for at most 1.73x, and for nothing at batch 32.
    assert at_64.images_per_s(overlap=False) < 1.2 * one_host
    assert at_64.images_per_s(overlap=True) < 1.8 * one_host
    assert at_32.images_per_s(overlap=True) <= estimate(DEFAULT, batch=32).images_per_s(overlap=True)


def test_the_faster_gpu_of_a_4_vcpu_host_waits_for_its_3_loader_workers():
    g5 = next(c for c in CANDIDATES if c.instance_type == "ml.g5.xlarge")
    assert estimate(g5).images_per_s(overlap=True) == estimate(DEFAULT).images_per_s(overlap=True)
    assert estimate(g5).compute_s < estimate(DEFAULT).compute_s


def test_the_launcher_starts_the_chosen_job_on_spot_capacity():
    args = launch.build_parser_launch().parse_args([])
    chosen = DEFAULT
    assert chosen == Candidate("ml.g4dn.xlarge", hosts=1, gpus_per_host=1, vcpus_per_host=4)
    assert (args.instance_type, args.instance_count, args.spot) == ("ml.g4dn.xlarge", 1, True)


def test_docs_training_md_shows_the_estimate_s_table():
    assert job_sizing.table() in DOCS.read_text()
