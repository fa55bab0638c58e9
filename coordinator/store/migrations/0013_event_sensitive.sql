-- Accord coordinator schema, version 13: an event keeps the payload fields that carry a
-- sensitive value (docs/concepts.md, "Sensitive data follows the data"), decided when it is
-- published: those its contract marks, and those its emitting step filled from a sensitive
-- value. A JSON list of paths such as "input.card". Events stored before this version have
-- none listed; their views still redact what their contract marks.
ALTER TABLE events ADD COLUMN sensitive_json TEXT NOT NULL DEFAULT '[]';
