"""Entry point of the SageMaker training job: ``training.train`` run as a script.

The PyTorch DLC's ``torch_distributed`` launcher runs ``torchrun ... training/sagemaker_entry.py
--key value ...`` from the unpacked source dir (/opt/ml/code). A script's own directory, not the source
dir, is what Python puts on ``sys.path``; adding the parent makes ``training`` and ``inference``
importable as packages, exactly as ``python -m training.train`` sees them. The script's directory is
removed, so that its modules (``config``, ``data``, ``model``) cannot shadow top-level ones.
"""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from training.train import cli  # noqa: E402

if __name__ == "__main__":
    cli()
