"""Loading the catalogue: ``catalogue.yaml`` + ``templates/`` + ``files/`` under one root.

Everything that can be checked before a send is checked at load, and every problem is
reported with the item and the field: a broken catalogue stops the service at start-up
instead of dead-lettering commands one by one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Template, TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ValidationError

from shared.contract.enums import ContentType

from .model import Brand, CatalogueFile, ContentItem, LocaleText, Strings
from .templates import Copy, compile_copy, make_environment

NOT_COPY = frozenset({"weekdays", "months", "ics_filename", "date_format"})
"""Strings that are data for the layout (dates, a file name), not copy to render."""
CATALOGUE_FILE = "catalogue.yaml"
TEMPLATES_DIR = "templates"
FILES_DIR = "files"
FALLBACK_LOCALES = ("es", "en")


class CatalogueError(ValueError):
    """A catalogue that cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: Path, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{listed}")


@dataclass(frozen=True, slots=True)
class Resolved:
    """An item as one command sees it: the locale found, the variant applied."""

    item: ContentItem
    locale: str
    text: LocaleText
    template: str | None
    variant: str | None


@dataclass(frozen=True, slots=True)
class Words:
    """A locale's strings as a message uses them: ``fixed``, the same in every message
    (text, and the data in NOT_COPY); ``templated``, the copy rendered per message."""

    fixed: Mapping[str, Any]
    templated: tuple[tuple[str, Template], ...]


@dataclass(frozen=True, slots=True)
class Catalogue:
    root: Path
    brand: Brand
    strings: Mapping[str, Strings]
    items: Mapping[str, ContentItem]
    env: ImmutableSandboxedEnvironment
    copies: Mapping[str, Copy]
    """Every copy string of the catalogue, compiled once."""
    words: Mapping[str, Words]
    """``strings`` by locale, split as each message uses them."""

    def __contains__(self, content_id: object) -> bool:
        return content_id in self.items

    def __iter__(self) -> Iterator[ContentItem]:
        return iter(self.items.values())

    def copy(self, source: str) -> Copy:
        compiled = self.copies.get(source)
        return compiled if compiled is not None else compile_copy(self.env, source)

    def resolve(self, content_id: str, locale: str, variant: str | None) -> Resolved | None:
        """The item in ``locale`` (else its language, else es, else en); None if unknown.

        A variant the item does not define changes nothing: journeys may name variants
        that are separate content items.
        """
        item = self.items.get(content_id)
        if item is None:
            return None
        found = next((loc for loc in fallbacks(locale) if loc in item.locales), "es")
        text, template = item.locales[found], item.template_name
        chosen = item.variants.get(variant) if variant else None
        if chosen is not None:
            template = chosen.template or template
            override = chosen.locales.get(found)
            if override is not None:
                text = text.model_copy(update=override.model_dump(exclude_none=True))
        return Resolved(item, found, text, template, variant if chosen else None)

    def strings_for(self, locale: str) -> Strings:
        return next(self.strings[loc] for loc in fallbacks(locale) if loc in self.strings)

    def words_for(self, locale: str) -> Words:
        """``strings_for(locale)`` split as a message uses them."""
        return next(self.words[loc] for loc in fallbacks(locale) if loc in self.words)


def fallbacks(locale: str) -> list[str]:
    """``es-MX`` → es-MX, es, en; ``en_GB`` → en-GB, en, es; ``fr`` → fr, es, en."""
    language, _, region = locale.replace("_", "-").partition("-")
    exact = f"{language.lower()}-{region.upper()}" if region else language.lower()
    return list(dict.fromkeys([exact, language.lower(), *FALLBACK_LOCALES]))


def load_catalogue(root: Path) -> Catalogue:
    """Load and check the catalogue under ``root``; raises CatalogueError with every problem."""
    source = root / CATALOGUE_FILE
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogueError(source, [f"cannot read: {exc}"]) from exc
    try:
        top = CatalogueFile.model_validate(data)
    except ValidationError as exc:
        raise CatalogueError(source, _problems("catalogue", exc)) from exc
    problems: list[str] = []
    items: dict[str, ContentItem] = {}
    for index, raw in enumerate(top.items):
        name = f"item {raw.get('id', f'#{index + 1}')!r}"
        try:
            item = ContentItem.model_validate(raw)
        except ValidationError as exc:
            problems += _problems(name, exc)
            continue
        if item.id in items:
            problems.append(f"{name}: id: defined twice")
        items[item.id] = item
    env = make_environment(root / TEMPLATES_DIR)
    copies: dict[str, Copy] = {}
    for locale, strings in top.strings.items():
        problems += _compile(env, f"strings {locale!r}", strings, copies)
    for item in items.values():
        problems += _check_item(root, env, item, copies)
    if problems:
        raise CatalogueError(source, problems)
    _settle_constants(env, top.brand, copies)
    words = {locale: _words(strings, copies, env) for locale, strings in top.strings.items()}
    return Catalogue(root, top.brand, top.strings, items, env, copies, words)


