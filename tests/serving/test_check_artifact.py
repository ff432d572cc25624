"""localdev.check_artifact and training.artifact's serve check: a broken artifact stops before traffic."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localdev import check_artifact

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def archive(artifact_dir, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("archive") / "model.tar.gz"
    result = run("-m", "training.artifact", "--model-dir", str(artifact_dir), "--output", str(output),
                 "--serve-check", "inprocess")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{output} serves (inprocess)" in result.stdout
    return output


def test_a_good_archive_serves_from_a_path_and_from_s3(archive, monkeypatch, class_names):
    result = run("-m", "localdev.check_artifact", str(archive), "--server", "inprocess")
    assert result.returncode == 0, result.stderr
    assert "serves (inprocess): top class" in result.stdout

    downloaded = []
    monkeypatch.setattr(
        check_artifact, "_download", lambda url, dest: downloaded.append(url) or shutil.copy(archive, dest)
    )
    checked = check_artifact.check_artifact("s3://bucket/jobs/j/output/model.tar.gz", server="inprocess")
    assert downloaded == ["s3://bucket/jobs/j/output/model.tar.gz"]
    assert len(checked.predictions) == 5 and {p["breed"] for p in checked.predictions} <= set(class_names)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda model: (model / "model.pt").write_bytes(b"junk"), "does not load as this model's state_dict"),
        (lambda model: (model / "model_config.json").write_text("{"), "model_config.json cannot be read"),
        (lambda model: (model / "code" / "inference.py").unlink(), "no code/inference.py"),
    ],
)
def test_a_broken_artifact_does_not_serve(artifact_dir, tmp_path, damage, message):
    model = tmp_path / "model"
    shutil.copytree(artifact_dir, model)
    damage(model)
    server = "torchserve" if "code/" in message else "inprocess"
    with pytest.raises(check_artifact.ArtifactCheckFailed, match=message):
        check_artifact.check_artifact(model, server=server)


def test_what_only_the_real_container_catches_fails_the_packing(artifact_dir, tmp_path):
    """The repo's own load check imports the repo's code; the container imports the artifact's copy."""
    model = tmp_path / "model"
    shutil.copytree(artifact_dir, model)
    handler = model / "code" / "inference.py"
    handler.write_text(handler.read_text().replace("from PIL import Image", "from PIL import NoSuchThing", 1))
    result = run("-m", "training.artifact", "--model-dir", str(model), "--output", str(tmp_path / "m.tar.gz"),
                 "--serve-check", "torchserve")  # fmt: skip
    assert result.returncode != 0
    assert "does not serve: the model failed to load in a TorchServe worker" in result.stderr
    assert "NoSuchThing" in result.stderr


def test_not_an_archive_is_a_clear_failure(tmp_path):
    bogus = tmp_path / "model.tar.gz"
    bogus.write_bytes(b"not gzip")
    result = run("-m", "localdev.check_artifact", str(bogus), "--server", "inprocess")
    assert result.returncode == 1
    assert "cannot be unpacked as a model.tar.gz" in result.stderr and "Traceback" not in result.stderr
