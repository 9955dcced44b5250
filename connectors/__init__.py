"""One folder per CMS. Adding a CMS means adding its folder and one line to TYPES."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ragsync.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx

    from connectors.base import Connector
    from ragsync.source import SourceConfig

TYPES = {
    "contentful": "connectors.contentful:ContentfulConnector",
    "files": "connectors.files:FilesConnector",
    "generic": "connectors.generic:GenericConnector",
    "ghost": "connectors.ghost:GhostConnector",
    "strapi": "connectors.strapi:StrapiConnector",
    "wordpress": "connectors.wordpress:WordPressConnector",
}


def connector_class(type_: str) -> type[Connector]:
    try:
        module, _, name = TYPES[type_].partition(":")
    except KeyError:
        raise ConfigError(f"unknown source type {type_!r} (known: {', '.join(sorted(TYPES))})") from None
    return getattr(importlib.import_module(module), name)


def open_connectors(sources: Mapping[str, SourceConfig], http: httpx.Client) -> dict[str, Connector]:
    """A connector for each configured source, by name."""
    return {name: connector_class(source.type)(source, http) for name, source in sources.items()}
