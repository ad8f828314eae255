-- The labelling model's image features (EfficientNet-Lite0, 1280-d) beside the frame signature in
-- `features`: what a frame shows, for SQL similarity (cosineDistance) over frames.
ALTER TABLE frames ADD COLUMN IF NOT EXISTS image_features Array(Float32) CODEC(ZSTD);
