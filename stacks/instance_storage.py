"""Which SageMaker instance types have local NVMe instance storage: one list for endpoints and training.

SageMaker rejects a volume KMS key for them, because the instance's hardware module encrypts the local
volume (CreateEndpointConfig ``KmsKeyId``; CreateTrainingJob ``ResourceConfig.VolumeKmsKeyId``). Inf2 is
EBS-only (it takes the key); Trn1 and the P5e/P5en variants have instance store.
Plain Python with no CDK import: ``training.launch`` uses it too.
"""

# fmt: off
LOCAL_NVME_INSTANCE_FAMILIES = (
    "c5d", "m5d", "r5d", "g4dn", "g5", "g6", "g6e", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en",
    "trn1", "trn1n",
)
# fmt: on


def has_local_nvme(instance_type: str) -> bool:
    """``ml.g4dn.xlarge`` -> True; ``ml.c6i.xlarge`` -> False."""
    parts = instance_type.split(".")
    return len(parts) == 3 and parts[1] in LOCAL_NVME_INSTANCE_FAMILIES
