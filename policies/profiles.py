"""Per-model-family profiles: which stream parser, whether the template opens reasoning in the
prompt, and which reasoning-replay policy renders earlier turns.

``detect_profile`` picks one from the tokenizer (its special tokens and chat template) when the
config says ``profile: auto``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ModelProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Profile name, used in config as model.profile.")
    parser: str = Field(description="Stream parser family in kvyard.parsing (e.g. qwen3, plain).")
    reasoning: bool = Field(False, description="The family emits reasoning blocks.")
    reasoning_opened_by_template: bool = Field(
        False, description="The chat template ends the prompt inside an open <think> (output starts in reasoning)."
    )
    replay: str = Field("keep_all", description="Reasoning-replay policy for earlier assistant turns.")
    tool_call_format: str | None = Field(
        None, description="The family's text of one tool call, with {name} and {arguments}; used to force a call."
    )


PROFILES: dict[str, ModelProfile] = {
    p.name: p
    for p in (
        ModelProfile(name="plain", parser="plain"),
        ModelProfile(
            name="qwen3",
            parser="qwen3",
            reasoning=True,
            replay="after_last_user",
            tool_call_format='<tool_call>\n{"name": "{name}", "arguments": {arguments}}\n</tool_call>',
        ),
        ModelProfile(name="deepseek_r1", parser="deepseek_r1", reasoning=True, reasoning_opened_by_template=True, replay="drop"),
        ModelProfile(
            name="nemotron",
            parser="nemotron",
            reasoning=True,
            replay="keep_with_tool_calls",
            tool_call_format='<TOOLCALL>[{"name": "{name}", "arguments": {arguments}}]</TOOLCALL>',
        ),
        ModelProfile(name="gpt_oss", parser="harmony", reasoning=True, replay="harmony"),
        ModelProfile(
            name="kimi_k2",
            parser="kimi_k2",
            reasoning=True,
            replay="after_last_user",
            tool_call_format="<|tool_calls_section_begin|><|tool_call_begin|>functions.{name}:0<|tool_call_argument_begin|>{arguments}<|tool_call_end|><|tool_calls_section_end|>",
        ),
        ModelProfile(name="qwen3_coder", parser="qwen3_coder", reasoning=False, replay="keep_all"),
    )
}


def get_profile(name: str) -> ModelProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown model profile {name!r}; known: {', '.join(sorted(PROFILES))} or 'auto'") from None


def detect_profile(vocab: set[str] | dict[str, int], chat_template: str | None) -> ModelProfile:
    """Guess the family from special tokens the tokenizer defines and its template."""
    template = chat_template or ""
    if "<|channel|>" in vocab:
        return PROFILES["gpt_oss"]
    if "<|tool_calls_section_begin|>" in vocab:
        return PROFILES["kimi_k2"]
    if "<｜tool▁calls▁begin｜>" in vocab:
        return PROFILES["deepseek_r1"]
    if "<TOOLCALL>" in vocab:
        return PROFILES["nemotron"]
    if "<tool_call>" in vocab and "<function=" in template:
        return PROFILES["qwen3_coder"]
    if "<tool_call>" in vocab and "<think>" in vocab:
        return PROFILES["qwen3"]
    return PROFILES["plain"]
