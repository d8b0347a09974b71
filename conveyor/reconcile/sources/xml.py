"""Raw records of a system's XML snapshot file (B2MML ``MaterialLot`` elements, or the children
of the root element), read safely: no entity resolved, nothing fetched, a DTD refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any


def xml_records(path: Path) -> Iterator[tuple[int | None, Any]]:
    """Records of an XML file: one per B2MML ``MaterialLot`` element, else one per child of the
    root element; each a dict of local names (attributes as ``@name``, repeated children as
    lists). No entity is resolved and nothing is fetched from the network."""
    from lxml import etree

    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        tree = etree.parse(str(path), parser)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if isinstance(exc.lineno, int) else None
        yield line, ValueError(f"not well-formed XML: {exc}")
        return
    info: Any = tree.docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        # entities live in a DTD: unexpanded they would read as empty values, so refuse
        yield 1, ValueError("a document type declaration (DTD) is not allowed in a snapshot")
        return
    root = tree.getroot()
    lots = [el for el in root.iter() if isinstance(el.tag, str) and _local(el.tag) == "MaterialLot"]
    elements = lots or [el for el in root if isinstance(el.tag, str)]
    for element in elements:
        number: Any = element.sourceline
        yield (number if isinstance(number, int) else None), _element_dict(element)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _element_dict(element: Any) -> Any:
    children = [c for c in element if isinstance(c.tag, str)]
    if not children and not element.attrib:
        return (element.text or "").strip()
    out: dict[str, Any] = {f"@{_local(k)}": v for k, v in element.attrib.items()}
    for child in children:
        name = _local(child.tag)
        value = _element_dict(child)
        if name in out:
            if not isinstance(out[name], list):
                out[name] = [out[name]]
            out[name].append(value)
        else:
            out[name] = value
    text = (element.text or "").strip()
    if text:
        out["#text"] = text
    return out
