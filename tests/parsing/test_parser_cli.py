"""`kvyard parse` replays a recorded raw output (JSON lines) through a parser and prints events."""

import json
import subprocess
import sys

LINES = ['{"text": "<think>look"}', '{"text": "</think><tool_call>\\n{\\"name\\": \\"ls\\", "}', '{"text": "\\"arguments\\": {}}\\n</tool_call>ok"}']


def run(*args, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kvyard.cli", "parse", *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_parse_prints_events_in_order():
    proc = run("--parser", "qwen3", stdin="\n".join(LINES) + "\n")
    assert proc.returncode == 0, proc.stderr
    types = [json.loads(line)["type"] for line in proc.stdout.splitlines()]
    assert types.index("reasoning_delta") < types.index("tool_call_complete") < types.index("text_delta")
    complete = next(json.loads(line) for line in proc.stdout.splitlines() if '"tool_call_complete"' in line)
    assert complete["name"] == "ls" and complete["arguments"] == {}


def test_unknown_parser_is_a_clear_error():
    proc = run("--parser", "nope", stdin="")
    assert proc.returncode == 2 and "nope" in proc.stderr
