-- A run's and a step's input and output in columns of their own, apart from the rest of the record
-- in data_json, as the SQLite schema's 0018_payloads_apart (coordinator/store/codec.py,
-- "Payloads"). Text, as data_json: jsonb would refuse some payloads a run may hold. Rows written
-- before keep their payloads in data_json and are read as they are; the first write of such a row
-- moves them out. A column added without a default changes only the catalog: instant on any table.
ALTER TABLE runs ADD COLUMN input_json text;
ALTER TABLE runs ADD COLUMN output_json text;
ALTER TABLE steps ADD COLUMN input_json text;
ALTER TABLE steps ADD COLUMN output_json text;
