-- A run's and a step's input and output in columns of their own, apart from the rest of the record
-- in data_json (coordinator/store/codec.py, "Payloads"): a payload is encoded once rather than at
-- every transition of its record, and a read that needs no payloads (the span receiver's) decodes
-- a few hundred bytes rather than them. Rows written before keep their payloads in data_json and
-- are read as they are; the first write of such a row moves them out. Adding a column that may be
-- NULL changes only the schema, not the rows: this is instant on any database.
ALTER TABLE runs ADD COLUMN input_json TEXT;
ALTER TABLE runs ADD COLUMN output_json TEXT;
ALTER TABLE steps ADD COLUMN input_json TEXT;
ALTER TABLE steps ADD COLUMN output_json TEXT;
