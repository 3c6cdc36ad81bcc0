-- Commonlab schema, part 6: trial events of action 'deviation'.
--
-- A change to a flag that a running trial controls (state, cohort
-- overrides, definition, deletion, an import that changes it) changes what
-- the trial serves. It is recorded in the trial's append-only event log, in
-- the same transaction as the flag-set revision, as a 'deviation' with the
-- actor and a description of the change (docs/experiments.md, "Changes to
-- a trial's flag"). Only the CHECK on the action changes; no row does.

ALTER TABLE trial_events DROP CONSTRAINT trial_events_action_check;
ALTER TABLE trial_events ADD CONSTRAINT trial_events_action_check
    CHECK (action IN ('create', 'update', 'start', 'stop', 'conclude', 'archive', 'amend', 'deviation'));
