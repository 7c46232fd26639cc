"""Rendering the pages: the Jinja2 environment, the page's language, and one ``page()`` answer
that every handler returns (no-store, no referrer, the language cookie when it was switched)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig

from scheduler.web import texts

HERE = Path(__file__).parent
LANG_COOKIE = "lang"
# token-bearing and personal pages: never cached, never leaked through the Referer
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["long_day"] = texts.long_day
    env.globals["clock"] = texts.clock
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(env))


def lang_of(request: Request[Any, Any, Any]) -> str:
    """The page's language: ``?lang=`` (the switch), else the cookie it left, else German."""
    asked = request.query_params.get("lang")
    if asked in texts.LANGUAGES:
        return str(asked)
    kept = request.cookies.get(LANG_COOKIE)
    return kept if kept in texts.LANGUAGES else "de"


def switch_url(request: Request[Any, Any, Any], lang: str, to: str | None = None) -> str:
    """This page in the other language: a page got by GET with its other query parameters
    kept; a form's answer (a POST) by ``to``, the GET of what it shows, else by the form's
    path, whose GET leads back to where the form was."""
    other = "en" if lang == "de" else "de"
    if to is not None:
        path, _, query_text = to.partition("?")
        query = dict(parse_qsl(query_text))
    elif request.method == "GET":
        path = request.url.path
        query = {k: v for k, v in request.query_params.items() if k != "lang"}
    else:
        path, query = request.url.path, {}
    query["lang"] = other
    return f"{path}?{urlencode(query)}"


def page(
    request: Request[Any, Any, Any],
    template: str,
    /,
    *,
    status: int = 200,
    title_key: str | None = None,
    title: str | None = None,
    switch_to: str | None = None,
    **context: Any,
) -> Template:
    lang = lang_of(request)
    t = partial(texts.text, lang)
    heading = title if title is not None else t(title_key) if title_key else t("site")
    answer = Template(
        template_name=template,
        context={
            "lang": lang,
            "t": t,
            "title": heading,
            "switch_url": switch_url(request, lang, switch_to),
            "status_text": texts.STATUS[lang],
            **context,
        },
        status_code=status,
        headers=HEADERS,
        media_type="text/html",
    )
    if request.query_params.get("lang") in texts.LANGUAGES:
        answer.cookies.append(
            Cookie(key=LANG_COOKIE, value=lang, max_age=365 * 86400, samesite="lax", path="/")
        )
    return answer


def see_other(path: str, **query: str) -> Response[Any]:
    """Post/Redirect/Get: every form answers with a 303 to the page that shows the result."""
    target = f"{path}?{urlencode(query)}" if query else path
    return Redirect(target, status_code=303, headers=HEADERS)
