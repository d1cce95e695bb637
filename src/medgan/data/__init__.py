"""Stage 1-2: raw releases and phantoms -> prepared datasets (readers, preprocessing, splits)."""
