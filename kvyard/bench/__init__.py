"""The agentic benchmark (``kvyard bench``): harness-like workloads, a streaming runner, reports.

- ``records``: the workload and results records (msgspec) and their JSONL files;
- ``filler``: deterministic filler text sized in approximate tokens;
- ``workload``: the seeded generator of Claude-Code-like sessions;
- ``traces``: Mooncake (``hash_ids``) and vLLM multi-turn traces as workloads;
- ``conversation``: which messages each request of a session sends (live or scripted replies);
- ``bodies``: a request as an Anthropic Messages, OpenAI Chat or Responses body, or chat-template
  messages;
- ``streams``: SSE framing and one fold per API grammar (reply, usage, errors);
- ``reuse``: the trace's ideal prefix reuse;
- ``prom``: Prometheus counters before/after a run;
- ``runner``: the asyncio HTTP runner;
- ``report``: statistics, markdown tables, ratios and plots;
- ``cli``: the ``kvyard bench`` subcommands.
"""