def _words(
    strings: Strings, copies: Mapping[str, Copy], env: ImmutableSandboxedEnvironment
) -> Words:
    fixed: dict[str, Any] = {}
    templated: list[tuple[str, Template]] = []
    for key, value in strings:
        compiled = value if key in NOT_COPY else copies.get(value) or compile_copy(env, value)
        if isinstance(compiled, Template):
            templated.append((key, compiled))
        else:
            fixed[key] = compiled
    return Words(fixed, tuple(templated))


def _settle_constants(
    env: ImmutableSandboxedEnvironment, brand: Brand, copies: dict[str, Copy]
) -> None:
    """Copy that uses no variable but ``brand`` is the same text in every message:
    rendered here once instead of at each send. One that fails to render is kept as a
    template, so the send reports the failure as it would any other."""
    context = {"brand": brand.model_dump()}
    for source, copy in copies.items():
        if isinstance(copy, str):
            continue
        if meta.find_undeclared_variables(env.parse(source)) <= {"brand"}:
            with contextlib.suppress(TemplateError):
                copies[source] = copy.render(context)


def _problems(name: str, exc: ValidationError) -> list[str]:
    return [
        f"{name}: {'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    ]


def _check_item(
    root: Path, env: ImmutableSandboxedEnvironment, item: ContentItem, copies: dict[str, Copy]
) -> Iterator[str]:
    name = f"item {item.id!r}"
    templates = {"template": item.template_name}
    templates |= {f"variants.{v}.template": s.template for v, s in item.variants.items()}
    for field, template in templates.items():
        if template is None:
            continue
        for suffix in (".html.j2", ".txt.j2"):
            try:
                env.get_template(template + suffix)
            except TemplateError as exc:
                yield f"{name}: {field}: {template}{suffix}: {type(exc).__name__}: {exc}"
    files = {"pdf.file": item.pdf.file if item.pdf else None}
    files |= {f"locales.{loc}.file": text.file for loc, text in item.locales.items()}
    for field, file in files.items():
        if file is None:
            continue
        if item.type is not ContentType.PDF:
            yield f"{name}: {field}: only a pdf has a file"
        elif not _is_pdf(root / FILES_DIR / file):
            yield f"{name}: {field}: {FILES_DIR}/{file} is missing or not a PDF"
    video = item.video.file if item.video else None
    if video is not None and not _is_video(root / FILES_DIR / video):
        yield f"{name}: video.file: {FILES_DIR}/{video} is missing or not a WebM or MP4 video"
    for locale, text in item.locales.items():
        yield from _compile(env, f"{name}: locales.{locale}", text, copies)
        if item.type is ContentType.EMAIL and text.cta and not (text.url or item.url):
            yield f"{name}: locales.{locale}.cta: a button needs a url (here or on the item)"
    for variant, chosen in item.variants.items():
        for locale, override in chosen.locales.items():
            if locale not in item.locales:
                yield f"{name}: variants.{variant}.locales.{locale}: not a locale of the item"
            yield from _compile(
                env, f"{name}: variants.{variant}.locales.{locale}", override, copies
            )


def _compile(
    env: ImmutableSandboxedEnvironment, name: str, model: BaseModel, copies: dict[str, Copy]
) -> Iterator[str]:
    for field, value in model:
        for path, source in _strings(field, value):
            try:
                copies[source] = compile_copy(env, source)
            except TemplateError as exc:
                yield f"{name}.{path}: {type(exc).__name__}: {exc}"


def _strings(path: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for index, element in enumerate(value):
            yield from _strings(f"{path}[{index}]", element)
    elif isinstance(value, BaseModel):
        for field, inner in value:
            yield from _strings(f"{path}.{field}", inner)


def _is_pdf(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(5) == b"%PDF-"
    except OSError:
        return False


def _is_video(path: Path) -> bool:
    """WebM (an EBML header) or MP4 (an ``ftyp`` box first)."""
    try:
        with path.open("rb") as file:
            head = file.read(8)
    except OSError:
        return False
    return head[:4] == b"\x1a\x45\xdf\xa3" or head[4:8] == b"ftyp"
