"""Avro schemas, the type mapping from database catalogs, and schema registries."""

from liberate.schema.avro import AvroSchema, decode, encode, schema_id_of

__all__ = ["AvroSchema", "decode", "encode", "schema_id_of"]
