"""A contract type for import-linter: a subpackage of an external package (``django.db``) may be
imported only by some modules. import-linter's own contracts see external packages whole."""

from __future__ import annotations

import re
from typing import Any

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck
from importlinter.domain.helpers import module_expressions_to_modules


class ConfinedExternalSubpackageContract(Contract):
    """Only ``allowed_modules`` (and their descendants) may import ``subpackage`` (e.g. django.db)."""

    type_name = "confined_external_subpackage"

    subpackage = fields.StringField()
    allowed_modules = fields.SetField(subfield=fields.ModuleExpressionField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        subpackage = str(self.subpackage)
        top, _, rest = subpackage.partition(".")
        allowed = {m.name for m in module_expressions_to_modules(graph, self.allowed_modules)}  # type: ignore[arg-type]
        pattern = re.compile(
            rf"^\s*(from\s+{re.escape(subpackage)}(\.|\s)|import\s+{re.escape(subpackage)}(\.|\s|$)"
            rf"|from\s+{re.escape(top)}\s+import\s+.*\b{re.escape(rest)}\b)"
        )
        violations: list[dict[str, Any]] = []
        for importer in sorted(graph.find_modules_that_directly_import(top)):
            if any(importer == a or importer.startswith(a + ".") for a in allowed):
                continue
            for detail in graph.get_import_details(importer=importer, imported=top):
                if pattern.match(detail["line_contents"]):
                    violations.append(
                        {"importer": importer, "line": detail["line_number"], "code": detail["line_contents"]}
                    )
        return ContractCheck(kept=not violations, warnings=[], metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for v in check.metadata["violations"]:
            output.print_error(f"{v['importer']}:{v['line']}: {v['code']}", bold=False)
