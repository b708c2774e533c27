"""``{% cache key %}…{% endcache %}``: a template fragment rendered once per distinct key, then reused.

A digest run renders the same papers for many readers: a paper's title, authors and links come out the same in
every email that shows them. Templates wrap such parts in ``{% cache %}`` with a key made of *every value the
body reads* (``{% cache item.title, item.link %}``), so equal keys mean equal output and nothing of one reader
(names, numbering, signed links) can reach another reader's email through the cache. Keys compare with ``==``,
so give each key value one type (``1``, ``1.0`` and ``True`` are one key; so are ``"x"`` and ``Markup("x")``).

Each ``{% cache %}`` tag is a site of its own (a number fixed when the template is compiled), so two tags with
equal keys, or two compilations of one file (the pre-inlined copy and the file itself), never share output.
The store belongs to the Environment, hence to one Renderer, and is bounded: the oldest fragments go first.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.parser import Parser

MAX_FRAGMENTS = 20_000  # 1,000 real digests leave ~9,400 fragments (6.5 MB): room for two such runs
_LOOKUP = "{% cache %} lookup"  # filter names no template can spell: only the tag reaches them
_KEEP = "{% cache %} keep"


class FragmentCache(Extension):
    """Compiles ``{% cache key %}body{% endcache %}`` to

        found = lookup(site, key)
        buffer = []
        if not found: <render body into buffer>
        yield keep(concat(buffer), site, key, found)

    with lookup and keep as filters. Jinja calls a filter directly, where a call block goes through
    Context.call and a new Macro every time, and yields a filter block's result as it is, where ``{{ found }}``
    would pass every fragment through ``finalize`` (a scan of some KB) and ``escape`` (a copy) once more.
    """

    tags = {"cache"}

    def __init__(self, environment: jinja2.Environment) -> None:
        super().__init__(environment)
        self.fragments: dict[tuple[int, Hashable], str] = {}
        self._sites = itertools.count()
        environment.filters[_LOOKUP] = self._lookup
        environment.filters[_KEEP] = self._keep

    def parse(self, parser: Parser) -> list[nodes.Node]:
        lineno = next(parser.stream).lineno
        site = nodes.Const(next(self._sites))
        key, found = parser.free_identifier(lineno), parser.free_identifier(lineno)
        assign_key = nodes.Assign(key, parser.parse_tuple(), lineno=lineno)
        body = parser.parse_statements(("name:endcache",), drop_needle=True)
        return [
            assign_key,
            nodes.Assign(found, nodes.Filter(site, _LOOKUP, [key], [], None, None), lineno=lineno),
            nodes.FilterBlock([nodes.If(nodes.Not(found), body, [], [])], nodes.Filter(None, _KEEP, [site, key, found], [], None, None), lineno=lineno),
        ]

    def _lookup(self, site: int, key: Hashable) -> str | None:
        return self.fragments.get((site, key))

    def _keep(self, rendered: str, site: int, key: Hashable, found: str | None) -> str:
        """The fragment to print: the one found, or the body just rendered, kept for the next reader.

        Under autoescape ``rendered`` is Markup (the body escaped its own values), so it prints as it is.
        """
        if found:
            return found
        fragments = self.fragments
        fragments[site, key] = rendered
        if len(fragments) > MAX_FRAGMENTS:
            del fragments[next(iter(fragments))]  # dicts keep insertion order: this is the oldest
        return rendered
