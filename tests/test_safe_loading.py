"""Files a user points the tool at are data, never code.

A checkpoint (``train --resume``) or a CIFAR-10 batch carrying a pickle payload — an object whose
``__reduce__`` would run ``os.system`` — is refused with a ValidationError naming the file (CLI
exit 2), and the payload never runs (its marker file is not created). Genuine files still load.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ocp_resnet import ValidationError
from ocp_resnet.cli import main
from ocp_resnet.data import vision
from ocp_resnet.data.vision import load_image_dir
from ocp_resnet.torch import distributed

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _payload_works(marker: Path) -> None:
    """The payload is live: plain ``pickle.loads`` does create the marker (so its absence below means something)."""
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()
    marker.unlink()


def _cifar_batch(path: Path, extra: object | None = None, n: int = 6, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    d = {"data": data, "labels": labels, "batch_label": path.name, "filenames": [b"a.png"] * n}
    if extra is not None:
        d["extra"] = extra
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(d, fh)
    return data, labels


# ------------------------------------------------------------------ CIFAR-10 batches
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_genuine_cifar_batch_loads_with_every_pickle_protocol(tmp_path, protocol):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(protocol)
    data = rng.integers(0, 256, size=(5, 3072), dtype=np.uint8)
    labels = [3, 1, 4, 1, 5]
    with open(d / "data_batch_1", "wb") as fh:
        pickle.dump({"data": data, "labels": labels, "batch_label": "b1"}, fh, protocol=protocol)
    ds = load_image_dir(tmp_path, reader="builtin")
    assert list(ds.y) == labels
    np.testing.assert_array_equal(ds.meta["images"].reshape(5, -1), data / 255.0)


def test_cifar_batch_with_a_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    _payload_works(marker)
    d = tmp_path / "cifar-10-batches-py"
    _cifar_batch(d / "data_batch_1", extra=Payload(marker))
    with pytest.raises(ValidationError, match=r"data_batch_1.*refused global .*system"):
        load_image_dir(tmp_path, reader="builtin")
    assert not marker.exists()


def test_cli_exits_2_naming_the_tampered_cifar_batch(tmp_path, capsys, monkeypatch):
    # the built-in reader, also where torchvision is installed (which reads only MD5-verified official files)
    monkeypatch.setattr(vision, "_use_torchvision", lambda reader: False)
    marker = tmp_path / "pwned"
    d = tmp_path / "cifar-10-batches-py"
    _cifar_batch(d / "data_batch_1", extra=Payload(marker))
    code = main(["train", "--arch", "conv", "--dataset", str(tmp_path), "--epochs", "1",
                 "--quiet", "--device", "cpu", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and str(d / "data_batch_1") in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "run").exists()


# ------------------------------------------------------------------ checkpoints
TRAIN = ("train", "--dataset", "spirals", "--n-samples", "60", "--blocks", "2", "--width", "2", "--optimizer", "adam",
         "--batch-size", "16", "--val-fraction", "0.2", "--quiet", "--device", "cpu", "--schedule", "constant")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ocp_resnet", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_tampered_checkpoint_is_refused_and_genuine_one_resumes(tmp_path):
    marker = tmp_path / "pwned"
    _payload_works(marker)
    run = tmp_path / "run"
    r = _cli(*TRAIN, "--epochs", "1", "--checkpoint-every", "1", "--out", str(run))
    assert r.returncode == 0, r.stderr
    ckpt = run / "checkpoint.pt"
    good = distributed.load_checkpoint(run)  # the genuine file loads under weights_only=True
    assert good["epoch"] == 1 and isinstance(good["torch_rng"], torch.Tensor)

    # the same state with one payload object inside: refused, the payload never runs
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({**good, "history": [Payload(marker)]}, bad / "checkpoint.pt")
    with pytest.raises(ValidationError, match="refused to load"):
        distributed.load_checkpoint(bad)
    r = _cli(*TRAIN, "--epochs", "2", "--resume", str(bad))
    assert r.returncode == 2, r.stderr
    assert str(bad / "checkpoint.pt") in r.stderr and "refused to load" in r.stderr and "system" in r.stderr
    assert "Traceback" not in r.stderr
    assert not marker.exists()

    # a file that is no checkpoint at all
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "checkpoint.pt").write_bytes(b"not a zip file")
    r = _cli(*TRAIN, "--epochs", "2", "--resume", str(junk))
    assert r.returncode == 2 and "not a training checkpoint" in r.stderr, r.stderr

    # the genuine checkpoint still resumes
    r = _cli(*TRAIN, "--epochs", "2", "--resume", str(run))
    assert r.returncode == 0, r.stderr
    assert ckpt.exists() and distributed.load_checkpoint(run)["epoch"] == 2
