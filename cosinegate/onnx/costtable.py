"""The If cost table as export reads it back: ``--policy auto --if-cost-table FILE`` keeps plain each dynamic block
whose expected saving (skip rate x block latency) is below its If cost.

The table is measured and written by ``cosinegate bench --if-cost --json FILE`` (cosinegate.bench.ifcost, which imports
the format and the reader from here): export sits below bench, so the reader lives with export.
"""

from cosinegate.artifacts import read_json
from cosinegate.errors import CosineGateError
from cosinegate.schema import number, shown, whole

TABLE_FORMAT = "cosinegate-if-cost-v1"


def load_table(path):
    """A cost table written by ``cosinegate bench --if-cost --json``, checked field by field (no code runs)."""
    data = read_json(path, "If cost table")
    fix = "make it with: cosinegate bench --if-cost --checkpoint CKPT --json FILE"
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT or not isinstance(data.get("blocks"), list):
        raise CosineGateError(f"{path} is not an If cost table; {fix}.")
    for row in data["blocks"]:
        ok = isinstance(row, dict) and whole(row.get("block")) and all(number(row.get(k)) for k in ("latency_us", "if_cost_us"))
        if not ok:
            raise CosineGateError(f"{path} has a malformed block row {shown(row)}; {fix}.")
    return data


def plain_by_cost(table, skip_rates, kinds, backbone, num_blocks):
    """Indices of the dynamic blocks whose expected saving (skip rate x block latency) is below their If cost."""
    if table.get("backbone") != backbone or table.get("num_blocks") != num_blocks:
        raise CosineGateError(
            f"the If cost table was measured on {table.get('backbone')} with {table.get('num_blocks')} blocks, this model is "
            f"{backbone} with {num_blocks}; measure this model: cosinegate bench --if-cost --checkpoint CKPT --json FILE.")
    rows = {row["block"]: row for row in table["blocks"]}
    plain = []
    for i, kind in enumerate(kinds):
        if kind != "dynamic":
            continue
        if i not in rows:
            raise CosineGateError(f"the If cost table has no row for dynamic block {i}; measure this model again with --if-cost.")
        if float(skip_rates[i]) * rows[i]["latency_us"] < rows[i]["if_cost_us"]:
            plain.append(i)
    return plain
