#!/usr/bin/env python3
"""Per-token overhead of generating from Python, against the C API's own lmpress_generate.

    python bench_overhead.py [--model DIR] [--tokens 200] [--reps 7] [--threads 1]

Runs greedy generations of --tokens tokens (ignore_eos) with the same prompt and
options in each of these ways, several times each (median of the repetitions):

  C API, no-op callback   lmpress_generate whose token callback only returns true
                          (lmpress._lmpress.generate(collect=False), GIL released)
  Model.complete()        the same call, the callback keeping ids and text in C++
  for tok in generate()   the streaming iterator: each step one lmpress_generation_next
                          on the calling thread (GIL released around it)
  Context.eval + Sampler  a Python loop: eval one token, copy its logits to numpy,
                          sample (what a hand-written decoding loop costs)

and prints a Markdown table: wall-clock tokens/s (prompt included), the
library's own decoding tokens/s where it reports one, and the overhead over
the C API's wall time, in % and in µs per token. The repetitions run the ways
in turn (in reverse order every other time), and the overhead is the median of
each repetition's ratio to the C API's run beside it, so that a machine shared
with other work, whose speed drifts, slows a way and its baseline alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import sys

# Run from python/, the uncompiled source package would shadow the installed one.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import lmpress  # noqa: E402
from lmpress import _lmpress  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.environ.get("LMPRESS_TEST_MODEL", "/work/shared/models/lmp-8m"))
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="compute threads (0: all cores)")
    args = ap.parse_args()

    lmpress.set_threads(args.threads)
    model = lmpress.Model.load(args.model)
    n = args.tokens
    prompt_ids = model.tokenize(args.prompt)
    if len(prompt_ids) + n > model.info.n_ctx_train:
        ap.error(f"--tokens {n}: the prompt ({len(prompt_ids)}) and the tokens exceed the context "
                 f"({model.info.n_ctx_train})")

    def c_noop():
        r = _lmpress.generate(model._m, args.prompt, n, 0, True, None, None, False)
        return r["n_generated"], r["gen_seconds"]

    def complete():
        r = model.complete(args.prompt, n, ignore_eos=True)
        return r.n_generated, r.gen_seconds

    def iterate():
        gen = model.generate(args.prompt, n, ignore_eos=True)
        k = 0
        for _tok in gen:
            k += 1
        return k, gen.result.gen_seconds

    def python_loop():
        sampler = lmpress.Sampler()
        history = list(prompt_ids)
        with model.context() as ctx:
            logits = ctx.eval(history)
            t0 = time.perf_counter()
            for i in range(n):
                tok = sampler.sample(logits)
                history.append(tok)
                if i + 1 < n:
                    logits = ctx.eval([tok])
            return n, time.perf_counter() - t0

    ways = [
        ("C API `lmpress_generate`, no-op callback", c_noop),
        ("`Model.complete()` (ids + text kept in C++)", complete),
        ("`for tok in model.generate()`", iterate),
        ("Python loop: `Context.eval` + `Sampler.sample`", python_loop),
    ]
    # The token sequences agree (greedy): the ways compute the same thing.
    want = model.generate_tokens(args.prompt, n, ignore_eos=True)
    assert [t.id for t in model.generate(args.prompt, n, ignore_eos=True)] == want

    results = {}
    for _ in range(2):  # warm-up
        for _name, fn in ways:
            fn()
    samples: dict = {name: [] for name, _ in ways}
    for rep in range(args.reps):  # interleaved, so that load changes hit every way alike
        for name, fn in (ways if rep % 2 == 0 else ways[::-1]):
            t0 = time.perf_counter()
            k, gen_s = fn()
            samples[name].append((time.perf_counter() - t0, gen_s, k))
    base = samples[ways[0][0]]
    for name, s in samples.items():
        wall = statistics.median(x[0] for x in s)
        gen = statistics.median(x[1] for x in s)
        ratio = statistics.median(x[0] / b[0] for x, b in zip(s, base))
        results[name] = (wall, gen, s[0][2], ratio)

    base_wall = results[ways[0][0]][0]
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores visible; {args.threads or 'all'} compute "
          f"thread{'s' if args.threads != 1 else ''}), Python {platform.python_version()}, lmpress "
          f"{lmpress.__version__}")
    print(f"Model: {args.model} ({model.info.n_params / 1e6:.1f} M params), prompt {len(prompt_ids)} tokens, "
          f"{n} tokens generated greedily, median of {args.reps} runs\n")
    print("| way | wall tok/s | decode tok/s (library's timer) | overhead vs C API (wall) | per token |")
    print("|---|---:|---:|---:|---:|")
    for name, (wall, gen, k, ratio) in results.items():
        over = (ratio - 1) * 100
        per_tok = (ratio - 1) * base_wall / k * 1e6
        print(f"| {name} | {k / wall:,.0f} | {k / gen:,.0f} | {over:+.1f} % | {per_tok:+.1f} µs |")


if __name__ == "__main__":
    main()
