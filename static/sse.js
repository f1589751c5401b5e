// Server-sent events transport (to be written).
