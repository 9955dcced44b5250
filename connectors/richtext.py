"""Rich-text formats that are not HTML, rendered to HTML so that they go through the one
extractor and become the same blocks (headings, paragraphs, items, code, tables) as any page.

Every text value is escaped: rich text is CMS data, never markup we trust.
"""

from __future__ import annotations

from html import escape
from typing import Any

from markdown_it import MarkdownIt

_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown_html(text: str) -> str:
    """Markdown (Strapi "Rich text (Markdown)", Contentful long text, generic sources)."""
    return _markdown.render(text)


def strapi_blocks_html(blocks: list[Any]) -> str:
    """Strapi 5 "Blocks": a list of nodes such as paragraph, heading (level), list (format,
    list-item children), quote, code, image, link (url) and text leaves."""
    return "".join(_strapi(node) for node in blocks)


def _strapi(node: Any) -> str:
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        return escape(str(node.get("text", "")))
    inner = "".join(_strapi(child) for child in node.get("children") or [])
    if kind == "heading":
        level = node.get("level") if node.get("level") in (1, 2, 3, 4, 5, 6) else 2
        return f"<h{level}>{inner}</h{level}>"
    if kind == "list":
        tag = "ol" if node.get("format") == "ordered" else "ul"
        return f"<{tag}>{inner}</{tag}>"
    if kind == "image":
        return f"<p>{escape(str((node.get('image') or {}).get('alternativeText') or ''))}</p>"
    tag = {"paragraph": "p", "list-item": "li", "quote": "blockquote", "code": "pre", "link": "span"}.get(kind, "p")
    return f"<{tag}>{inner}</{tag}>"


_CONTENTFUL_TAGS = {
    "document": "div", "paragraph": "p", "heading-1": "h1", "heading-2": "h2", "heading-3": "h3",
    "heading-4": "h4", "heading-5": "h5", "heading-6": "h6", "unordered-list": "ul", "ordered-list": "ol",
    "list-item": "li", "blockquote": "blockquote", "table": "table", "table-row": "tr",
    "table-cell": "td", "table-header-cell": "th", "hyperlink": "span",
}


def contentful_html(document: dict[str, Any]) -> str:
    """Contentful Rich Text (nodeType document → paragraph, heading-N, lists, quote, table,
    hyperlink, text). Embedded entries and assets are links to other entries: skipped."""
    return _contentful(document)


def _contentful(node: Any) -> str:
    if not isinstance(node, dict):
        return ""
    kind = node.get("nodeType")
    if kind == "text":
        text = escape(str(node.get("value", "")))
        code = any(isinstance(m, dict) and m.get("type") == "code" for m in node.get("marks") or [])
        return f"<code>{text}</code>" if code else text
    if kind == "hr":
        return "<hr>"
    tag = _CONTENTFUL_TAGS.get(kind)
    if tag is None:                                  # embedded-entry-*, entry-hyperlink, unknown
        return ""
    inner = "".join(_contentful(child) for child in node.get("content") or [])
    return f"<{tag}>{inner}</{tag}>"


def fields_html(fields: dict[str, Any], names: list[str]) -> str:
    """The named body fields of a document, in order, as one HTML page: Strapi Blocks,
    Contentful Rich Text and Markdown strings each through their renderer; others skipped."""
    parts = []
    for name in names:
        value = fields.get(name)
        if isinstance(value, list) and all(isinstance(v, dict) and "type" in v for v in value):
            parts.append(strapi_blocks_html(value))
        elif isinstance(value, dict) and value.get("nodeType") == "document":
            parts.append(contentful_html(value))
        elif isinstance(value, str):
            parts.append(markdown_html(value))
    return "\n".join(parts)
