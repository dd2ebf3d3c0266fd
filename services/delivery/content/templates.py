"""The Jinja2 environment content is rendered in: sandboxed, strict, escaping HTML only.

Templates and copy come from the catalogue, which marketing edits; recipients and params
come from prospects. The sandbox keeps templates from reaching Python internals, and
data is only ever passed as variables, never rendered as a template itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

Copy = Template | str
"""A compiled copy string: a template, or the text itself when it has no Jinja syntax."""


class RenderError(Exception):
    """Content that cannot be rendered for a command; the send fails for good (no retry).

    ``str()`` names the content, the locale and, for template failures, the ``part``
    (a template file or a copy field such as ``body[1]``) with Jinja's reason, e.g. the
    missing variable.
    """

    def __init__(
        self,
        reason: str,
        *,
        content: str | None = None,
        locale: str | None = None,
        part: str | None = None,
    ) -> None:
        self.reason = reason
        self.content = content
        self.locale = locale
        self.part = part
        where = [
            f"content {content!r}" if content else "",
            f"locale {locale!r}" if locale else "",
            f"in {part}" if part else "",
        ]
        prefix = ", ".join(w for w in where if w)
        super().__init__(f"{prefix}: {reason}" if prefix else reason)


def make_environment(templates: Path | None = None) -> ImmutableSandboxedEnvironment:
    """The sandboxed environment; ``templates`` is the folder of ``*.html.j2``/``*.txt.j2``.

    ``.html.j2`` escapes; ``.txt.j2`` and copy strings (``from_string``) do not: copy is
    plain text, escaped once where an HTML template inserts it.
    """
    return ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(templates) if templates is not None else None,
        autoescape=select_autoescape(
            enabled_extensions=("html.j2", "html", "htm", "xml"),
            disabled_extensions=("txt.j2", "txt"),
            default_for_string=False,
            default=True,
        ),
        undefined=StrictUndefined,
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@dataclass(frozen=True, slots=True)
class Where:
    """What is being rendered, for error messages: content, locale, template or field."""

    content: str
    locale: str
    part: str | None = None

    def error(self, reason: str) -> RenderError:
        return RenderError(reason, content=self.content, locale=self.locale, part=self.part)

    def failed(self, exc: TemplateError) -> RenderError:
        return self.error(f"{type(exc).__name__}: {exc.message or exc!r}")


def compile_copy(env: ImmutableSandboxedEnvironment, source: str) -> Copy:
    """Raises jinja2's TemplateSyntaxError."""
    if "{{" in source or "{%" in source or "{#" in source:
        return env.from_string(source)
    return source


def render_copy(copy: Copy, context: Mapping[str, Any], where: Where) -> str:
    """Render one copy string; a failure names the content, locale and field."""
    if isinstance(copy, str):
        return copy
    try:
        return copy.render(context)
    except TemplateError as exc:
        raise where.failed(exc) from exc


def render_file(
    env: ImmutableSandboxedEnvironment, name: str, context: Mapping[str, Any], where: Where
) -> str:
    """Render the template file ``name``; a failure names it, with Jinja's reason."""
    try:
        return env.get_template(name).render(context)
    except TemplateError as exc:
        raise Where(where.content, where.locale, name).failed(exc) from exc
