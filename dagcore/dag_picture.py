"""A picture of a piece of a room's DAG, drawn by the server as SVG (Politburo's DAG inspector
and event page; no JavaScript needed). Pure: nodes in, layout and SVG text out.

Layout (:func:`layout`): each event is put on a layer one below the deepest of its prev
events in the picture (a longest-path layering of the prev-event graph, so every prev edge
points to an older layer, whatever ``depth`` claims); within a layer events are ordered by
the mean position of their prev events on the layer before (the barycentre heuristic, one
sweep), ties by arrival. The newest layer is drawn at the top.

Drawing (:func:`render_svg`): prev edges solid, auth edges (``show_auth``) dashed and thin;
rejected events red, soft-failed orange, outliers with a dashed outline, redacted events
struck through, forward extremities ringed; edges to events outside the picture end in a
short stub. Every node links to its event page. Colours are presentation attributes, not a
``<style>`` block, so a strict Content-Security-Policy does not strip them.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

ROW_HEIGHT = 64
COLUMN_WIDTH = 180
NODE_WIDTH = 160
NODE_HEIGHT = 36
MARGIN = 24

STATUS_COLOURS: Mapping[str, tuple[str, str]] = {
    # status -> (fill, stroke)
    "accepted": ("#eef4ff", "#3b5b92"),
    "rejected": ("#ffe3e3", "#c0392b"),
    "soft_failed": ("#fff0dc", "#e67e22"),
    "outlier": ("#f4f4f4", "#777777"),
}


@dataclass(frozen=True, slots=True)
class PictureNode:
    event_id: str
    #: The first line of the node (the event type), the second (sender or state key).
    label: str
    sublabel: str
    depth: int
    #: Arrival order (ties in the layout).
    order: int
    prev_ids: tuple[str, ...]
    auth_ids: tuple[str, ...] = ()
    #: ``accepted``, ``rejected``, ``soft_failed`` or ``outlier``.
    status: str = "accepted"
    redacted: bool = False
    extremity: bool = False
    href: str = ""
    title: str = ""
    #: Drawn with a heavier outline (the event a page is about).
    focus: bool = False


@dataclass(frozen=True, slots=True)
class Layout:
    #: Layers from the oldest (0) up; each a list of event IDs left to right.
    layers: list[list[str]]
    #: ``event ID -> (layer, slot)``.
    positions: dict[str, tuple[int, int]]

    @property
    def width(self) -> int:
        return max((len(layer) for layer in self.layers), default=0)


def layout(nodes: Sequence[PictureNode], *, include_auth: bool = False) -> Layout:
    """Layers by longest path over the prev edges inside the picture (and the auth edges with
    ``include_auth``: an event's ancestry, where auth events are ancestors too), barycentre order."""
    by_id = {n.event_id: n for n in nodes}
    prevs = {
        n.event_id: [
            p
            for p in dict.fromkeys([*n.prev_ids, *(n.auth_ids if include_auth else ())])
            if p in by_id and p != n.event_id
        ]
        for n in nodes
    }
    children: dict[str, list[str]] = {}
    waiting: dict[str, int] = {}
    for eid, ps in prevs.items():
        waiting[eid] = len(ps)
        for p in ps:
            children.setdefault(p, []).append(eid)
    ready = [(by_id[e].depth, by_id[e].order, e) for e, w in waiting.items() if w == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, _, eid = heapq.heappop(ready)
        order.append(eid)
        for c in children.get(eid, ()):
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, (by_id[c].depth, by_id[c].order, c))
    # A cycle (only a corrupt store has one): the rest by depth, their prev edges ignored.
    placed = set(order)
    order += sorted((e for e in by_id if e not in placed), key=lambda e: (by_id[e].depth, by_id[e].order))
    layer_of: dict[str, int] = {}
    for eid in order:
        known = [layer_of[p] for p in prevs[eid] if p in layer_of]
        layer_of[eid] = max(known) + 1 if known else 0
    count = max(layer_of.values(), default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(count)]
    for eid in sorted(by_id, key=lambda e: by_id[e].order):
        layers[layer_of[eid]].append(eid)
    positions: dict[str, tuple[int, int]] = {}
    for index, members in enumerate(layers):

        def barycentre(eid: str) -> tuple[float, int]:
            slots = [positions[p][1] for p in prevs[eid] if p in positions]
            return (sum(slots) / len(slots) if slots else float("inf"), by_id[eid].order)

        members.sort(key=barycentre)
        for slot, eid in enumerate(members):
            positions[eid] = (index, slot)
    return Layout(layers, positions)


def _centre(lay: Layout, eid: str) -> tuple[float, float]:
    layer, slot = lay.positions[eid]
    width = lay.width
    offset = (width - len(lay.layers[layer])) * COLUMN_WIDTH / 2  # centre short layers
    x = MARGIN + offset + slot * COLUMN_WIDTH + NODE_WIDTH / 2
    y = MARGIN + (len(lay.layers) - 1 - layer) * ROW_HEIGHT + NODE_HEIGHT / 2  # newest on top
    return x, y


def _short(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_svg(nodes: Sequence[PictureNode], *, show_auth: bool = False, lay: Layout | None = None) -> str:
    """The picture as an ``<svg>`` element (text)."""
    lay = lay or layout(nodes)
    by_id = {n.event_id: n for n in nodes}
    width = MARGIN * 2 + max(lay.width, 1) * COLUMN_WIDTH
    height = MARGIN * 2 + max(len(lay.layers), 1) * ROW_HEIGHT
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="dag" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        "<title>Event graph: newest at the top; arrows point to prev events</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    edges: list[str] = []
    for n in nodes:
        x1, y1 = _centre(lay, n.event_id)
        kinds = [("prev", p) for p in n.prev_ids] + ([("auth", a) for a in n.auth_ids] if show_auth else [])
        for kind, target in kinds:
            attrs = (
                'stroke="#555" stroke-width="1.4"'
                if kind == "prev"
                else 'stroke="#8e44ad" stroke-width="0.8" stroke-dasharray="4 3" stroke-opacity="0.7"'
            )
            cls = f'class="edge {kind}" data-from="{escape(n.event_id)}" data-to="{escape(target)}"'
            if target in by_id:
                x2, y2 = _centre(lay, target)
                edges.append(
                    f'<line {cls} x1="{x1:.0f}" y1="{y1 + NODE_HEIGHT / 2:.0f}" x2="{x2:.0f}" '
                    f'y2="{y2 - NODE_HEIGHT / 2:.0f}" {attrs} marker-end="url(#arrow)"/>'
                )
            elif kind == "prev":
                # Outside the picture (older page, or not held): a stub.
                edges.append(
                    f'<line {cls} x1="{x1:.0f}" y1="{y1 + NODE_HEIGHT / 2:.0f}" x2="{x1:.0f}" '
                    f'y2="{y1 + NODE_HEIGHT / 2 + 14:.0f}" {attrs} stroke-dasharray="2 2"/>'
                )
    out += edges
    for n in sorted(nodes, key=lambda n: n.order):
        x, y = _centre(lay, n.event_id)
        left, top = x - NODE_WIDTH / 2, y - NODE_HEIGHT / 2
        fill, stroke = STATUS_COLOURS.get(n.status, STATUS_COLOURS["accepted"])
        dash = ' stroke-dasharray="5 3"' if n.status == "outlier" else ""
        classes = " ".join(
            c for c in ("node", n.status, "redacted" if n.redacted else "", "extremity" if n.extremity else "",
                        "focus" if n.focus else "") if c
        )  # fmt: skip
        out.append(f'<a href="{escape(n.href)}" class="{classes}" data-event-id="{escape(n.event_id)}">')
        out.append(f"<title>{escape(n.title or n.event_id)}</title>")
        if n.extremity:
            out.append(
                f'<rect class="ring" x="{left - 5:.0f}" y="{top - 5:.0f}" width="{NODE_WIDTH + 10}" '
                f'height="{NODE_HEIGHT + 10}" rx="12" fill="none" stroke="#27ae60" stroke-width="2.5"/>'
            )
        out.append(
            f'<rect x="{left:.0f}" y="{top:.0f}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="7" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{3 if n.focus else 1.5}"{dash}/>'
        )
        struck = ' text-decoration="line-through"' if n.redacted else ""
        out.append(
            f'<text x="{x:.0f}" y="{y - 3:.0f}" text-anchor="middle" fill="#111"{struck}>{escape(_short(n.label))}</text>'
        )
        out.append(
            f'<text x="{x:.0f}" y="{y + 11:.0f}" text-anchor="middle" fill="#555" font-size="9">'
            f"{escape(_short(n.sublabel, 28))}</text>"
        )
        if n.redacted:
            out.append(
                f'<line class="strike" x1="{left + 8:.0f}" y1="{y - 6:.0f}" x2="{left + NODE_WIDTH - 8:.0f}" '
                f'y2="{y - 6:.0f}" stroke="#111" stroke-width="1"/>'
            )
        out.append("</a>")
    out.append("</svg>")
    return "\n".join(out)
