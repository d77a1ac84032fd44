-- The rule pack each live call was judged by: its language says how screening hears the recording.
ALTER TABLE recordings ADD COLUMN pack TEXT;
