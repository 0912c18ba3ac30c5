"""Any checkpoint as a model bundle: an old bare model.pt scores like the run's bundle, a CheXzero-format state_dict
takes the chexzero protocol."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from monai_cxrcml.cli.export import main as export_main
from monai_cxrcml.cli.inference import main as inference_main
from monai_cxrcml.model_bundle import load_model
from monai_cxrcml.networks import create_clip


def test_export_of_an_old_bare_checkpoint_scores_like_the_runs_bundle(trained, phantom_dir, run_films, tmp_path):
    films, saved = run_films
    exported = tmp_path / "exported"
    assert 0 == export_main([str(trained / "models" / "model.pt"), "--model-name", "cxrcml-cnn", "--protocol",
                             "present_absent_pooled", "--output", str(exported)])
    output = tmp_path / "s.csv"
    assert 0 == inference_main([str(films), "--image-root", str(phantom_dir), "--model", str(exported),
                                "--output", str(output), "--num-workers", "0", "--device", "cpu"])
    np.testing.assert_allclose(pd.read_csv(output).iloc[:, 1:].to_numpy(), saved["pred"], atol=1e-5, rtol=0)
    bare = tmp_path / "bare.csv"  # the old way keeps working, with the flags a bare checkpoint needs
    assert 0 == inference_main([str(films), "--image-root", str(phantom_dir), "--checkpoint",
                                str(trained / "models" / "model.pt"), "--model-name", "cxrcml-cnn", "--protocol",
                                "present_absent_pooled", "--output", str(bare), "--num-workers", "0",
                                "--device", "cpu"])
    np.testing.assert_allclose(pd.read_csv(bare).iloc[:, 1:].to_numpy(), saved["pred"], atol=1e-5, rtol=0)


def test_export_of_a_chexzero_format_checkpoint_takes_the_chexzero_protocol(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "chexzero_tiny.pt"
    torch.save(create_clip("cxrcml-tiny").state_dict(), path)  # plain, OpenAI key names: how CheXzero saves
    assert 0 == export_main([str(path), "--model-name", "cxrcml-tiny", "--output", str(tmp_path / "b")])
    model = load_model(tmp_path / "b")
    assert model.protocol.name == "chexzero" and model.class_names[0] == "Adenopathy"
    assert export_main([str(path), "--output", str(tmp_path / "c")]) == 2  # a tiny ViT is not ViT-B/32: say which
