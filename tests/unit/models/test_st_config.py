"""read_st_config(): sentence-transformers files, in the spellings of every release, -> STConfig."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.errors import ModelLoadError
from models.st_config import (
    DEFAULT_DENSE_ACTIVATION,
    DenseSpec,
    NormalizeSpec,
    parse_pooling,
    read_pooling,
    read_st_config,
)

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"


def write(folder: Path, name: str, content: Any) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def modules(folder: Path, *entries: tuple[str, str]) -> None:
    write(
        folder,
        "modules.json",
        [{"idx": i, "name": str(i), "path": p, "type": t} for i, (t, p) in enumerate(entries)],
    )


def test_a_folder_without_sentence_transformers_files_describes_nothing(tmp_path: Path) -> None:
    st = read_st_config(tmp_path)
    assert (st.has_modules, st.pooling, st.after_pooling, st.transformer_folder) == (
        False,
        None,
        (),
        tmp_path,
    )


def test_legacy_pooling_booleans_concatenate_in_sentence_transformers_order() -> None:
    # Written mean-first: ST still orders cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken.
    config = {
        "pooling_mode_mean_tokens": True,
        "pooling_mode_cls_token": True,
        "pooling_mode_max_tokens": False,
    }
    assert read_pooling(config).modes == ("cls", "mean")
    assert read_pooling({"pooling_mode_mean_tokens": False}).modes == ("mean",)  # none active: mean


def test_new_pooling_keys_win_over_legacy_ones() -> None:
    spec = read_pooling(
        {"pooling_mode": ["lasttoken", "cls"], "pooling_mode_mean_tokens": True, "include_prompt": False}
    )
    assert spec.modes == ("lasttoken", "cls")
    assert spec.name == "lasttoken+cls" and spec.include_prompt is False


@pytest.mark.parametrize("bad", ["", "mean+median", "CLS"])
def test_unknown_pooling_modes_are_refused(bad: str) -> None:
    with pytest.raises(ModelLoadError, match="pooling mode"):
        parse_pooling(bad)


def test_full_pipeline_in_module_order(tmp_path: Path) -> None:
    modules(
        tmp_path,
        (TRANSFORMER, ""),
        (POOLING, "1_Pooling"),
        ("sentence_transformers.models.Dense", "2_Dense"),
        ("sentence_transformers.models.Normalize", "3_Normalize"),
    )
    write(tmp_path, "sentence_bert_config.json", {"max_seq_length": 200, "do_lower_case": True})
    write(tmp_path, "1_Pooling/config.json", {"pooling_mode": "cls"})
    write(
        tmp_path,
        "2_Dense/config.json",
        {"in_features": 384, "out_features": 256, "bias": False, "activation_function": "my.module.Swish"},
    )
    write(
        tmp_path,
        "config_sentence_transformers.json",
        {"prompts": {"query": "q: ", "doc": None}, "default_prompt_name": "query", "truncate_dim": 128},
    )
    st = read_st_config(tmp_path)
    assert st.has_modules and st.max_seq_length == 200 and st.do_lower_case
    assert st.pooling is not None and st.pooling.modes == ("cls",)
    dense, normalize = st.after_pooling
    assert isinstance(dense, DenseSpec) and isinstance(normalize, NormalizeSpec)
    # sentence-transformers imports only torch.* activations without trust_remote_code; else Tanh.
    assert (dense.in_features, dense.out_features, dense.bias, dense.activation) == (
        384,
        256,
        False,
        DEFAULT_DENSE_ACTIVATION,
    )
    assert st.normalized and st.dense == (dense,)
    assert st.prompts == (("query", "q: "), ("doc", "")) and st.default_prompt_name == "query"
    assert st.truncate_dim == 128


def test_a_dense_after_normalize_leaves_the_output_unnormalised(tmp_path: Path) -> None:
    modules(
        tmp_path,
        (TRANSFORMER, ""),
        (POOLING, "1_Pooling"),
        ("sentence_transformers.base.modules.normalize.Normalize", "2_Normalize"),
        ("sentence_transformers.base.modules.dense.Dense", "3_Dense"),
    )
    write(tmp_path, "3_Dense/config.json", {"in_features": 4, "out_features": 2})
    st = read_st_config(tmp_path)
    assert [type(s).__name__ for s in st.after_pooling] == ["NormalizeSpec", "DenseSpec"]
    assert not st.normalized


def test_transformer_in_a_subfolder_with_a_legacy_config_name(tmp_path: Path) -> None:
    modules(tmp_path, (TRANSFORMER, "0_XLMRoberta"), (POOLING, "1_Pooling"))
    write(tmp_path, "0_XLMRoberta/sentence_xlm-roberta_config.json", {"max_seq_length": 128})
    st = read_st_config(tmp_path)
    assert st.transformer_folder == tmp_path / "0_XLMRoberta" and st.max_seq_length == 128
    assert st.pooling is not None and st.pooling.modes == ("mean",)  # no config: ST's default


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        ([(TRANSFORMER, ""), ("sentence_transformers.models.LayerNorm", "1")], "LayerNorm"),
        ([(POOLING, "1_Pooling")], "LayerNorm|Pooling"),
        ([(TRANSFORMER, "../elsewhere")], "leaves the model folder"),
    ],
)
def test_modules_convoy_cannot_run_are_refused(
    tmp_path: Path, entries: list[tuple[str, str]], needle: str
) -> None:
    modules(tmp_path, *entries)
    with pytest.raises(ModelLoadError, match=needle):
        read_st_config(tmp_path)


def test_normalize_of_token_embeddings_is_refused(tmp_path: Path) -> None:
    modules(
        tmp_path, (TRANSFORMER, ""), (POOLING, "1_Pooling"), ("sentence_transformers.models.Normalize", "2_N")
    )
    write(tmp_path, "2_N/config.json", {"module_input_name": "token_embeddings"})
    with pytest.raises(ModelLoadError, match="token_embeddings"):
        read_st_config(tmp_path)


def test_a_default_prompt_name_must_name_a_prompt(tmp_path: Path) -> None:
    write(
        tmp_path,
        "config_sentence_transformers.json",
        {"prompts": {"query": "q: "}, "default_prompt_name": "doc"},
    )
    with pytest.raises(ModelLoadError, match="doc"):
        read_st_config(tmp_path)


@pytest.mark.parametrize(
    ("st_model", "hf_config", "activation"),
    [
        # sentence-transformers 5+: config_sentence_transformers.json
        ({"model_type": "CrossEncoder", "activation_fn": "torch.nn.modules.linear.Identity"}, {}, "Identity"),
        # 4.x: config.json's sentence_transformers section
        ({}, {"sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Sigmoid"}}, "Sigmoid"),
        # < 4: the legacy key
        ({}, {"sbert_ce_default_activation_function": "torch.nn.modules.activation.Tanh"}, "Tanh"),
        ({"model_type": "CrossEncoder"}, {}, None),
    ],
)
def test_cross_encoder_markers_and_saved_activation(
    tmp_path: Path, st_model: dict[str, Any], hf_config: dict[str, Any], activation: str | None
) -> None:
    modules(tmp_path, (TRANSFORMER, ""))
    write(tmp_path, "config_sentence_transformers.json", st_model)
    write(tmp_path, "config.json", hf_config)
    st = read_st_config(tmp_path)
    assert st.cross_encoder
    assert st.ce_activation == (None if activation is None else st.ce_activation)
    assert (st.ce_activation or "").endswith(activation or "")


def test_config_sentence_transformers_counts_only_beside_modules_json(tmp_path: Path) -> None:
    """CrossEncoder parses config_sentence_transformers.json only when it loads modules.json."""
    write(
        tmp_path, "config_sentence_transformers.json", {"activation_fn": "torch.nn.modules.linear.Identity"}
    )
    assert read_st_config(tmp_path).ce_activation is None


def test_an_embedding_model_is_no_cross_encoder(tmp_path: Path) -> None:
    write(tmp_path, "config_sentence_transformers.json", {"model_type": "SentenceTransformer"})
    assert not read_st_config(tmp_path).cross_encoder
