"""pool() against sentence-transformers' own Pooling module, and in float32 whatever the dtype."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers.sentence_transformer.modules import Pooling

from models.pooling import pool, pooling_mask
from models.st_config import POOLING_MODES

LENGTHS = [7, 3, 1, 5]  # right-padded to 7: rows of every length, one of a single token


def batch(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    hidden = torch.randn(len(LENGTHS), max(LENGTHS), 8).to(dtype)
    mask = (torch.arange(max(LENGTHS)).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)).long()
    return hidden, mask


def reference(
    hidden: torch.Tensor, mask: torch.Tensor, modes: tuple[str, ...], prompt_length: int = 0
) -> torch.Tensor:
    features = {"token_embeddings": hidden, "attention_mask": mask}
    if prompt_length:
        features["prompt_length"] = prompt_length
    module = Pooling(
        hidden.shape[-1], modes if len(modes) > 1 else modes[0], include_prompt=not prompt_length
    )
    out: torch.Tensor = module(features)["sentence_embedding"]
    return out.float()


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_each_mode_matches_sentence_transformers_over_padding(mode: str) -> None:
    hidden, mask = batch()
    got = pool(hidden, pooling_mask(mask, None), (mode,))
    torch.testing.assert_close(got, reference(hidden, mask, (mode,)))


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_excluded_prompt_tokens_match_sentence_transformers(mode: str) -> None:
    """include_prompt false: ST zeroes the first prompt_length mask positions ([CLS] included);
    the row of one token keeps nothing, and must still agree."""
    hidden, mask = batch()
    prompt = torch.full((len(LENGTHS),), 2)
    got = pool(hidden, pooling_mask(mask, prompt), (mode,))
    expected = reference(hidden, mask, (mode,), prompt_length=2)
    if mode == "max":  # ST leaves -inf where nothing is pooled; so does Convoy: compare the rest
        keep = torch.tensor(LENGTHS) > 2
        torch.testing.assert_close(got[keep], expected[keep])
        assert torch.isinf(got[~keep]).all()
    else:
        torch.testing.assert_close(got, expected)


def test_several_modes_concatenate_in_the_given_order() -> None:
    hidden, mask = batch()
    got = pool(hidden, pooling_mask(mask, None), ("cls", "mean", "lasttoken"))
    assert got.shape == (len(LENGTHS), 3 * 8)
    torch.testing.assert_close(got, reference(hidden, mask, ("cls", "mean", "lasttoken")))
    torch.testing.assert_close(got[:, :8], hidden[:, 0])


def test_last_token_is_the_last_real_token_not_the_padding() -> None:
    hidden, mask = batch()
    got = pool(hidden, pooling_mask(mask, None), ("lasttoken",))
    for row, length in enumerate(LENGTHS):
        torch.testing.assert_close(got[row], hidden[row, length - 1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["mean", "mean_sqrt_len_tokens", "weightedmean"])
def test_half_precision_sums_do_not_overflow(dtype: torch.dtype, mode: str) -> None:
    """Hidden states near float16's largest value (65504): their sum over a few tokens is inf in
    float16 (then inf / inf = NaN, which JSON writes as null). Pooling sums in float32."""
    length = 64
    hidden = torch.full((1, length, 4), 60000.0).to(dtype)
    assert torch.isinf(hidden.sum(dim=1)).all() or dtype == torch.bfloat16
    mask = torch.ones(1, length, dtype=torch.long)
    got = pool(hidden, pooling_mask(mask, None), (mode,))
    assert got.dtype == torch.float32
    assert torch.isfinite(got).all()
    expected = 60000.0 * (length**0.5 if mode == "mean_sqrt_len_tokens" else 1.0)
    torch.testing.assert_close(got, torch.full_like(got, expected), rtol=1e-2, atol=0)


def test_output_is_float32_for_every_mode() -> None:
    hidden, mask = batch(torch.bfloat16)
    got = pool(hidden, pooling_mask(mask, None), POOLING_MODES)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
