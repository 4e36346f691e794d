"""A byte-level BPE tokenizer for random-weight test models, trained in about a second.

The tokenizer is trained with the ``tokenizers`` library on a corpus generated here from fixed
word lists and sentence templates (English-ish prose, code, JSON tool calls, numbers), so it
needs no download and is the same on every machine: the corpus comes from a fixed-seed
``random.Random`` and BPE training is deterministic for a given corpus. It does not depend on
the model seed, so every random model of one vocabulary size shares one tokenizer.

Layout of the vocabulary (``vocab_size`` ids in all, every id decodable):

* ids ``0 .. 255``: the 256 byte-level symbols, so any text encodes (no unknown token);
* then the learned BPE merges;
* then the chat / reasoning / tool-call tokens in ``SPECIAL_TOKENS`` (each exactly one id;
  ``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>`` are special, the ``<think>`` and tool tokens
  are added but not special, as in Qwen3, so that ``skip_special_tokens`` keeps them);
* then ``<|reserved_N|>`` special tokens filling up to ``vocab_size`` if the corpus ran out of
  merges, so that the model's embedding size equals the tokenizer's length exactly.

The chat template is Qwen3's (system prompt with tools in ``<tools>``, reasoning in
``<think>…</think>`` kept only after the last user query, ``<tool_call>{json}</tool_call>``,
tool results as ``<tool_response>`` inside a user turn, ``add_generation_prompt`` and
``enable_thinking``), plus one addition: content given as a list of text parts is joined.
Training cost: O(corpus size × merges); about 1 s for the default 4096 ids on one core.
"""

from __future__ import annotations

import random

CHAT_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
"""Special tokens (``special=True``): dropped by ``skip_special_tokens``."""

REASONING_TOOL_TOKENS = (
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)
"""Added, non-special tokens (one id each), as Qwen3 declares them."""

SPECIAL_TOKENS = CHAT_TOKENS + REASONING_TOOL_TOKENS
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
MIN_VOCAB_SIZE = 512
_CORPUS_SEED = 20261101
_CORPUS_LINES = 6000

# Qwen3's chat template (as published with Qwen3 models), plus joining list-of-parts content.
CHAT_TEMPLATE = r"""{%- macro render_content(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- elif content is iterable and content is not mapping -%}
        {%- for part in content -%}
            {%- if part is mapping and part.type == 'text' -%}
                {{- part.text -}}
            {%- elif part is string -%}
                {{- part -}}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro -%}
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- render_content(messages[0].content) + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + render_content(messages[0].content) + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- set text = render_content(message.content) %}
    {%- if ns.multi_step_tool and message.role == "user" and not(text.startswith('<tool_response>') and text.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- set content = render_content(message.content) %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}
"""

def _words(text: str) -> list[str]:
    return text.split()


_NAMES = _words("Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Oscar Peggy Trent Victor Wendy")
_CITIES = _words(
    "Paris London Berlin Madrid Rome Vienna Prague Warsaw Lisbon Dublin Oslo Tokyo Seoul Lima "
    "Cairo Nairobi Sydney Toronto Chicago Boston Denver Austin Seattle Mumbai Delhi Beijing"
)
_NOUNS = _words(
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war "
    "history party result change morning reason research girl guy moment air teacher force "
    "education file function request server model token cache router engine prompt message "
    "user assistant tool call response error test build config weather answer capital river "
    "mountain language computer network memory process thread queue database table column"
)
_VERBS = _words(
    "is was has made said went took came saw knew got gave found thought told became left felt "
    "brought began kept held wrote stood heard let meant set met ran paid sat spoke lay led read "
    "grew lost fell sent built understood drew broke spent cut rose drove bought wore chose "
    "returns calls reads writes sends builds checks runs loads stores routes parses renders"
)
_ADJECTIVES = _words(
    "good new first last long great little own other old right big high different small large "
    "next early young important few public bad same able free sure clear full special easy "
    "strong certain whole real best better true late hard major simple quick quiet bright warm "
    "cold empty ready open final local remote fast slow correct wrong"
)
_ADVERBS = _words("quickly slowly carefully often never always soon again already together today here there")
_PREPS = _words("in on at from with about into over after before under between through during without")
_CODE_LINES = (
    "def {n}(self, {m}):",
    "    return {m} + {k}",
    "import {n}",
    "from {n} import {m}",
    "for {m} in range({k}):",
    "if {m} is None:",
    "    raise ValueError(\"{n} must be positive\")",
    "class {N}({N}Base):",
    "{m} = [{k}, {k}, {k}]",
    "print(f\"{{{m}}} = {k}\")",
    "const {m} = await fetch(\"/v1/{n}\");",
    "SELECT {m} FROM {n} WHERE id = {k};",
)


