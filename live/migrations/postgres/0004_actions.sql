-- One write-ahead model for every irreversible action. An intent names its
-- action's kind and subject (what it acts on: an ad, later a payee or an
-- order); the typed action and its evidence are JSON. Rows written before
-- this version are ad kills, and their evidence was the bare estimate.
ALTER TABLE dlft_intents RENAME COLUMN ad TO subject;
ALTER TABLE dlft_intents ADD COLUMN kind TEXT NOT NULL DEFAULT 'ad_kill';
ALTER TABLE dlft_intents ADD COLUMN action TEXT NOT NULL DEFAULT '';
UPDATE dlft_intents
   SET action = json_build_object('kind', 'ad_kill', 'ad', subject)::text,
       evidence = '{"kill":' || evidence || '}';
ALTER TABLE dlft_intents ALTER COLUMN action DROP DEFAULT;
CREATE INDEX dlft_intents_kind_subject ON dlft_intents (kind, subject);
ALTER TABLE dlft_actions RENAME COLUMN ad TO subject;
