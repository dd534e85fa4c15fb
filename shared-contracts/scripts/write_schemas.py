"""Write the JSON Schemas generated from the contract models into shared-contracts/schemas/."""

from __future__ import annotations

import json
from pathlib import Path

from catalog_contracts.schema import generate_schemas

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"


def render(schema: dict[str, object]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    for name, schema in generate_schemas().items():
        path = SCHEMA_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(schema))
        print(f"wrote {path.relative_to(SCHEMA_DIR.parent)}")


if __name__ == "__main__":
    main()
