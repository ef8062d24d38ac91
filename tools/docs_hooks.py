"""mkdocs hook: pages generated from the code, so they cannot drift from it.

``<!-- config: TASK -->`` becomes the table of every setting of that task's config (key, type, default,
choices, meaning: the fields' own declarations); ``<!-- cli -->`` the ``--help`` of every command."""

from __future__ import annotations

import contextlib
import io
import re


def _config_table(task_name: str) -> str:
    from rankopt.config import get_task, settings_of

    task = get_task(task_name)
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for s in settings_of(task.config):
        choices = s.choice_names()
        meaning = s.help + (f" (one of: {', '.join(f'`{c}`' for c in choices)})" if choices else "")
        default = "" if s.default in (None, "") and not isinstance(s.default, (list, dict)) else f"`{s.default}`"
        rows.append(f"| `{s.key}` | {s.type_name} | {default or '—'} | {meaning.replace('|', '/')} |")
    flags = ", ".join(f"`--{f}` → `{k}`" for f, k in task.flags.items())
    return "\n".join(rows) + f"\n\nShort flags of `rankopt {' '.join(task.command)}`: {flags}.\n"


def _cli_help() -> str:
    from rankopt.cli import build_parser

    parser = build_parser()
    out = []

    def walk(p, words):
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            p.print_help()
        out.append(f"### `rankopt {' '.join(words)}`\n\n```text\n{text.getvalue().rstrip()}\n```\n")
        for action in p._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    walk(sub, [*words, name])

    walk(parser, [])
    return "\n".join(out)


def on_page_markdown(markdown: str, **kwargs) -> str:
    markdown = re.sub(r"<!-- config: (\w+) -->", lambda m: _config_table(m.group(1)), markdown)
    return markdown.replace("<!-- cli -->", _cli_help()) if "<!-- cli -->" in markdown else markdown
