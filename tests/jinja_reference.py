#!/usr/bin/env python3
"""Renders chat templates with Jinja2 configured as transformers configures it
(transformers/utils/chat_template_utils.py): ImmutableSandboxedEnvironment with
trim_blocks and lstrip_blocks, the loopcontrols extension and the {% generation %}
tag, a `tojson` filter that is json.dumps (no HTML escaping, ensure_ascii off),
and the raise_exception and strftime_now globals. strftime_now reads a fixed
time from the cases file so that the output is reproducible.

Usage: jinja_reference.py CASES.json TEMPLATE.jinja...
CASES.json: {"now": "YYYY-MM-DDTHH:MM:SS", "bos_token": ..., "eos_token": ..., "cases": [{"name": ...,
"messages": [...], "add_generation_prompt": BOOL, "tools": [...] (optional)}]}. Each case is rendered
with the variables transformers' apply_chat_template passes: messages, tools (None when absent),
documents (None), add_generation_prompt and the special tokens.
Prints {"<template file name>": {"<case name>": {"output": TEXT} | {"error": MESSAGE,
"kind": "raised" | "compile" | "render"}}} as JSON.
"""
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationTag(jinja2.ext.Extension):
    # transformers' AssistantTracker: {% generation %}...{% endgeneration %}
    # marks the assistant's tokens and renders its body unchanged.
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()



def make_env(now):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return now.strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    env = make_env(datetime.datetime.fromisoformat(spec["now"]))
    results = {}
    for path in sys.argv[2:]:
        name = os.path.basename(path)
        per_case = results[name] = {}
        with open(path, encoding="utf-8", newline="") as f:
            source = f.read()
        try:
            template = env.from_string(source)
        except Exception as e:  # noqa: BLE001 -- any refusal is recorded, not fatal
            for case in spec["cases"]:
                per_case[case["name"]] = {"error": f"{type(e).__name__}: {e}", "kind": "compile"}
            continue
        for case in spec["cases"]:
            try:
                context = {"messages": case["messages"], "tools": case.get("tools"), "documents": None,
                           "add_generation_prompt": case["add_generation_prompt"],
                           "bos_token": spec["bos_token"], "eos_token": spec["eos_token"]}
                per_case[case["name"]] = {"output": template.render(**context)}
            except jinja2.exceptions.TemplateError as e:
                # raise_exception raises the base class itself; Jinja2's own
                # errors (undefined, syntax, security) are subclasses.
                kind = "raised" if type(e) is jinja2.exceptions.TemplateError else "render"
                per_case[case["name"]] = {"error": str(e) if kind == "raised" else f"{type(e).__name__}: {e}",
                                          "kind": kind}
            except Exception as e:  # noqa: BLE001
                per_case[case["name"]] = {"error": f"{type(e).__name__}: {e}", "kind": "render"}
    json.dump(results, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
