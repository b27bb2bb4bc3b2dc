"""``dagcore.dag_picture``: the layered layout of a DAG piece and its SVG drawing."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from dagcore.dag_picture import PictureNode, layout, render_svg

SVG = "{http://www.w3.org/2000/svg}"


def node(eid: str, depth: int, prevs: tuple[str, ...] = (), **kw: object) -> PictureNode:
    return PictureNode(event_id=eid, label=f"type {eid}", sublabel="@a:x", depth=depth, order=depth * 10 + len(eid),
                       prev_ids=prevs, href=f"/event/{eid}", **kw)  # type: ignore[arg-type]  # fmt: skip


def diamond() -> list[PictureNode]:
    return [
        node("A", 1),
        node("B", 2, ("A",), auth_ids=("A",)),
        node("C", 2, ("A",), status="rejected"),
        node("D", 3, ("B", "C"), extremity=True, redacted=True),
        node("E", 3, ("B", "$older"), status="soft_failed", extremity=True),
        node("O", 2, (), status="outlier"),
    ]


def test_every_prev_edge_points_to_an_older_layer() -> None:
    nodes = diamond()
    lay = layout(nodes)
    for n in nodes:
        for p in n.prev_ids:
            if p in lay.positions:
                assert lay.positions[p][0] < lay.positions[n.event_id][0]
    assert lay.positions["A"][0] == 0 and lay.positions["D"][0] == 2
    # Each event sits in exactly one slot.
    assert sorted(e for layer in lay.layers for e in layer) == sorted(n.event_id for n in nodes)


def test_a_lying_depth_does_not_put_a_child_above_its_parent() -> None:
    lay = layout([node("A", 50), node("B", 2, ("A",))])
    assert lay.positions["B"][0] > lay.positions["A"][0]


def test_a_cycle_in_a_corrupt_store_still_lays_out() -> None:
    lay = layout([node("A", 1, ("B",)), node("B", 2, ("A",))])
    assert set(lay.positions) == {"A", "B"}


def test_the_svg_parses_and_marks_status_extremities_and_edges() -> None:
    svg = render_svg(diamond(), show_auth=False)
    root = ET.fromstring(svg)
    links = {a.get("data-event-id"): a for a in root.iter(f"{SVG}a")}
    assert set(links) == {"A", "B", "C", "D", "E", "O"}
    assert links["D"].get("href") == "/event/D"
    assert "rejected" in (links["C"].get("class") or "")
    assert "soft_failed" in (links["E"].get("class") or "")
    assert "outlier" in (links["O"].get("class") or "")
    assert "redacted" in (links["D"].get("class") or "")
    rings = [
        str(a.get("data-event-id"))
        for a in links.values()
        if any(r.get("class") == "ring" for r in a.iter(f"{SVG}rect"))
    ]
    assert sorted(rings) == ["D", "E"]
    colours = {a.get("data-event-id"): a.findall(f"{SVG}rect")[-1].get("stroke") for a in links.values()}
    assert colours["C"] == "#c0392b" and colours["E"] == "#e67e22"
    edges = [
        (e.get("data-from"), e.get("data-to"), e.get("class"))
        for e in root.iter(f"{SVG}line")
        if e.get("data-from")
    ]
    assert ("D", "C", "edge prev") in edges and ("E", "$older", "edge prev") in edges  # a stub to outside
    assert not any(c == "edge auth" for _, _, c in edges)
    with_auth = ET.fromstring(render_svg(diamond(), show_auth=True))
    assert ("B", "A", "edge auth") in [
        (e.get("data-from"), e.get("data-to"), e.get("class")) for e in with_auth.iter(f"{SVG}line")
    ]


def test_labels_are_escaped() -> None:
    svg = render_svg([PictureNode("$<x>", "<script>", "a&b", 1, 1, (), href='/e?a="1"')])
    root = ET.fromstring(svg)
    assert "<script>" not in svg and next(t.text for t in root.iter(f"{SVG}text")) == "<script>"


def test_an_ancestry_layout_puts_auth_events_below_the_events_they_authorise() -> None:
    nodes = [node("C", 1), node("P", 2, auth_ids=("C",)), node("M", 3, ("P",), auth_ids=("C", "P"))]
    by_prev = layout(nodes)
    assert by_prev.positions["C"][0] == by_prev.positions["P"][0] == 0  # no prev edge between them
    with_auth = layout(nodes, include_auth=True)
    assert with_auth.positions["C"][0] < with_auth.positions["P"][0] < with_auth.positions["M"][0]
