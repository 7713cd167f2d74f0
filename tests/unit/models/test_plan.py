"""plan_model()'s decisions: task detection, pooling source, prompt defaults, head activation."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from models.classification import activate, head_activation
from models.errors import ModelLoadError
from models.plan import NO_ST_FILES, choose_pooling, infer_task, merge_prompts
from models.spec import ModelSpec
from models.st_config import PoolingSpec, STConfig

FOLDER = Path("/models/x")
SIGMOID = "torch.nn.modules.activation.Sigmoid"


def config(archs: list[str] | None = None, num_labels: int = 2, **extra: object) -> SimpleNamespace:
    return SimpleNamespace(architectures=archs, num_labels=num_labels, **extra)


@pytest.mark.parametrize(
    ("archs", "labels", "cross_encoder", "task"),
    [
        (["BertModel"], 2, False, "embed"),
        (["BertForSequenceClassification"], 3, False, "classify"),
        (["BertForSequenceClassification"], 1, False, "rerank"),  # one logit: a relevance score
        (["BertForSequenceClassification"], 3, True, "classify"),  # an NLI cross-encoder
        (["BertModel"], 1, True, "rerank"),
        (None, 2, False, "embed"),
    ],
)
def test_task_detection(archs: list[str] | None, labels: int, cross_encoder: bool, task: str) -> None:
    st = STConfig(transformer_folder=FOLDER, cross_encoder=cross_encoder)
    assert infer_task(config(archs, labels), st) == task


def test_pooling_comes_from_modules_json() -> None:
    st = STConfig(transformer_folder=FOLDER, has_modules=True, pooling=PoolingSpec(("cls",), False))
    assert choose_pooling("embed", st, config(), None) == (st.pooling, "modules.json")


def test_an_override_keeps_the_models_include_prompt() -> None:
    st = STConfig(transformer_folder=FOLDER, has_modules=True, pooling=PoolingSpec(("mean",), False))
    assert choose_pooling("embed", st, config(), "cls+mean") == (
        PoolingSpec(("cls", "mean"), False),
        "override",
    )


def test_without_sentence_transformers_files_pooling_is_sentence_transformers_default() -> None:
    st = STConfig(transformer_folder=FOLDER)
    assert choose_pooling("embed", st, config(["BertModel"]), None) == (PoolingSpec(("mean",)), NO_ST_FILES)
    causal = config(["Qwen2ForCausalLM"])
    assert choose_pooling("embed", st, causal, None) == (PoolingSpec(("lasttoken",)), NO_ST_FILES)


def test_pooling_belongs_to_embedding_models_only() -> None:
    st = STConfig(transformer_folder=FOLDER)
    assert choose_pooling("rerank", st, config(), None) == (None, "")
    with pytest.raises(ModelLoadError, match="embedding"):
        choose_pooling("classify", st, config(), "cls")


def test_modules_json_without_pooling_needs_an_override() -> None:
    st = STConfig(transformer_folder=FOLDER, has_modules=True)
    with pytest.raises(ModelLoadError, match="no Pooling"):
        choose_pooling("embed", st, config(), None)


MODEL_PROMPTS = STConfig(
    transformer_folder=FOLDER, prompts=(("query", "query: "), ("doc", "")), default_prompt_name="query"
)


def test_the_models_default_prompt_applies() -> None:
    assert merge_prompts(MODEL_PROMPTS, ModelSpec()) == (MODEL_PROMPTS.prompts, "query", "query: ")


def test_server_prompts_join_and_win() -> None:
    spec = ModelSpec(prompts=(("query", "search: "), ("code", "code: ")), default_prompt_name="code")
    prompts, name, text = merge_prompts(MODEL_PROMPTS, spec)
    assert prompts == (("query", "search: "), ("doc", ""), ("code", "code: "))
    assert (name, text) == ("code", "code: ")


def test_a_default_prompt_text_wins_over_names() -> None:
    assert merge_prompts(MODEL_PROMPTS, ModelSpec(default_prompt="custom: "))[1:] == (None, "custom: ")


def test_an_empty_default_prompt_is_no_prompt() -> None:
    spec = ModelSpec(default_prompt_name="doc")
    assert merge_prompts(MODEL_PROMPTS, spec)[1:] == ("doc", None)


def test_an_unknown_default_prompt_name_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="passage"):
        merge_prompts(MODEL_PROMPTS, ModelSpec(default_prompt_name="passage"))


@pytest.mark.parametrize(
    ("task", "labels", "problem", "saved", "activation"),
    [
        ("classify", 3, None, None, "softmax"),
        ("classify", 3, "single_label_classification", None, "softmax"),
        ("classify", 3, "multi_label_classification", None, "sigmoid"),
        ("classify", 1, None, None, "sigmoid"),
        ("classify", 1, "regression", None, "none"),
        ("rerank", 1, None, None, "sigmoid"),  # CrossEncoder's default for one logit
        ("rerank", 1, "regression", None, "sigmoid"),  # CrossEncoder ignores problem_type
        ("rerank", 1, None, "torch.nn.modules.linear.Identity", "none"),
        ("rerank", 1, None, SIGMOID, "sigmoid"),
    ],
)
def test_head_activation(
    task: str, labels: int, problem: str | None, saved: str | None, activation: str
) -> None:
    assert head_activation(task, config(num_labels=labels, problem_type=problem), saved) == activation


def test_an_unsupported_saved_activation_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="Tanh"):
        head_activation("rerank", config(num_labels=1), "torch.nn.modules.activation.Tanh")


def test_activations() -> None:
    logits = torch.tensor([[2.0, 0.0, -2.0]])
    torch.testing.assert_close(activate(logits, "softmax").sum(), torch.tensor(1.0))
    torch.testing.assert_close(activate(logits, "sigmoid"), torch.sigmoid(logits))
    assert activate(logits, "none") is logits
