-- A team's start rate (accord team limits TEAM --start-rate; docs/production.md, "Team limits")
-- as a token bucket kept here, so every coordinator on the database takes from the same one:
-- how many tokens were left when it was last taken from (or refused), and when. Only teams with
-- a start rate have a row; one is written when such a team first starts a run.
CREATE TABLE start_buckets (
    team text COLLATE "C" PRIMARY KEY,
    tokens double precision NOT NULL,
    at_ms bigint NOT NULL,
    taken boolean NOT NULL DEFAULT false
);

-- A contract's max_concurrency is checked by counting its running attempts in the transaction
-- that claims one (Changes.inflight_caps), as a team's is by caller_team.
CREATE INDEX inflight_contract ON inflight (contract);
