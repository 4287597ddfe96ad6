"""Files: images and masks, atomic writes, exports and their sidecars, GeoJSON, mask import."""
