"""Output schemas: Arrow schemas with the score column, schema inference from rows, and
Arrow -> Avro. Pure: no Beam.

Schema inference, for an output whose format differs from the input's (JSONL -> Parquet,
Avro -> Parquet, JSONL -> Avro, ...). Each top-level field's type is inferred per row
and unified over all rows written; a field whose values cannot share one type (a number
here, a string there) is written as JSON text. Field order: that of the row with the
smallest key (the best selected record, or the first dead letter), then any other
fields by name, zipfit_score last.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

from zipfit_beam.formats.base import SCORE_FIELD, json_default

__all__ = ["unify_arrow_schemas", "with_score_column", "InferredSchema", "infer_row",
           "merge_inferred", "inferred_arrow_schema", "conform_row", "arrow_to_avro",
           "avro_value"]


def unify_arrow_schemas(schemas: Sequence, paths: Sequence[str]):
    """One schema for all Parquet sources (columns missing from a file are null there)."""
    import pyarrow as pa
    try:
        return pa.unify_schemas(list(schemas), promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"the Parquet sources' schemas conflict ({e}); files: "
                         f"{', '.join(paths[:5])}{' ...' if len(paths) > 5 else ''}") from None


def with_score_column(schema):
    """The schema plus ``zipfit_score: double`` as the last column (replacing one that exists)."""
    import pyarrow as pa
    if SCORE_FIELD in schema.names:
        schema = schema.remove(schema.get_field_index(SCORE_FIELD))
    return schema.append(pa.field(SCORE_FIELD, pa.float64(), nullable=False))


class InferredSchema(NamedTuple):
    """An accumulated row schema: field -> Arrow type, or JSON_TEXT."""
    first_key: Optional[Tuple[str, int]]
    first_order: Tuple[str, ...]
    types: Dict[str, Any]


EMPTY_SCHEMA = InferredSchema(None, (), {})
JSON_TEXT = "json-text"


def _infer_value_type(value):
    import pyarrow as pa
    try:
        return pa.array([value]).type
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        return JSON_TEXT


def _unify_types(a, b):
    import pyarrow as pa
    if isinstance(a, str) or isinstance(b, str):  # JSON_TEXT
        return JSON_TEXT
    if a == b:
        return a
    try:
        return pa.unify_schemas([pa.schema([("f", a)]), pa.schema([("f", b)])],
                                promote_options="permissive").field(0).type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return JSON_TEXT


def infer_row(row: Mapping, key: Tuple[str, int]) -> InferredSchema:
    types = {k: _infer_value_type(v) for k, v in row.items() if k != SCORE_FIELD}
    return InferredSchema(key, tuple(types), types)


def merge_inferred(a: InferredSchema, b: InferredSchema) -> InferredSchema:
    if a.first_key is None:
        return b
    if b.first_key is None:
        return a
    types = dict(a.types)
    for name, t in b.types.items():
        types[name] = _unify_types(types[name], t) if name in types else t
    first = a if a.first_key <= b.first_key else b
    return InferredSchema(first.first_key, first.first_order, types)


def inferred_arrow_schema(inferred: InferredSchema):
    """(Arrow schema with zipfit_score last, names of the fields written as JSON text)."""
    import pyarrow as pa
    order = list(inferred.first_order) + sorted(set(inferred.types) - set(inferred.first_order))
    fields, json_fields = [], []
    for name in order:
        t = inferred.types[name]
        if isinstance(t, str):  # JSON_TEXT
            fields.append(pa.field(name, pa.string()))
            json_fields.append(name)
        else:
            fields.append(pa.field(name, t))
    return with_score_column(pa.schema(fields)), tuple(json_fields)


def conform_row(row: Mapping, names: Sequence[str], json_fields: Sequence[str]) -> dict:
    """A row shaped for a fixed schema: every field present (missing ones null), values of
    JSON-text fields serialised."""
    out = {n: row.get(n) for n in names}
    for n in json_fields:
        if out[n] is not None and not isinstance(out[n], str):
            out[n] = json.dumps(out[n], ensure_ascii=False, default=json_default)
    return out


# Arrow -> Avro, for Avro output from Parquet or from inferred rows.

def arrow_to_avro(schema, name: str = "Record") -> dict:
    """An Avro record schema for an Arrow schema. Nullable fields become ["null", T]."""
    counter = [0]

    def record_name():
        counter[0] += 1
        return f"{name}_{counter[0]}"

    def convert(t):
        import pyarrow as pa
        pt = pa.types
        if pt.is_null(t):
            return "null"
        if pt.is_boolean(t):
            return "boolean"
        if pt.is_int8(t) or pt.is_int16(t) or pt.is_int32(t) or pt.is_uint8(t) or pt.is_uint16(t):
            return "int"
        if pt.is_integer(t):
            return "long"
        if pt.is_float16(t) or pt.is_float32(t):
            return "float"
        if pt.is_float64(t):
            return "double"
        if pt.is_string(t) or pt.is_large_string(t):
            return "string"
        if pt.is_binary(t) or pt.is_large_binary(t):
            return "bytes"
        if pt.is_fixed_size_binary(t):
            return {"type": "fixed", "name": record_name(), "size": t.byte_width}
        if pt.is_date(t):
            return {"type": "int", "logicalType": "date"}
        if pt.is_timestamp(t):
            return {"type": "long", "logicalType":
                    "timestamp-millis" if t.unit in ("s", "ms") else "timestamp-micros"}
        if pt.is_decimal(t):
            return {"type": "bytes", "logicalType": "decimal", "precision": t.precision,
                    "scale": t.scale}
        if pt.is_list(t) or pt.is_large_list(t) or pt.is_fixed_size_list(t):
            return {"type": "array", "items": nullable(t.value_type, True)}
        if pt.is_map(t) and (pt.is_string(t.key_type) or pt.is_large_string(t.key_type)):
            return {"type": "map", "values": nullable(t.item_type, True)}
        if pt.is_struct(t):
            return {"type": "record", "name": record_name(),
                    "fields": [{"name": f.name, "type": nullable(f.type, f.nullable)} for f in t]}
        if pt.is_dictionary(t):
            return convert(t.value_type)
        raise ValueError(f"Arrow type {t} has no Avro equivalent here; choose --output-format "
                         "parquet or jsonl")

    def nullable(t, is_nullable):
        avro = convert(t)
        return ["null", avro] if is_nullable and avro != "null" else avro

    fields = []
    for f in schema:
        entry = {"name": f.name, "type": nullable(f.type, f.nullable)}
        if f.nullable and entry["type"] != "null":
            entry["default"] = None
        fields.append(entry)
    return {"type": "record", "name": name, "namespace": "zipfit_beam", "fields": fields}


def avro_value(value, avro_type):
    """Python value shaped for fastavro from Arrow's ``to_pylist`` (maps come as lists of
    (key, value) pairs)."""
    if value is None:
        return None
    if isinstance(avro_type, list):
        inner = [t for t in avro_type if t != "null"]
        return avro_value(value, inner[0]) if len(inner) == 1 else value
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind == "map" and isinstance(value, list):
            return {k: avro_value(v, avro_type["values"]) for k, v in value}
        if kind == "array":
            return [avro_value(v, avro_type["items"]) for v in value]
        if kind == "record" and isinstance(value, dict):
            return {f["name"]: avro_value(value.get(f["name"]), f["type"]) for f in avro_type["fields"]}
    return value
