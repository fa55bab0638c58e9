-- Accord coordinator schema, version 7: events are stored first and delivered afterwards
-- (docs/production.md, "Events"). delivered_ms: when the event bus took the event (NATS
-- JetStream acknowledged it, or the in-process bus ran its triggers); 0 while it waits for
-- the bus, so a coordinator that crashed in between delivers it at its next start.
-- handled_ms: when its triggers ran (triggered_json is final from then on); 0 before.
-- source_run: the run whose step published it through its contract's `emits:` ("" for one
-- published with `accord event publish`). Events stored before this version were delivered
-- and handled inline, when published.
ALTER TABLE events ADD COLUMN delivered_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN handled_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN source_run TEXT NOT NULL DEFAULT '';
UPDATE events SET delivered_ms = published_ms, handled_ms = published_ms;
CREATE INDEX events_undelivered ON events (published_ms) WHERE delivered_ms = 0;