def corpus(lines: int = _CORPUS_LINES) -> list[str]:
    """The fixed training corpus: ``lines`` strings of prose, dialogue, code and JSON."""
    rng = random.Random(_CORPUS_SEED)
    out: list[str] = []
    for _ in range(lines):
        kind = rng.random()
        if kind < 0.6:
            out.append(_sentence(rng))
        elif kind < 0.75:
            out.append(_code_line(rng))
        elif kind < 0.9:
            out.append(_tool_json(rng))
        else:
            out.append(_dialogue(rng))
    return out


_ONSETS = _words("b bl br c ch cl cr d dr f fl fr g gl gr h j k l m n p pl pr qu r s sh sk sl sp st str t th tr v w z")
_VOWELS = _words("a e i o u ai ea ee ie oo ou y")
_CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "nt", "st", "ng", "ck", "rt", "sh", "ss"]
_SUFFIXES = ["", "", "", "s", "ed", "ing", "er", "ly", "tion", "ment", "ness", "able"]


def _pseudo_word(rng: random.Random) -> str:
    """An English-looking made-up word, so BPE finds merges beyond the fixed word lists."""
    syllables = "".join(
        rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(rng.randint(1, 3))
    )
    return syllables + rng.choice(_SUFFIXES)


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_NAMES + ["The", "A", "This", "Every", "Our", "My"])]
    for _ in range(rng.randint(3, 14)):
        pick = rng.random()
        if pick < 0.12:
            words.append(_pseudo_word(rng))
        elif pick < 0.35:
            words.append(rng.choice(_NOUNS))
        elif pick < 0.55:
            words.append(rng.choice(_VERBS))
        elif pick < 0.7:
            words.append(rng.choice(_ADJECTIVES))
        elif pick < 0.8:
            words.append(rng.choice(_PREPS))
        elif pick < 0.85:
            words.append(rng.choice(_ADVERBS))
        elif pick < 0.92:
            words.append(rng.choice(_CITIES))
        else:
            words.append(str(rng.randint(0, 2030)))
    end = rng.choice([".", ".", ".", "?", "!", ",", ";", ":"])
    return " ".join(words) + end


def _code_line(rng: random.Random) -> str:
    noun, other = rng.choice(_NOUNS), rng.choice(_NOUNS)
    return rng.choice(_CODE_LINES).format(n=noun, m=other, N=noun.capitalize(), k=rng.randint(0, 999))


def _tool_json(rng: random.Random) -> str:
    name = f"get_{rng.choice(_NOUNS)}"
    return (
        f'{{"name": "{name}", "arguments": {{"{rng.choice(_NOUNS)}": "{rng.choice(_CITIES)}", '
        f'"limit": {rng.randint(1, 100)}, "verbose": {rng.choice(["true", "false"])}}}}}'
    )


def _dialogue(rng: random.Random) -> str:
    name = rng.choice(_NAMES)
    return f"{name}: What is the {rng.choice(_NOUNS)} of {rng.choice(_CITIES)}?\nAssistant: {_sentence(rng)}"


def build_tokenizer(vocab_size: int = 4096, *, model_max_length: int = 4096):
    """Train the tokenizer and wrap it for transformers (``PreTrainedTokenizerFast``).

    Returns a tokenizer whose ``len()`` equals ``vocab_size`` exactly, with ``CHAT_TEMPLATE``,
    ``eos_token`` ``<|im_end|>`` and ``pad_token`` ``<|endoftext|>``; no BOS is added.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size={vocab_size} is too small; use at least {MIN_VOCAB_SIZE}")
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHAT_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TOOL_TOKENS])
    missing = vocab_size - tok.get_vocab_size(with_added_tokens=True)
    if missing > 0:
        tok.add_special_tokens(
            [AddedToken(f"<|reserved_{i}|>", special=True, normalized=False) for i in range(missing)]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    if len(fast) != vocab_size:
        raise RuntimeError(f"tokenizer has {len(fast)} ids, expected {vocab_size}")
    return fast
