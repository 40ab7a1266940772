"""Everything that speaks SQL lives in this package; the rest of the receiver calls its functions."""
