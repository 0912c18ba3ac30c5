"""Checkpoint loading: CheXzero/OpenAI state_dicts, wrappers, prefixes, safety refusals and readable reports."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from _checkpoints import PickledCode

from monai_cxrcml.networks import CheckpointError, create_clip, load_clip_checkpoint


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def chexzero(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """A randomly initialised ViT-B-32-quickgelu saved the way CheXzero ships weights: a plain state_dict."""
    torch.manual_seed(0)
    model = create_clip("ViT-B-32-quickgelu")
    path = tmp_path_factory.mktemp("ckpt") / "chexzero.pt"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(1)
    return create_clip("cxrcml-tiny")


def test_chexzero_state_dict_round_trip(chexzero):
    source, path = chexzero
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = create_clip("ViT-B-32-quickgelu", checkpoint=path)
    assert _same_weights(source, loaded)
    assert not [w for w in caught if "QuickGELU" in str(w.message)]


def test_chexzero_into_gelu_model_warns(chexzero):
    _, path = chexzero
    with pytest.warns(UserWarning, match="ViT-B-32-quickgelu"):
        create_clip("ViT-B-32", checkpoint=path)


def test_wrong_architecture_names_matching_configs(chexzero, tiny):
    _, path = chexzero
    with pytest.raises(CheckpointError) as err:
        load_clip_checkpoint(tiny, path)
    message = str(err.value)
    assert "visual.proj: checkpoint [768, 512] vs model [128, 128]" in message
    assert "Wrong model_name?" in message and "'ViT-B-32-quickgelu'" in message
    assert "visual.transformer.* (" in message  # unexpected keys grouped by prefix, not listed one by one
    assert str(path) in message


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: {f"module.{k}": v for k, v in sd.items()}, id="dataparallel"),
        pytest.param(lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()}, id="torch_compile"),
        pytest.param(lambda sd: {"model": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5}]}}, id="bundle"),
        pytest.param(
            lambda sd: {"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in sd.items()}},
            id="open_clip",
        ),
        pytest.param(lambda sd: {"network": sd, "trainer": {"epoch": 2}}, id="network"),
        pytest.param(lambda sd: {"model": {"state_dict": sd}}, id="nested"),
    ],
)
def test_wrappers_and_prefixes(tmp_path, tiny, wrap):
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(tiny.state_dict()), path)
    loaded = create_clip("cxrcml-tiny", checkpoint=path)
    assert _same_weights(tiny, loaded)


def test_report_describes_what_was_done(tmp_path, tiny):
    openai_style = {f"module.{k}": v.half() for k, v in tiny.state_dict().items()}  # OpenAI JIT dicts are fp16
    openai_style.update({"module.input_resolution": torch.tensor(64), "module.context_length": torch.tensor(77)})
    path = tmp_path / "openai_style.pt"
    torch.save({"model": openai_style}, path)
    target = create_clip("cxrcml-tiny")
    report = load_clip_checkpoint(target, path)
    assert report.complete and report.source_format == "state_dict"
    assert report.wrapper == ("model",) and report.stripped_prefix == "module."
    assert set(report.dropped) == {"input_resolution", "context_length"}
    assert all(p.dtype == torch.float32 for p in target.parameters())
    assert torch.equal(target.visual.proj, tiny.visual.proj.half().float())
    assert "all keys loaded" in str(report)


def test_other_image_size_resizes_position_embedding(tmp_path, tiny):
    path = tmp_path / "tiny64.pt"
    torch.save(tiny.state_dict(), path)
    target = create_clip("cxrcml-tiny-96")
    report = load_clip_checkpoint(target, path)
    assert report.resized == ("visual.positional_embedding",) and report.complete
    assert target.visual.positional_embedding.shape == (12 * 12 + 1, 128)
    assert torch.equal(target.visual.positional_embedding[0], tiny.visual.positional_embedding[0])  # class token kept
    assert torch.equal(target.visual.proj, tiny.visual.proj)


def test_non_strict_loads_the_rest_and_reports(tmp_path, tiny):
    state = {k: v for k, v in tiny.state_dict().items() if not k.startswith("transformer.")}
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="missing from the checkpoint"):
        create_clip("cxrcml-tiny", checkpoint=path)
    target = create_clip("cxrcml-tiny")
    report = load_clip_checkpoint(target, path, strict=False)
    assert report.unexpected == ("extra.weight",)
    assert report.missing and all(k.startswith("transformer.") for k in report.missing)
    assert torch.equal(target.visual.proj, tiny.visual.proj)


def test_pickled_code_is_refused_without_running_it(tmp_path, tiny):
    marker = tmp_path / "code_ran"
    path = tmp_path / "pickled.pt"
    torch.save({"model": tiny.state_dict(), "hook": PickledCode(marker)}, path)
    with pytest.raises(CheckpointError) as err:
        create_clip("cxrcml-tiny", checkpoint=path)
    message = str(err.value)
    assert str(path) in message and "refused for safety" in message
    assert "weights_only=False" in message and "torch.save" in message  # how to re-save it as a state_dict
    assert not marker.exists()


def test_torchscript_archive_needs_opt_in(tmp_path, tiny):
    path = tmp_path / "openai_jit.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(tiny), path)
    with pytest.raises(CheckpointError, match="TorchScript archive.*allow_torchscript=True"):
        create_clip("cxrcml-tiny", checkpoint=path)
    target = create_clip("cxrcml-tiny")
    report = load_clip_checkpoint(target, path, allow_torchscript=True)
    assert report.source_format == "torchscript" and report.complete
    assert _same_weights(tiny, target)


def test_safetensors(tmp_path, tiny):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(path))
    assert _same_weights(tiny, create_clip("cxrcml-tiny", checkpoint=path))


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "metrics": {"auc": 0.7}}, path)
    with pytest.raises(CheckpointError, match=r"\['epoch', 'metrics'\], not a state_dict"):
        create_clip("cxrcml-tiny", checkpoint=path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "truncated.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint|could not be read"):
        create_clip("cxrcml-tiny", checkpoint=path)


def test_non_finite_weights_are_refused(tmp_path, tiny):
    state = tiny.state_dict()
    state["visual.proj"] = torch.full_like(state["visual.proj"], float("nan"))
    path = tmp_path / "diverged.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="NaN or infinite values in.*visual.proj"):
        create_clip("cxrcml-tiny", checkpoint=path)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_clip("cxrcml-tiny", checkpoint="/nonexistent/chexzero.pt")
