-- Insert deduplication for non-replicated tables: an INSERT retried with the same
-- insert_deduplication_token (the sink derives it from the batch's event ids) is dropped, and so
-- are the rows its materialized views would write (each target keeps its own window).
ALTER TABLE events MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE frames MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE scenes MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE transcripts MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE ocr_text MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE duplicates MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE events_per_minute MODIFY SETTING non_replicated_deduplication_window = 1000;
